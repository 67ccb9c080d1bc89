"""radioalign.data: the MiraBest loader on the real F archive and on the synthetic archive,
checksum and download failures, the validation split and model-input preprocessing.

Offline: downloads are simulated with pooch's own ``downloader`` hook."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pooch
import pytest
import requests
import torch
from PIL import Image

from radioalign import data
from radioalign.data import (
    ArchiveError,
    ArchiveNotFoundError,
    ChecksumError,
    load_mirabest,
    make_synthetic_archive,
    validation_split,
)
from radioalign.data import mirabest
from radioalign.model import preprocess

F = data.VERSIONS["F"]
SYN = data.VERSIONS["synthetic"]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def leftovers(root: Path, folder: str) -> list[str]:
    """Anything an interrupted extraction could leave: the folder itself or temp folders."""
    return sorted(p.name for p in root.iterdir() if p.name == folder or p.name.startswith(f".{folder}"))


# --------------------------------------------------------------------------- real MiraBest_F


@pytest.fixture(scope="module")
def f_root(mirabest_f_archive, tmp_path_factory) -> Path:
    """A root holding a copy of the published F archive, extracted once for the module."""
    root = tmp_path_factory.mktemp("mirabest_f")
    shutil.copy(mirabest_f_archive, root / F.archive)
    return root


@pytest.fixture(scope="module")
def f_splits(f_root):
    return {split: load_mirabest(split, "F", root=f_root, download=False) for split in ("train", "test")}


@pytest.fixture(scope="module")
def f_index(shared) -> dict[str, list[dict]]:
    """MiraBest_F_index.csv rows of the Confident items, per split, in MBFRConfident order."""
    path = shared / "data" / "mirabest" / "MiraBest_F_index.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["fr_confident_label"] != ""]
    return {
        split: sorted((r for r in rows if r["split"] == split), key=lambda r: int(r["mbfrconfident_index"]))
        for split in ("train", "test")
    }


@pytest.mark.shared
@pytest.mark.parametrize("split, n, n_fr1, n_fr2", [("train", 729, 348, 381), ("test", 104, 49, 55)])
def test_f_counts_labels_and_shapes(f_splits, split, n, n_fr1, n_fr2):
    ds = f_splits[split]
    assert (ds.version, ds.split, len(ds)) == ("F", split, n)
    assert ds.images.shape == (n, 150, 150) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and ds.fine_labels.dtype == np.int64
    assert np.bincount(ds.labels).tolist() == [n_fr1, n_fr2]
    # The Confident rule: FR-I from fine labels 0-2, FR-II from 5-6, nothing else.
    assert set(ds.fine_labels[ds.labels == 0].tolist()) <= {0, 1, 2}
    assert set(ds.fine_labels[ds.labels == 1].tolist()) <= {5, 6}
    if split == "test":  # published order: 49 FR-I then 55 FR-II
        assert ds.labels.tolist() == [0] * 49 + [1] * 55
    assert ds.images.max() == 255 and ds.images.min() == 0


@pytest.mark.shared
@pytest.mark.parametrize("split", ["train", "test"])
def test_f_names_follow_the_index_csv(f_splits, f_index, split):
    ds, rows = f_splits[split], f_index[split]
    assert ds.names == [Path(r["filename"]).stem for r in rows]
    assert ds.labels.tolist() == [int(r["fr_confident_label"]) for r in rows]
    assert ds.fine_labels.tolist() == [int(r["fine_label"]) for r in rows]


@pytest.mark.shared
def test_f_anchor_sources_and_unique_names(f_splits):
    train, test = f_splits["train"], f_splits["test"]
    # Anchors from PROVENANCE.md: (source, F split, position after the Confident filter).
    anchors = [
        ("100_126.484+017.861_0.0905_0151.78", train, 336, 0),
        ("200_126.786+009.384_0.3721_0018.00", train, 681, 1),
        ("100_173.095+055.972_0.0501_0042.73", train, 660, 0),
        ("200_167.616+005.428_0.4419_0053.78", test, 64, 1),
    ]
    for name, ds, position, label in anchors:
        assert ds.names[position] == name and ds.labels[position] == label
    assert train.names[0] == "100_123.251+043.797_0.1281_0034.09"
    assert len(set(train.names) | set(test.names)) == len(train) + len(test)
    by_name = data.images_by_name(train)
    assert list(by_name) == train.names and np.array_equal(by_name[train.names[5]], train.images[5])


@pytest.mark.shared
def test_f_second_load_uses_the_extracted_folder(f_root, f_splits, monkeypatch):
    assert (f_root / F.folder).is_dir() and leftovers(f_root, F.folder) == [F.folder]

    def no_extract(*args, **kwargs):
        raise AssertionError("the archive was extracted again")

    monkeypatch.setattr(mirabest, "_extract", no_extract)
    again = load_mirabest("test", "F", root=f_root, download=False)
    assert again.names == f_splits["test"].names and np.array_equal(again.images, f_splits["test"].images)


@pytest.mark.shared
def test_f_extracted_folder_alone_is_enough(f_root, f_splits, tmp_path, monkeypatch):
    """An air-gapped node may hold only the extracted folder; $RADIOALIGN_DATA_DIR points at it."""
    shutil.copytree(f_root / F.folder, tmp_path / F.folder)
    monkeypatch.setenv("RADIOALIGN_DATA_DIR", str(tmp_path))
    ds = load_mirabest("test", "F", download=False)
    assert ds.names == f_splits["test"].names


@pytest.mark.shared
def test_f_flipped_byte_in_archive(mirabest_f_archive, tmp_path):
    archive = tmp_path / F.archive
    shutil.copy(mirabest_f_archive, archive)
    flip_byte(archive, 1000)
    with pytest.raises(ChecksumError) as err:
        load_mirabest("train", "F", root=tmp_path, download=True)  # local copy: never downloads
    msg = str(err.value)
    assert F.archive in msg and F.archive_md5 in msg and md5(archive) in msg and "checksum" in msg
    assert (err.value.expected, err.value.actual) == (F.archive_md5, md5(archive))
    assert leftovers(tmp_path, F.folder) == []


@pytest.mark.shared
def test_f_truncated_archive(mirabest_f_archive, tmp_path):
    archive = tmp_path / F.archive
    archive.write_bytes(Path(mirabest_f_archive).read_bytes()[:300_000])
    with pytest.raises(ChecksumError, match=F.archive):
        load_mirabest("test", "F", root=tmp_path, download=False)
    assert leftovers(tmp_path, F.folder) == []


@pytest.mark.shared
def test_download_through_pooch(mirabest_f_archive, tmp_path, monkeypatch):
    """download=True with no local copy: pooch fetches (a fake downloader serves the shared
    archive), checks the published md5, and the archive is extracted and loaded."""
    real_retrieve = pooch.retrieve
    seen = []

    def serve(url, output_file, pooch_obj, check_only=False):
        seen.append(url)
        Path(output_file).write_bytes(Path(mirabest_f_archive).read_bytes())

    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: real_retrieve(*a, **{**k, "downloader": serve}))
    root = tmp_path / "new"
    ds = load_mirabest("test", "F", root=root, download=True)
    assert seen == [F.url] and len(ds) == 104
    assert md5(root / F.archive) == F.archive_md5 and (root / F.folder).is_dir()


# --------------------------------------------------------------------------- download failures


def test_missing_archive_offline_says_what_to_do(tmp_path):
    root = tmp_path / "nothing-here"
    with pytest.raises(ArchiveNotFoundError) as err:
        load_mirabest("train", "F", root=root, download=False)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert F.archive in msg and F.url in msg and str(root) in msg and "make download" in msg
    assert not root.exists()  # nothing written when nothing was asked for


@pytest.mark.parametrize("version", ["full", "F"])
def test_network_unreachable_gives_the_same_helpful_error(tmp_path, monkeypatch, version):
    spec = data.VERSIONS[version]

    def unreachable(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'www.jb.man.ac.uk'")

    monkeypatch.setattr(pooch, "retrieve", unreachable)
    with pytest.raises(ArchiveNotFoundError) as err:
        load_mirabest("test", version, root=tmp_path, download=True)
    msg = str(err.value)
    assert spec.archive in msg and spec.url in msg and str(tmp_path) in msg and "download failed" in msg
    assert isinstance(err.value.__cause__, requests.exceptions.ConnectionError)
    assert leftovers(tmp_path, spec.folder) == []


def test_corrupted_download_is_rejected_by_pooch(tmp_path, monkeypatch):
    real_retrieve = pooch.retrieve

    def serve_garbage(url, output_file, pooch_obj, check_only=False):
        Path(output_file).write_bytes(b"<html>proxy login page</html>")

    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: real_retrieve(*a, **{**k, "downloader": serve_garbage}))
    with pytest.raises(ChecksumError) as err:
        load_mirabest("test", "F", root=tmp_path, download=True)
    assert F.archive in str(err.value) and F.archive_md5 in str(err.value)
    assert err.value.actual == hashlib.md5(b"<html>proxy login page</html>").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # pooch deleted its temporary file


def test_bad_arguments():
    with pytest.raises(ValueError, match="version"):
        load_mirabest("train", "G")
    with pytest.raises(ValueError, match="split"):
        load_mirabest("validation", "F")


# --------------------------------------------------------------------------- synthetic archive


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory) -> Path:
    """A root where load_mirabest generated the default synthetic archive by itself."""
    root = tmp_path_factory.mktemp("synthetic")
    load_mirabest("train", "synthetic", root=root)
    return root


@pytest.fixture
def small_syn(tmp_path) -> Path:
    """A fresh root with a tiny synthetic archive (16 images), not yet extracted."""
    make_synthetic_archive(tmp_path, per_batch=2, seed=3)
    return tmp_path


def raw_batches(folder: Path) -> dict[str, dict]:
    out = {}
    for name in data.MEMBERS:
        with open(folder / name, "rb") as f:
            out[name] = pickle.load(f, encoding="latin1")
    return out


def test_synthetic_archive_has_the_mirabest_format(syn_root):
    assert {p.name for p in syn_root.iterdir()} >= {SYN.archive, data.SYNTHETIC_MANIFEST, SYN.folder}
    with tarfile.open(syn_root / SYN.archive) as tar:
        assert sorted(tar.getnames()) == sorted([SYN.folder] + [f"{SYN.folder}/{m}" for m in data.MEMBERS])
    raw = raw_batches(syn_root / SYN.folder)
    meta = raw["batches.meta"]
    assert meta == {"num_cases_per_batch": 24, "label_names": list(data.LABEL_NAMES), "num_vis": 22500}
    fine = []
    for name in data.TRAIN_BATCHES + data.TEST_BATCHES:
        d = raw[name]
        assert set(d) == {"batch_label", "labels", "data", "filenames"}
        assert len(d["labels"]) == len(d["data"]) == len(d["filenames"]) == 24
        assert d["labels"] == sorted(d["labels"]) and all(type(x) is int for x in d["labels"])
        assert all(a.shape == (150, 150) and a.dtype == np.uint8 for a in d["data"])
        assert all(f.startswith("./MiraBest_F/PNG/Scaled_Final/") and f.endswith(".png") for f in d["filenames"])
        assert {0, 5} <= set(d["labels"])  # both classes in every batch
        fine += d["labels"]
    assert raw["test_batch"]["batch_label"] == "testing batch 1 of 1"
    assert set(fine) == set(range(10))  # every kind, so the filter has work to do
    assert np.isin(fine, list(data.CONFIDENT)).mean() > 0.5  # a majority Confident
    # MiraBest's processing: background exactly 0, brightest pixel 255.
    images = np.stack(raw["data_batch_1"]["data"])
    assert (images.reshape(24, -1).max(1) == 255).all() and (images == 0).mean() > 0.9


@pytest.mark.parametrize("split", ["train", "test"])
def test_synthetic_round_trip_through_the_loader(syn_root, split):
    ds = load_mirabest(split, "synthetic", root=syn_root)
    raw = raw_batches(syn_root / SYN.folder)
    batches = data.TRAIN_BATCHES if split == "train" else data.TEST_BATCHES
    fine = np.concatenate([raw[b]["labels"] for b in batches])
    stems = [Path(f).stem for b in batches for f in raw[b]["filenames"]]
    keep = np.isin(fine, list(data.CONFIDENT))
    assert len(ds) == keep.sum() < len(fine)  # the filter dropped the uncertain and hybrid items
    assert ds.fine_labels.tolist() == fine[keep].tolist()
    assert ds.labels.tolist() == [data.CONFIDENT[f] for f in fine[keep]]
    assert set(ds.labels.tolist()) == {0, 1}
    assert ds.names == [s for s, k in zip(stems, keep) if k] and len(set(ds.names)) == len(ds)
    assert ds.images.shape == (len(ds), 150, 150) and ds.images.dtype == np.uint8
    sub = ds.subset([2, 0])
    assert sub.names == [ds.names[2], ds.names[0]] and np.array_equal(sub.images[1], ds.images[0])


def test_synthetic_classes_are_separable(syn_root):
    """FR-I: the brightest pixel is the core, near the flux centroid; FR-II: it is a hot spot
    at the outer end of a lobe. One threshold on that distance separates the classes."""
    ds = load_mirabest("train", "synthetic", root=syn_root)
    yy, xx = np.mgrid[:150, :150]
    img = ds.images.astype(np.float64)
    w = img.sum(axis=(1, 2))
    cx, cy = (img * xx).sum(axis=(1, 2)) / w, (img * yy).sum(axis=(1, 2)) / w
    py, px = np.unravel_index(img.reshape(len(ds), -1).argmax(1), (150, 150))
    offset = np.hypot(px - cx, py - cy)
    accuracy = max(((offset > t) == ds.labels).mean() for t in np.unique(offset))
    assert accuracy >= 0.9
    assert np.median(offset[ds.labels == 1]) > 2 * np.median(offset[ds.labels == 0])


def test_synthetic_archive_is_deterministic(syn_root, tmp_path):
    again = make_synthetic_archive(tmp_path / "a")  # the defaults load_mirabest used
    assert again.read_bytes() == (syn_root / SYN.archive).read_bytes()
    manifest = json.loads((tmp_path / "a" / data.SYNTHETIC_MANIFEST).read_text())
    assert manifest["archive_md5"] == md5(again) and set(manifest["member_md5"]) == set(data.MEMBERS)
    other = make_synthetic_archive(tmp_path / "b", per_batch=2, seed=1)
    assert other.read_bytes() != make_synthetic_archive(tmp_path / "c", per_batch=2, seed=2).read_bytes()


def test_synthetic_default_root_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RADIOALIGN_DATA_DIR", str(tmp_path))
    archive = make_synthetic_archive(per_batch=2, seed=5)
    assert archive == tmp_path / SYN.archive
    ds = load_mirabest("test", "synthetic")
    assert (tmp_path / SYN.folder).is_dir() and 1 <= len(ds) <= 2


def test_flipped_byte_in_synthetic_archive(small_syn):
    archive = small_syn / SYN.archive
    expected = md5(archive)
    flip_byte(archive, len(archive.read_bytes()) // 2)
    with pytest.raises(ChecksumError) as err:
        load_mirabest("train", "synthetic", root=small_syn)
    msg = str(err.value)
    assert SYN.archive in msg and expected in msg and md5(archive) in msg
    assert leftovers(small_syn, SYN.folder) == []


def test_unreadable_archive_leaves_nothing_behind(small_syn):
    """A truncated archive whose checksum matches (here: a rewritten manifest) fails in
    extraction; the temporary folder is removed and no data folder appears."""
    archive = small_syn / SYN.archive
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    manifest = small_syn / data.SYNTHETIC_MANIFEST
    info = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**info, "archive_md5": md5(archive)}))
    with pytest.raises(ArchiveError, match="not a readable tar.gz"):
        load_mirabest("train", "synthetic", root=small_syn)
    assert leftovers(small_syn, SYN.folder) == []


def test_unsafe_archive_member_is_refused(small_syn, tmp_path):
    archive = small_syn / SYN.archive
    buf = io.BytesIO()
    with tarfile.open(archive) as src, tarfile.open(fileobj=buf, mode="w:gz") as dst:
        for info in src.getmembers():
            dst.addfile(info, src.extractfile(info) if info.isfile() else None)
        evil = tarfile.TarInfo(f"{SYN.folder}/../../evil.txt")
        evil.size = 4
        dst.addfile(evil, io.BytesIO(b"evil"))
    archive.write_bytes(buf.getvalue())
    manifest = small_syn / data.SYNTHETIC_MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "archive_md5": md5(archive)}))
    with pytest.raises(ArchiveError, match="unsafe member"):
        load_mirabest("train", "synthetic", root=small_syn)
    assert leftovers(small_syn, SYN.folder) == [] and not (small_syn.parent / "evil.txt").exists()


def test_corrupted_member_in_extracted_folder(small_syn):
    load_mirabest("train", "synthetic", root=small_syn)
    member = small_syn / SYN.folder / "data_batch_3"
    expected = md5(member)
    flip_byte(member, member.stat().st_size - 10)
    with pytest.raises(ChecksumError) as err:
        load_mirabest("train", "synthetic", root=small_syn)
    msg = str(err.value)
    assert "data_batch_3" in msg and expected in msg and md5(member) in msg
    (small_syn / SYN.folder / "test_batch").unlink()
    flip_byte(member, member.stat().st_size - 10)  # restore
    with pytest.raises(ArchiveError, match="test_batch"):
        load_mirabest("test", "synthetic", root=small_syn)


# --------------------------------------------------------------------------- validation split


def test_validation_split_reproduces_the_authors_protocol():
    train, val = validation_split(729)
    assert (len(train), len(val)) == (620, 109)
    assert train.dtype == val.dtype == np.int64
    assert np.intersect1d(train, val).size == 0 and np.array_equal(np.union1d(train, val), np.arange(729))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()
    # The authors: torch random_split(ds, [620, 109], generator=Generator().manual_seed(42)),
    # i.e. the last 109 entries of that generator's permutation, in that order.
    perm = torch.randperm(729, generator=torch.Generator().manual_seed(42)).numpy()
    train_u, val_u = validation_split(729, sort=False)
    assert np.array_equal(val_u, perm[620:]) and np.array_equal(train_u, perm[:620])
    again = validation_split(729)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)


def test_validation_split_parameters():
    train, val = validation_split(100, fraction=0.2, seed=0)
    assert (len(train), len(val)) == (80, 20)
    assert not np.array_equal(validation_split(729, seed=0)[1], validation_split(729, seed=42)[1])
    for bad in (dict(n=729, fraction=0.0), dict(n=729, fraction=1.0), dict(n=1), dict(n=5, fraction=0.1)):
        with pytest.raises(ValueError):
            validation_split(**bad)


# --------------------------------------------------------------------------- preprocess


@pytest.fixture(scope="module")
def sample_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = np.stack([data.synthetic_image(rng, label) for label in (0, 5, 6)])
    images[2] = 255  # a saturated image: exactly 1 / +1 everywhere
    return images


def test_preprocess_paper_and_siglip(sample_images):
    paper = preprocess(sample_images, "paper")
    siglip = preprocess(sample_images, "siglip")
    for x in (paper, siglip):
        assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert paper.min() == 0.0 and paper.max() <= 1.0 and paper[:2].max() > 0.9
    assert siglip.min() == -1.0 and siglip.max() <= 1.0
    assert torch.allclose(siglip, 2 * paper - 1, atol=1e-6)
    assert torch.equal(paper[2], torch.ones(3, 224, 224))
    assert preprocess(sample_images, size=32).shape == (3, 3, 32, 32)


def test_preprocess_matches_the_authors_pil_resize(sample_images):
    """The authors resized PIL images (torchvision Resize, bilinear); upsampling agrees within a grey level."""
    ours = preprocess(sample_images[:2], "paper")[:, 0].numpy()
    pil = np.stack([np.asarray(Image.fromarray(a).resize((224, 224), Image.BILINEAR)) for a in sample_images[:2]]) / 255
    assert np.abs(ours - pil).max() <= 1.0 / 255 + 1e-6


def test_preprocess_rejects_bad_input(sample_images):
    with pytest.raises(TypeError, match="uint8"):
        preprocess(sample_images.astype(np.float32))
    with pytest.raises(ValueError, match=r"images\[None\]"):
        preprocess(sample_images[0])
    with pytest.raises(ValueError, match="mode"):
        preprocess(sample_images, mode="imagenet")
    with pytest.raises(ValueError, match="size"):
        preprocess(sample_images, size=0)
