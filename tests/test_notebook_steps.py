"""The work notebooks 01 and 09 used to do in their cells, now study functions
(radioalign.study.captioning, radioalign.study.rotations): each gives what the cells gave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radioalign.captions import caption_stats, read_records
from radioalign.data import load_mirabest, make_synthetic_archive
from radioalign.embed import embed_images, embed_texts
from radioalign.study import captioning, rotations
from radioalign.study.bundles import FROZEN, caption_sets
from radioalign.study.profiles import get_profile


@pytest.fixture
def results(monkeypatch, tmp_path):
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path / "results"


@pytest.fixture
def smoke_data(tmp_path, monkeypatch):
    """A small synthetic archive in a private data folder, and the smoke profile cut to 6 items."""
    monkeypatch.setenv("RADIOALIGN_DATA_DIR", str(tmp_path / "data"))
    make_synthetic_archive(tmp_path / "data", per_batch=4)
    return get_profile("smoke", limit=6)


# ---------------------------------------------------------------------- notebook 01


def test_load_split_cuts_to_the_profile_limit(smoke_data):
    from radioalign.study.inputs import load_split, load_splits, split_line

    ds = load_split(smoke_data, "test")
    whole = load_mirabest("test", version="synthetic")
    assert len(ds) == min(6, len(whole)) and list(ds.names) == list(whole.names[: len(ds)])
    train, test = load_splits(smoke_data)
    assert list(test.names) == list(ds.names) and len(train) == 6
    fr1, fr2 = int((ds.labels == 0).sum()), int((ds.labels == 1).sum())
    assert split_line("test", ds) == f"test: {len(ds)} images ({fr1} FR-I, {fr2} FR-II)"


def test_caption_splits_fill_the_stores_and_report_each(smoke_data, results):
    from radioalign.study.inputs import load_split

    data = {split: load_split(smoke_data, split) for split in ("train", "test")}
    captions, rows, messages = captioning.caption_splits(smoke_data, data, "catalog")
    assert list(rows.columns) == ["prompt", "split", "images", "captioned", "failed", "model"]
    assert [(r.prompt, r.split) for r in rows.itertuples()] == [(p, s) for p in smoke_data.prompts for s in data]
    assert rows["images"].tolist() == [len(data[s]) for _ in smoke_data.prompts for s in data]
    assert (rows["captioned"] + rows["failed"] == rows["images"]).all() and rows["captioned"].sum() > 0
    assert messages == [] or all(isinstance(m, str) for m in messages)
    for (prompt, split), texts in captions.items():
        store = results / "smoke" / "captions" / "catalog" / f"{prompt}_{split}.jsonl"
        stored = {r["id"]: r["caption"] for r in read_records(store) if r.get("caption")}
        assert texts == [stored.get(name) for name in data[split].names]
    # a second call reads the stores back: the same captions, nothing new written
    again, _, _ = captioning.caption_splits(smoke_data, data, "catalog")
    assert again == captions


def test_caption_statistics_and_lengths_skip_failed_captions():
    captions = {("curated", "test"): ["a bright core", None, "two lobes"], ("control", "test"): [None, None]}
    stats = captioning.caption_statistics(captions)
    assert list(stats) == [("curated", "test")]
    assert stats["curated", "test"] == caption_stats(["a bright core", "two lobes"])
    lengths = captioning.caption_lengths_by_prompt(stats, captions, ["curated", "control"], ["test"], "catalog", tokens=False)
    assert lengths == {"curated (catalog)": [3, 2], "control (catalog)": []}
    tokenised = {("curated", "test"): {"token_lengths": [5, 4]}}
    assert captioning.caption_lengths_by_prompt(tokenised, captions, ["curated"], ["test"], "x", tokens=True) == {"curated (x)": [5, 4]}


def test_extra_caption_sets_and_authors_edits(smoke_data, results):
    from radioalign.study.inputs import load_split

    profile = get_profile("smoke", limit=6, extra_captions=("catalog",))
    data = {"test": load_split(profile, "test")}
    assert captioning.caption_extra_sets(profile, data, "catalog") == [], "the main source is not captioned twice"
    # with another main source, the catalogue's curated prompt is a further caption set
    lines = captioning.caption_extra_sets(profile, data, "gemini")
    n = len(data["test"])
    store = results / "smoke" / "captions" / "catalog" / "curated_test.jsonl"
    done = sum(1 for r in read_records(store) if r.get("caption"))
    assert lines == [f"catalog curated test: {done} of {n} captioned"] and done > 0
    assert captioning.authors_edits(profile, "catalog") == 0, "catalogue captions carry no authors' edits"


# ---------------------------------------------------------------------- notebook 09


def test_rotation_models_choose_as_the_notebook_did():
    present = ["frozen", "full-control", "full-curated", "vision-curated"]
    assert rotations.rotation_models(present) == (["frozen", "full-control", "full-curated"], [], ["frozen", "full-control", "full-curated"])
    assert rotations.rotation_models(present, "frozen,text-curated", tta_models="frozen,full-curated") == (["frozen"], ["text-curated"], ["frozen"])
    assert rotations.rotation_models(present, ["full-curated"], tta=False) == (["full-curated"], [], [])


@pytest.fixture
def small_bundle(tiny):
    """A frozen bundle of the tiny model on 12 training and 6 test images, two caption sets."""
    model, processor = tiny
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 255, size=(n, 32, 32), dtype=np.uint8) for s, n in (("train", 12), ("test", 6))}
    bundle = {f"image_{s}": embed_images(model, x, progress=False, dtype="float32") for s, x in images.items()}
    for c in ("curated", "control"):
        for s, x in images.items():
            texts = [f"{c} source {i} with {'two lobes' if i % 2 else 'a core'}" for i in range(len(x))]
            bundle[f"text_{c}_{s}"] = embed_texts(model, processor, texts, progress=False, dtype="float32")
    for s, x in images.items():
        bundle[f"labels_{s}"] = np.arange(len(x)) % 2
    return images, bundle


def test_rotation_controls_equal_the_pieces_it_calls(tiny, one_thread, small_bundle):
    model, _ = tiny
    images, b = small_bundle
    options = dict(dtype="float32", progress=False)
    loaded = []

    def load_model(tag_):
        loaded.append(tag_)
        return model

    rows, tta, checks = rotations.rotation_controls({FROZEN: b}, load_model, images["train"], images["test"],
                                                    tta_models=[FROZEN], bootstrap=20, seed=0, **options)  # fmt: skip
    assert loaded == [FROZEN]
    assert checks.columns.tolist() == ["model", "min cos(identity view, bundle)"]
    assert checks.iloc[0, 1] == pytest.approx(1.0, abs=1e-5), "the identity view reproduces the bundle"
    views = rotations.transform_views(model, images["test"], **options)
    expected = pd.concat(
        [rotations.label_rows(rotations.transform_rows(views, b[f"text_{c}_test"], b["image_train"], b["labels_train"],
                                                       b["labels_test"], bootstrap=20, seed=0), model="frozen", tag=FROZEN, captions=c)
         for c in caption_sets(b)], ignore_index=True)  # fmt: skip
    pd.testing.assert_frame_equal(rows, expected)
    train_d4 = embed_images(model, images["train"], tta="d4", **options)
    plain = rotations.tta_rows((b["image_train"], b["image_test"]), (train_d4, views.mean(axis=0)), b["labels_train"],
                               b["labels_test"], bootstrap=20, seed=0)  # fmt: skip
    pd.testing.assert_frame_equal(tta, rotations.label_rows(plain, model="frozen", tag=FROZEN, captions=""))
    _, none, _ = rotations.rotation_controls({FROZEN: b}, load_model, images["train"], images["test"], bootstrap=20, seed=0, **options)
    assert none is None, "no D4 averaging unless a model is named for it"


def test_adapted_model_loads_the_runs_adapter(tiny, tmp_path):
    import copy

    from radioalign.model import apply_lora

    model, _ = tiny
    assert rotations.adapted_model(FROZEN, model, tmp_path) is model
    adapted = apply_lora(copy.deepcopy(model), scope="full", r=2)
    adapted.save_pretrained(tmp_path / "runs" / "full-curated" / "adapter")
    loaded = rotations.adapted_model("full-curated", model, tmp_path)
    assert loaded is not model and any("lora_" in n for n, _ in loaded.named_parameters())
    assert not any("lora_" in n for n, _ in model.named_parameters()), "the base model is left as it was"


def test_write_rotation_controls_writes_and_removes_a_stale_tta(results):
    profile = get_profile("smoke")
    row = {"metric": "recall@1", "modality": "image-text", "value": 0.5, "low": 0.4, "high": 0.6, "n": 6, "B": 20,
           "model": "frozen", "tag": FROZEN, "captions": "curated"}  # fmt: skip
    frame = pd.DataFrame([{**row, "transform": "identity"}])
    tta = pd.DataFrame([{**row, "metric": "knn_f1", "modality": "image", "captions": "", "tta": "d4"}])
    lines = rotations.write_rotation_controls(frame, tta, profile)
    folder = results / "smoke" / "controls"
    assert lines == [f"1 rows -> {folder / 'rotations.csv'}", f"1 rows -> {folder / 'tta.csv'}"]
    assert (folder / "tta.csv").is_file()
    assert rotations.write_rotation_controls(frame, None, profile) == [
        f"1 rows -> {folder / 'rotations.csv'}", "D4 averaging not run: removed the earlier tta.csv"]  # fmt: skip
    assert not (folder / "tta.csv").exists()
    assert rotations.write_rotation_controls(frame, None, profile) == [f"1 rows -> {folder / 'rotations.csv'}"]
