"""The authors' published captions (../shared/data/captions): verified, row-aligned, never downloaded here."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from radioalign.captions import caption_images, load_published_captions, load_published_records, read_records
from radioalign.captions import published
from radioalign.captions.published import FILES, PublishedCaptionsError


@pytest.mark.parametrize(("prompt", "split", "rows"), [("curated", "train", 729), ("curated", "test", 104), ("control", "train", 729), ("control", "test", 104)])
def test_published_files_verified_and_complete(published_captions_dir, prompt, split, rows):
    caps = load_published_captions(prompt, split, root=published_captions_dir)
    assert len(caps) == rows and all(isinstance(c, str) and len(c.split()) >= 5 for c in caps)
    assert not any(w in c for c in caps for w in ("FR-I", "FR-II", "Fanaroff"))
    assert not any(c.startswith("\ufeff") for c in caps)


def test_curated_test_file_bom_edits_and_labels(published_captions_dir):
    raw = (published_captions_dir / "gemini_captions_test.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM is there in the file ...
    t = load_published_records("curated", "test", root=published_captions_dir)
    assert list(t.columns[:4]) == ["row", "id", "caption", "edited"]  # ... and gone from the column names
    assert int(t["edited"].sum()) == 23
    assert t.index[t["edited"]].tolist() == [9, 10, 13, 17, 21, 22, 23, 26, 30, 31, 38, 39, 42, 45, 48, 54, 55, 61, 62, 87, 91, 95, 100]
    assert t["label"].tolist() == [0] * 49 + [1] * 55
    assert not load_published_records("control", "test", root=published_captions_dir)["edited"].any()


def test_row_order_not_the_broken_index_column(published_captions_dir):
    """Figure 2's first example is train row 10 (index column 9) in both prompt sets."""
    cur = load_published_captions("curated", "train", root=published_captions_dir)
    ctl = load_published_captions("control", "train", root=published_captions_dir)
    for words in ("compact central source", "two opposing, collimated structures", "jets extend horizontally", "lobes terminating on the far left and right"):
        assert words in cur[10]
    for words in ("powerful radio galaxy", "active galactic nucleus (AGN)", "two opposing jets"):
        assert words in ctl[10]
    assert "collimated" not in cur[9] + cur[11] and "powerful radio galaxy" not in ctl[9] + ctl[11]
    raw = pd.read_csv(published_captions_dir / "gemini_captions_train.csv")
    assert raw["index"].isna().sum() == 2 and raw.loc[10, "index"] == 9  # why row position is the key
    assert raw.loc[10, "caption"].strip() == cur[10]


def test_checksum_mismatch_and_offline_errors(published_captions_dir, tmp_path, monkeypatch):
    name = FILES[("control", "test")][0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / name).write_bytes((published_captions_dir / name).read_bytes() + b"\n")
    with pytest.raises(PublishedCaptionsError, match="sha256"):
        load_published_captions("control", "test", root=bad)

    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", offline)  # never download in tests
    empty = tmp_path / "empty"
    with pytest.raises(PublishedCaptionsError) as err:
        load_published_captions("control", "test", root=empty)
    msg = str(err.value)
    assert name in msg and published.BASE_URL + name in msg and str(empty) in msg and published.COMMIT in msg


def test_published_backend_through_caption_images(published_captions_dir, tmp_path):
    store = tmp_path / "curated_test.jsonl"
    ids = {f"full-test-{i:04d}": None for i in (0, 10, 103)}
    got = caption_images(ids, "curated", "published", store, root=published_captions_dir, progress=False)
    expected = load_published_captions("curated", "test", root=published_captions_dir)
    assert got == {"full-test-0000": expected[0], "full-test-0010": expected[10], "full-test-0103": expected[103]}
    recs = {r["id"]: r for r in read_records(store)}
    assert recs["full-test-0010"]["edited_by_authors"] is True and recs["full-test-0000"]["edited_by_authors"] is False
    assert recs["full-test-0010"]["source"].endswith("gemini_captions_test.csv#row=10")
    assert recs["full-test-0010"]["model"] == "gemini-2.5-flash-preview-05-20"
    # explicit split with images in MiraBest_full row order
    got = caption_images({"a": None, "b": None}, "control", "published", tmp_path / "c.jsonl", split="train", root=published_captions_dir, progress=False)
    assert list(got.values()) == load_published_captions("control", "train", root=published_captions_dir)[:2]


def test_published_refuses_f_names(published_captions_dir, tmp_path):
    with pytest.raises(PublishedCaptionsError, match="MiraBest_full.*not with MiraBest_F"):
        caption_images({"100_126.484+017.861_0.0905_0151.78": None}, "curated", "published", tmp_path / "s.jsonl", root=published_captions_dir, progress=False)
    with pytest.raises(PublishedCaptionsError, match="mix splits"):
        caption_images({"full-train-0001": None, "full-test-0001": None}, "curated", "published", tmp_path / "t.jsonl", root=published_captions_dir, progress=False)


def test_verified_files_are_used_in_place(published_captions_dir, tmp_path):
    """The shared folder is read-only: files already there are verified and read, nothing is written."""
    copy = tmp_path / "ro"
    shutil.copytree(published_captions_dir, copy)
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in copy.iterdir()}
    for prompt, split in FILES:
        load_published_captions(prompt, split, root=copy)
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in copy.iterdir()} == before


@pytest.mark.parametrize(
    ("prompt", "split", "mean", "lo", "hi"),
    [("curated", "train", 42.7, 24, 62), ("curated", "test", 44.5, 30, 89), ("control", "train", 29.9, 7, 46), ("control", "test", 29.8, 17, 45)],
)
def test_published_lengths_match_provenance(published_captions_dir, prompt, split, mean, lo, hi):
    """Word counts as PROVENANCE.md reports them (mean / min / max; it split on white space,
    caption_stats counts runs of letters and digits, so the means may differ in the second decimal)."""
    from radioalign.captions import caption_stats

    s = caption_stats(load_published_captions(prompt, split, root=published_captions_dir))
    assert s["words_mean"] == pytest.approx(mean, abs=0.1) and (s["words_min"], s["words_max"]) == (lo, hi)


def test_control_vocabulary_is_about_one_and_a_half_times_the_curated(published_captions_dir):
    from radioalign.captions import caption_stats

    cur = caption_stats(load_published_captions("curated", "train", root=published_captions_dir))
    ctl = caption_stats(load_published_captions("control", "train", root=published_captions_dir))
    assert 1.4 < ctl["vocab_size"] / cur["vocab_size"] < 1.7
