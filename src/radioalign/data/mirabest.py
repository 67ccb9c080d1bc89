"""MiraBest: checksums, verified download and extraction, loading, the authors' validation split.


MiraBest (Porter & Scaife 2023, doi:10.1093/rasti/rzad017; Zenodo 10.5281/zenodo.4288837)
is a set of 1256 FIRST radio galaxies, 150x150 ``uint8`` images, shipped as CIFAR-style
pickles in a ``.tar.gz``: seven training batches ``data_batch_1..7``, one ``test_batch``
and ``batches.meta``. Each batch is a dict with ``labels`` (ints 0-9 indexing
``LABEL_NAMES``), ``data`` (a list of 150x150 arrays) and, in the F version,
``filenames``; items are sorted by label within a batch. The arrays are in display
order (row 0 is the north edge, column 0 the east edge, as the PNGs MiraBest was made
from): the orientation rule of ``radioalign.survey.images``, which every survey image
is brought to before it reaches the model.

Label code ``abc`` (``LABEL_NAMES[i]``): ``a`` = 1 FR-I, 2 FR-II, 3 hybrid; ``b`` = 0
Confident, 1 Uncertain; ``c`` = 0 standard, 1 double-double, 2 wide-angle tail,
4 head-tail.

The paper uses the binary *Confident* subset (``MBFRConfident`` of ``inigoval/fixmatch``):
labels {0, 1, 2} -> 0 (FR-I), {5, 6} -> 1 (FR-II), all others dropped, order kept.
Both published versions give 729 training items (348 FR-I, 381 FR-II) and 104 test
items (49 FR-I then 55 FR-II).

Versions (``VERSIONS``):

``full``       ``MiraBest_full_batches.tar.gz`` -> ``batches/``; what the paper used.
``F``          ``MiraBest_F_batches.tar.gz`` -> ``F_batches/``; most later work.
``synthetic``  ``MiraBest_synthetic_batches.tar.gz`` -> ``synthetic_batches/``; made
               locally by ``make_synthetic_archive``, checksums in a JSON manifest
               beside the archive, loaded through the same verify/extract/read path.

Every archive and every extracted member is checked against its md5 before it is
unpickled (pickles can run code, so the checksum is also the safety check).

"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pooch

from .. import paths
from .archive import (
    IMAGE_SHAPE,
    LABEL_NAMES,
    META,
    SYNTHETIC_MANIFEST,
    TEST_BATCHES,
    TRAIN_BATCHES,
    VERSIONS,
    Version,
    md5sum,
)
from .synthetic import make_synthetic_archive

CLASS_NAMES = ("FR-I", "FR-II")
# MBFRConfident: fine label -> binary label; fine labels not listed are dropped.
CONFIDENT = {0: 0, 1: 0, 2: 0, 5: 1, 6: 1}


# --------------------------------------------------------------------------- errors


class ChecksumError(ValueError):
    """A file failed its md5 checksum; nothing from it was used."""

    def __init__(self, path: str | os.PathLike, expected: str, actual: str, hint: str = ""):
        self.path, self.expected, self.actual = Path(path), expected, actual
        msg = f"{self.path} failed its md5 checksum: expected {expected}, got {actual}; nothing was extracted or loaded from it."
        super().__init__(msg + (f" {hint}" if hint else ""))


class ArchiveError(ValueError):
    """An archive whose checksum passed but which cannot be used (unreadable, unsafe, incomplete)."""


class ArchiveNotFoundError(FileNotFoundError):
    """No local copy of a MiraBest archive, and it could not (or may not) be downloaded."""

    def __init__(self, archive: str, url: str | None, folder: str | os.PathLike, reason: str = "", extracted: str = ""):
        self.archive, self.url, self.folder = archive, url, Path(folder)
        where = f"download it from\n    {url}\n" if url else ""
        msg = (
            f"MiraBest archive {archive}"
            + (f" (or its extracted {extracted}/)" if extracted else "")
            + f" not found in {self.folder}"
            + (f" ({reason})" if reason else "")
            + f".\nTo use it offline, {where}and put it in\n    {self.folder}{os.sep}\n"
            "for example on a login node with network access before running on an air-gapped "
            "compute node (`make download` does this), or point $RADIOALIGN_DATA_DIR (or root=) "
            "at a folder that holds it."
        )
        super().__init__(msg)


def _version(version: str) -> Version:
    try:
        return VERSIONS[version]
    except KeyError:
        raise ValueError(f"unknown MiraBest version {version!r}; choose one of {sorted(VERSIONS)}") from None


def _synthetic_version(root: Path) -> Version:
    """The synthetic version with the checksums from its manifest; the default synthetic
    archive is generated first when neither it nor a usable extracted copy is present."""
    spec = VERSIONS["synthetic"]
    archive, manifest = root / spec.archive, root / SYNTHETIC_MANIFEST
    if not archive.is_file() and (not manifest.is_file() or not (root / spec.folder).is_dir()):
        make_synthetic_archive(root)
    if not manifest.is_file():
        raise ArchiveError(
            f"{archive} has no manifest {SYNTHETIC_MANIFEST} beside it, so its checksums are unknown; "
            "delete the archive (it is regenerated) or rerun make_synthetic_archive."
        )
    info = json.loads(manifest.read_text())
    return Version(
        name=spec.name,
        archive=spec.archive,
        folder=spec.folder,
        url=None,
        archive_md5=info["archive_md5"],
        member_md5=dict(info["member_md5"]),
        names_from_filenames=True,
    )


# --------------------------------------------------------------------------- verify, fetch, extract


def _verify(path: Path, expected: str, hint: str = "") -> None:
    actual = md5sum(path)
    if actual != expected:
        raise ChecksumError(path, expected, actual, hint)


def _verify_folder(folder: Path, spec: Version) -> None:
    hint = f"Delete {folder} to extract it again from {spec.archive}."
    for member, expected in spec.member_md5.items():
        path = folder / member
        if not path.is_file():
            raise ArchiveError(f"{folder} lacks {member}: an incomplete copy of MiraBest {spec.name!r}. {hint}")
        _verify(path, expected, hint)


def _download(spec: Version, root: Path) -> None:
    """Fetch the archive with pooch (which writes to a temporary file and moves it into place
    only when its md5 matches)."""
    try:
        pooch.retrieve(spec.url, known_hash=f"md5:{spec.archive_md5}", fname=spec.archive, path=root, progressbar=True)
    except ValueError as exc:
        if "hash" not in str(exc):  # not pooch's hash mismatch (e.g. a malformed URL)
            raise ArchiveNotFoundError(spec.archive, spec.url, root, reason=f"download failed: {exc}") from exc
        # pooch deleted the mismatching download; its message carries the hash it got.
        got = re.search(r"got ([0-9a-fA-F]+)", str(exc))
        raise ChecksumError(
            root / spec.archive, spec.archive_md5, got.group(1) if got else "unknown", f"(downloaded from {spec.url})"
        ) from exc
    except Exception as exc:  # network, HTTP, TLS, proxy...: say where to put a prefetched copy
        raise ArchiveNotFoundError(spec.archive, spec.url, root, reason=f"download failed: {exc}") from exc


def _safe_members(tar: tarfile.TarFile, spec: Version) -> list[tarfile.TarInfo]:
    """The archive's expected members, after refusing any archive that holds absolute
    paths, parent references or links anywhere (a malformed or malicious tarball)."""
    wanted = {f"{spec.folder}/{m}" for m in spec.member_md5}
    found = {}
    for info in tar.getmembers():
        name = PurePosixPath(info.name)
        if name.is_absolute() or ".." in name.parts or info.issym() or info.islnk() or info.isdev():
            raise ArchiveError(f"{spec.archive} holds an unsafe member {info.name!r}; refusing to extract it.")
        if info.name in wanted:
            if not info.isfile():
                raise ArchiveError(f"{spec.archive}: member {info.name!r} is not a regular file.")
            found[info.name] = info
    missing = sorted(wanted - set(found))
    if missing:
        raise ArchiveError(f"{spec.archive} lacks {missing}: not a MiraBest {spec.name!r} archive.")
    return list(found.values())


def _extract(archive: Path, spec: Version, root: Path) -> None:
    """Extract into a temporary folder inside ``root``, verify every member, then rename
    into place, so a failure at any step leaves no partial ``spec.folder`` behind."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = _safe_members(tar, spec)
                # The "data" filter (Python >= 3.11.4) re-checks paths and drops odd permissions.
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=members, **kwargs)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise ArchiveError(f"{archive} is not a readable tar.gz archive (truncated or corrupted?): {exc}") from exc
        _verify_folder(tmp / spec.folder, spec)
        target = root / spec.folder
        try:
            os.replace(tmp / spec.folder, target)
        except OSError:
            # Another process put a copy in place meanwhile: use it if it is sound.
            if not target.is_dir():
                raise
            _verify_folder(target, spec)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_mirabest(version: str = "full", root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Make sure a verified, extracted copy of one MiraBest version exists; return its folder.

    Order: an extracted ``<root>/<folder>`` is checked member by member and used; else the
    archive ``<root>/<archive>`` is checked and extracted; else (``download=True``) it is
    downloaded from the published URL first. ``version="synthetic"`` generates the default
    synthetic archive when absent (no network).

    Raises
    ------
    ChecksumError
        An archive or member does not match its published md5 (names the file and both sums).
    ArchiveNotFoundError
        No local copy and ``download=False``, or the download failed (names the archive,
        its URL and the folder to put it in).
    ArchiveError
        A checksum-clean archive that cannot be extracted safely, or an incomplete folder.
    """
    spec = _version(version)
    root = Path(root).expanduser() if root is not None else paths.data_dir()
    if spec.name == "synthetic":
        spec = _synthetic_version(root)
    folder, archive = root / spec.folder, root / spec.archive
    if folder.is_dir():
        _verify_folder(folder, spec)
        return folder
    if archive.is_file():
        _verify(archive, spec.archive_md5, f"Delete it and fetch {spec.url} again." if spec.url else "Delete it: it is regenerated.")
    elif not download:
        raise ArchiveNotFoundError(spec.archive, spec.url, root, reason="download=False", extracted=spec.folder)
    else:
        root.mkdir(parents=True, exist_ok=True)
        _download(spec, root)
        _verify(archive, spec.archive_md5)
    _extract(archive, spec, root)
    return folder


# --------------------------------------------------------------------------- load


@dataclass
class MiraBest:
    """One split of the Confident binary MiraBest subset, in the published order.

    ``images`` (N, 150, 150) uint8; ``labels`` (N,) int64, 0 = FR-I, 1 = FR-II;
    ``fine_labels`` (N,) int64, the original 0-9 labels (index into ``LABEL_NAMES``);
    ``names`` N unique ids: F, the filename stem (``100_123.251+043.797_0.1281_0034.09``);
    synthetic, its stem (``100_synthetic_b1_000``: class code, batch, position); full,
    ``full-<split>-<i:04d>`` with i the position in this split (the published captions' row).
    """

    images: np.ndarray
    labels: np.ndarray
    fine_labels: np.ndarray
    names: list[str]
    version: str
    split: str

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.labels) == len(self.fine_labels) == len(self.names) == n):
            raise ValueError("images, labels, fine_labels and names must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        counts = np.bincount(self.labels, minlength=2)
        return (
            f"MiraBest(version={self.version!r}, split={self.split!r}, n={len(self)}, "
            f"FR-I={counts[0]}, FR-II={counts[1]})"
        )

    def subset(self, indices) -> MiraBest:
        """The items at ``indices`` (e.g. from ``validation_split``), in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return MiraBest(
            images=self.images[idx],
            labels=self.labels[idx],
            fine_labels=self.fine_labels[idx],
            names=[self.names[i] for i in idx],
            version=self.version,
            split=self.split,
        )


def _read_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        # latin1: the batches were written by Python 2-era code; numpy arrays need it.
        return pickle.load(f, encoding="latin1")


def _read_batches(folder: Path, batches: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Images, fine labels and filenames (None when a batch has none) of ``batches``, in order."""
    meta = _read_pickle(folder / META)
    if tuple(meta.get("label_names", ())) != LABEL_NAMES:
        raise ArchiveError(f"{folder / META}: label_names {meta.get('label_names')} are not MiraBest's {LABEL_NAMES}")
    images, labels, filenames = [], [], []
    for batch in batches:
        d = _read_pickle(folder / batch)
        n = len(d["labels"])
        if len(d["data"]) != n or ("filenames" in d and len(d["filenames"]) != n):
            raise ArchiveError(f"{folder / batch}: labels, data and filenames differ in length")
        images.extend(np.asarray(a, dtype=np.uint8).reshape(IMAGE_SHAPE) for a in d["data"])
        labels.extend(int(x) for x in d["labels"])
        if filenames is not None and "filenames" in d:
            filenames.extend(str(f) for f in d["filenames"])
        else:
            filenames = None
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(LABEL_NAMES)):
        raise ArchiveError(f"{folder}: labels outside 0..{len(LABEL_NAMES) - 1}")
    return np.stack(images), labels, filenames


def load_mirabest(
    split: str = "train", version: str = "full", root: str | os.PathLike | None = None, download: bool = True
) -> MiraBest:
    """Load one split of the Confident binary MiraBest subset (``MBFRConfident``).

    Parameters
    ----------
    split : "train" (batches ``data_batch_1..7``, 729 items) or "test" (``test_batch``, 104).
    version : "full" (the paper's data), "F", or "synthetic" (generated when absent).
    root : folder holding the archive and/or its extracted folder;
        default ``$RADIOALIGN_DATA_DIR``, else ``<repo>/data/mirabest``.
    download : download the archive from its published URL when no local copy exists.

    Returns
    -------
    MiraBest
        Items with fine labels {0, 1, 2} (FR-I, label 0) and {5, 6} (FR-II, label 1), in
        batch order; see ``fetch_mirabest`` for the errors raised.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    spec = _version(version)
    folder = fetch_mirabest(version, root=root, download=download)
    images, fine, filenames = _read_batches(folder, TRAIN_BATCHES if split == "train" else TEST_BATCHES)
    keep = np.isin(fine, list(CONFIDENT))
    binary = np.array([CONFIDENT[f] for f in fine[keep]], dtype=np.int64)
    if spec.names_from_filenames:
        if filenames is None:
            raise ArchiveError(f"{folder}: batches carry no filenames, so names cannot be derived")
        names = [PurePosixPath(f).stem for f, k in zip(filenames, keep) if k]
    else:
        names = [f"{spec.name}-{split}-{i:04d}" for i in range(int(keep.sum()))]
    return MiraBest(
        images=images[keep], labels=binary, fine_labels=fine[keep], names=names, version=spec.name, split=split
    )


def images_by_name(ds: MiraBest) -> dict[str, np.ndarray]:
    """``{name: image}`` for a loaded split (the captioning API keys captions by name)."""
    return dict(zip(ds.names, ds.images))


# --------------------------------------------------------------------------- split


def validation_split(n: int, fraction: float = 0.15, seed: int = 42, *, sort: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The authors' train/validation split of ``n`` training items.

    Their ``finetune_image_text.py`` (``split_train_val``) takes ``n_val = int(n * fraction)``
    items and calls ``torch.utils.data.random_split(ds, [n - n_val, n_val],
    generator=torch.Generator().manual_seed(seed))``; this does the same, so 729 items give
    the same 620 / 109 partition. (scikit-learn's ``train_test_split`` rounds the other way,
    619 / 110, and draws a different permutation.)

    Returns
    -------
    (train_idx, val_idx) : int64 arrays, sorted unless ``sort=False`` (then in
        ``random_split``'s order, i.e. the order of the authors' ``Subset`` objects).
    """
    import torch
    from torch.utils.data import random_split

    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, not {n!r}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), not {fraction!r}")
    n_val = int(n * fraction)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"fraction={fraction} of n={n} leaves {n_val} validation items")
    train, val = random_split(range(n), [n - n_val, n_val], generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = np.asarray(train.indices, dtype=np.int64), np.asarray(val.indices, dtype=np.int64)
    return (np.sort(train_idx), np.sort(val_idx)) if sort else (train_idx, val_idx)
