"""MiraBest: download, verify, load; the validation split; model-input preprocessing;
a synthetic archive in the same format.

MiraBest (Porter & Scaife 2023, doi:10.1093/rasti/rzad017; Zenodo 10.5281/zenodo.4288837)
is a set of 1256 FIRST radio galaxies, 150x150 ``uint8`` images, shipped as CIFAR-style
pickles in a ``.tar.gz``: seven training batches ``data_batch_1..7``, one ``test_batch``
and ``batches.meta``. Each batch is a dict with ``labels`` (ints 0-9 indexing
``LABEL_NAMES``), ``data`` (a list of 150x150 arrays) and, in the F version,
``filenames``; items are sorted by label within a batch.

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
import hashlib
import io
import json
import math
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

from . import paths

LABEL_NAMES = ("100", "102", "104", "110", "112", "200", "201", "210", "300", "310")
CLASS_NAMES = ("FR-I", "FR-II")
# MBFRConfident: fine label -> binary label; fine labels not listed are dropped.
CONFIDENT = {0: 0, 1: 0, 2: 0, 5: 1, 6: 1}

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 8))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
MEMBERS = TRAIN_BATCHES + TEST_BATCHES + (META,)
IMAGE_SHAPE = (150, 150)

SYNTHETIC_MANIFEST = "MiraBest_synthetic_batches.json"


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


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True)
class Version:
    """Where one MiraBest version comes from and what its files must hash to.

    ``member_md5`` maps each member of ``folder`` (``MEMBERS``) to its md5.
    ``names_from_filenames``: ``names`` are the filename stems stored in the batches
    (F, synthetic) rather than ``<version>-<split>-<index>`` ids (full).
    """

    name: str
    archive: str
    folder: str
    url: str | None
    archive_md5: str | None
    member_md5: dict[str, str] | None
    names_from_filenames: bool


VERSIONS: dict[str, Version] = {
    "full": Version(
        name="full",
        archive="MiraBest_full_batches.tar.gz",
        folder="batches",
        url="http://www.jb.man.ac.uk/research/MiraBest/full_dataset/MiraBest_full_batches.tar.gz",
        archive_md5="965b5daa83b9d8622bb407d718eecb51",
        member_md5={
            "data_batch_1": "b15ae155301f316fc0b51af16b3c540d",
            "data_batch_2": "0bf52cc1b47da591ed64127bab6df49e",
            "data_batch_3": "98908045de6695c7b586d0bd90d78893",
            "data_batch_4": "ec9b9b77dc019710faf1ad23f1a58a60",
            "data_batch_5": "5190632a50830e5ec30de2973cc6b2e1",
            "data_batch_6": "b7113d89ddd33dd179bf64cb578be78e",
            "data_batch_7": "626c866b7610bfd08ac94ca3a17d02a1",
            "test_batch": "5e443302dbdf3c2003d68ff9ac95f08c",
            "batches.meta": "e1b5450577209e583bc43fbf8e851965",
        },
        names_from_filenames=False,
    ),
    "F": Version(
        name="F",
        archive="MiraBest_F_batches.tar.gz",
        folder="F_batches",
        url="http://www.jb.man.ac.uk/research/MiraBest/MiraBest_F/MiraBest_F_batches.tar.gz",
        archive_md5="7d4e3a623d29db7204bce81676ee8ce2",
        member_md5={
            "data_batch_1": "f7a470b7367e8e0d0c5093d2cf266d54",
            "data_batch_2": "bb65ecd7e748e9fb789419b1efbf1bab",
            "data_batch_3": "32de1078e7cd47f5338c666a1b563ede",
            "data_batch_4": "a1209aceedd8806c88eab27ce45ee2c4",
            "data_batch_5": "1619cd7c54f5d71fcf4cfefea829728e",
            "data_batch_6": "636c2b84649286e19bcb0684fc9fbb01",
            "data_batch_7": "bc67bc37080dc4df880ffe9720d680a8",
            "test_batch": "ac7ea0d5ee8c7ab49f257c9964796953",
            "batches.meta": "e1b5450577209e583bc43fbf8e851965",
        },
        names_from_filenames=True,
    ),
    # Checksums live in SYNTHETIC_MANIFEST, written by make_synthetic_archive.
    "synthetic": Version(
        name="synthetic",
        archive="MiraBest_synthetic_batches.tar.gz",
        folder="synthetic_batches",
        url=None,
        archive_md5=None,
        member_md5=None,
        names_from_filenames=True,
    ),
}


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


def md5sum(path: str | os.PathLike) -> str:
    return pooch.file_hash(str(path), alg="md5")


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


# --------------------------------------------------------------------------- split, preprocess


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


PREPROCESS_MODES = ("paper", "siglip")


def preprocess(images, mode: str = "paper", size: int = 224):
    """Grey ``uint8`` images to model input: (N, H, W) -> float32 tensor (N, 3, size, size).

    Pixels are divided by 255, resized with bilinear interpolation
    (``torch.nn.functional.interpolate``, ``align_corners=False``, no antialiasing) and the
    grey channel is replicated three times. ``paper``: values in [0, 1], as the authors fed
    the model (their torchvision ``Resize`` on a PIL image; for this 150 -> 224 upsampling
    the two agree to within one grey level, PIL rounding its result to uint8);
    ``siglip``: ``(x - 0.5) / 0.5`` in [-1, 1], SigLIP's own normalisation.

    Call it per batch: the result takes N * 3 * size**2 * 4 bytes.
    """
    import torch
    import torch.nn.functional as F

    if mode not in PREPROCESS_MODES:
        raise ValueError(f"mode must be one of {PREPROCESS_MODES}, not {mode!r}")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, not {size!r}")
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array (N, H, W) of uint8, not {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (0-255 grey levels, as loaded), not {images.dtype}")
    if images.ndim != 3:
        hint = " (a single image? use images[None])" if images.ndim == 2 else ""
        raise ValueError(f"images must have shape (N, H, W), not {images.shape}{hint}")
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0).unsqueeze(1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    # Bilinear weights are convex, so [0, 1] is kept up to rounding; clamp the rounding.
    x = x.clamp_(0.0, 1.0).repeat(1, 3, 1, 1)
    if mode == "siglip":
        x = x.sub_(0.5).div_(0.5)
    return x


# --------------------------------------------------------------------------- synthetic archive

# Fine-label frequencies of the synthetic set: Confident 0/1/2/5/6 about 72 %, as in MiraBest
# (66 %), every kind present so the Confident filter has something to drop.
_SYNTHETIC_WEIGHTS = np.array([0.28, 0.06, 0.05, 0.06, 0.04, 0.28, 0.05, 0.06, 0.06, 0.06])


def _add_gaussian(img: np.ndarray, x0: float, y0: float, amp: float, sx: float, sy: float | None = None, theta: float = 0.0) -> None:
    """Add an elliptical Gaussian (peak ``amp``, widths ``sx`` along ``theta``, ``sy`` across)
    to ``img`` in place, evaluated only within 4 sigma of its centre."""
    sy = sx if sy is None else sy
    r = 4.0 * max(sx, sy)
    h, w = img.shape
    x_lo, x_hi = max(int(x0 - r), 0), min(int(x0 + r) + 2, w)
    y_lo, y_hi = max(int(y0 - r), 0), min(int(y0 + r) + 2, h)
    if x_lo >= x_hi or y_lo >= y_hi:
        return
    yy, xx = np.mgrid[y_lo:y_hi, x_lo:x_hi].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    u = c * (xx - x0) + s * (yy - y0)
    v = -s * (xx - x0) + c * (yy - y0)
    img[y_lo:y_hi, x_lo:x_hi] += amp * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))


def _path(x0: float, y0: float, angle: float, length: float, bend: float, step: float = 1.0):
    """Points along a curved path from (x0, y0): direction ``angle`` turning by ``bend``
    radians in total (quadratically, like a jet swept back by the intracluster medium).
    Yields (x, y, t, direction) with t in (0, 1] the fraction of ``length`` travelled."""
    n = max(int(length / step), 2)
    x, y = x0, y0
    for k in range(1, n + 1):
        t = k / n
        a = angle + bend * t * t
        x, y = x + (length / n) * math.cos(a), y + (length / n) * math.sin(a)
        yield x, y, t, a


def _add_ridge(img, points, brightness, width_along, width_across, spacing: float = 1.0) -> None:
    """Emission along ``points``: Gaussians ``spacing`` px apart whose peaks are scaled so the
    ridge's surface brightness is ``brightness(t)`` (overlapping Gaussians would otherwise add
    up in proportion to their width and swamp the core or hot spot)."""
    for x, y, t, a in points:
        sx = width_along(t)
        _add_gaussian(img, x, y, brightness(t) * spacing / (sx * math.sqrt(2 * math.pi)), sx, width_across(t), a)


def _fr1(img, rng, cx, cy, fine: int) -> None:
    """FR-I-like (edge-darkened): the brightest emission is the compact core; jets fade outward
    and widen. 102 / 112 wide-angle tail: both jets bend to the same side; 104 head-tail: one
    swept-back tail."""
    theta = rng.uniform(0, 2 * math.pi)
    _add_gaussian(img, cx, cy, 1.0, rng.uniform(1.3, 2.2))
    length = rng.uniform(10, 30)
    a0 = rng.uniform(0.3, 0.55)
    uncertain = fine in (3, 4)
    if fine == 2:  # head-tail: a single tail behind the head
        jets = [(theta, rng.normal(0, 0.2), length * 1.4)]
    else:
        bend = rng.choice([-1, 1]) * rng.uniform(0.8, 1.4) if fine in (1, 4) else rng.normal(0, 0.1)
        # The two jets start opposite; a wide-angle tail turns both toward the same side.
        jets = [(theta, bend, length), (theta + math.pi, -bend, length * rng.uniform(0.6, 1.0))]

    def brightness(t):
        knot = 2.0 if uncertain and 0.45 < t < 0.6 else 1.0  # a bright knot half-way: the ambiguous cases
        return a0 * knot * math.exp(-2.5 * t)

    for angle, bend, jet_len in jets:
        _add_ridge(img, _path(cx, cy, angle, jet_len, bend), brightness, lambda t: 1.5, lambda t: 1.0 + 2.0 * t)


def _fr2(img, rng, cx, cy, fine: int) -> None:
    """FR-II-like (edge-brightened): two lobes whose brightest points, the hot spots, sit at
    their outer ends; a weak or absent core. 201 double-double: an inner pair of lobes too."""
    theta = rng.uniform(0, 2 * math.pi)
    length = rng.uniform(15, 45)
    uncertain = fine == 7
    if rng.random() < 0.6 or uncertain:
        _add_gaussian(img, cx, cy, rng.uniform(0.05, 0.25) * (2.0 if uncertain else 1.0), rng.uniform(1.2, 1.8))
    for side in (0, 1):
        angle = theta + side * math.pi + rng.normal(0, 0.08)
        arm = length * (1.0 if side == 0 else rng.uniform(0.75, 1.0))
        _lobe(img, rng, cx, cy, angle, arm, hot=rng.uniform(0.3, 0.5) if uncertain else rng.uniform(0.65, 1.0))
        if fine == 6:
            _lobe(img, rng, cx, cy, angle, arm * rng.uniform(0.35, 0.5), hot=rng.uniform(0.35, 0.55))


def _lobe(img, rng, cx, cy, angle: float, arm: float, hot: float) -> None:
    """A lobe over the outer half of ``arm``, brightening outward and ending in a compact hot spot."""
    c, s = math.cos(angle), math.sin(angle)
    x0, y0 = cx + 0.5 * arm * c, cy + 0.5 * arm * s
    width = rng.uniform(2.0, 3.5)
    level = rng.uniform(0.15, 0.3)
    _add_ridge(img, _path(x0, y0, angle, 0.5 * arm, 0.0), lambda t: level * (0.5 + 0.5 * t), lambda t: 1.5, lambda t: width)
    _add_gaussian(img, cx + arm * c, cy + arm * s, hot, rng.uniform(1.1, 1.8))


def _hybrid(img, rng, cx, cy, fine: int) -> None:
    """Hybrid (300 / 310): an FR-I jet on one side, an FR-II lobe with a hot spot on the other."""
    theta = rng.uniform(0, 2 * math.pi)
    _add_gaussian(img, cx, cy, 0.8, rng.uniform(1.3, 2.0))
    jet = _path(cx, cy, theta, rng.uniform(12, 25), rng.normal(0, 0.2))
    _add_ridge(img, jet, lambda t: 0.45 * math.exp(-2.5 * t), lambda t: 1.5, lambda t: 1.0 + 2.0 * t)
    _lobe(img, rng, cx, cy, theta + math.pi, rng.uniform(15, 35), hot=rng.uniform(0.6, 1.0) * (0.6 if fine == 9 else 1.0))


def synthetic_image(rng: np.random.Generator, fine_label: int, shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """One MiraBest-like 150x150 ``uint8`` image of the given fine label (0-9).

    A source near the centre (a few pixels of jitter, random orientation and size), 0-3
    unassociated compact sources 35-65 px from it, Gaussian noise, then MiraBest's
    processing: pixels below 3 sigma of the noise set to 0, the rest scaled so the
    brightest is 255.
    """
    img = np.zeros(shape, dtype=np.float64)
    cy, cx = (shape[0] - 1) / 2 + rng.normal(0, 3), (shape[1] - 1) / 2 + rng.normal(0, 3)
    if fine_label in (0, 1, 2, 3, 4):
        _fr1(img, rng, cx, cy, fine_label)
    elif fine_label in (5, 6, 7):
        _fr2(img, rng, cx, cy, fine_label)
    elif fine_label in (8, 9):
        _hybrid(img, rng, cx, cy, fine_label)
    else:
        raise ValueError(f"fine_label must be in 0..9, not {fine_label}")
    for _ in range(rng.poisson(0.8)):
        r, phi = rng.uniform(35, 65), rng.uniform(0, 2 * math.pi)
        x, y = cx + r * math.cos(phi), cy + r * math.sin(phi)
        if 4 <= x < shape[1] - 4 and 4 <= y < shape[0] - 4:
            _add_gaussian(img, x, y, rng.uniform(0.12, 0.5), rng.uniform(1.0, 1.5))
    sigma = rng.uniform(0.012, 0.025)
    img += rng.normal(0.0, sigma, size=shape)
    img[img < 3 * sigma] = 0.0
    return np.round(255.0 * img / img.max()).astype(np.uint8)


def _synthetic_batch(rng: np.random.Generator, n: int, batch_label: str, tag: str) -> dict:
    """One batch dict in MiraBest's format: ``n`` items sorted by label, both classes present."""
    if n < 2:
        raise ValueError(f"per_batch must be >= 2 (one FR-I and one FR-II), not {n}")
    labels = np.sort(np.concatenate([[0, 5], rng.choice(len(LABEL_NAMES), size=n - 2, p=_SYNTHETIC_WEIGHTS)]))
    data, filenames = [], []
    for i, label in enumerate(labels):
        data.append(synthetic_image(rng, int(label)))
        # The F naming scheme starts with the class code; the rest says what this is.
        filenames.append(f"./MiraBest_F/PNG/Scaled_Final/{LABEL_NAMES[label]}_synthetic_{tag}_{i:03d}.png")
    return {"batch_label": batch_label, "labels": [int(x) for x in labels], "data": data, "filenames": filenames}


def _tar_add(tar: tarfile.TarFile, name: str, payload: bytes | None) -> None:
    """Add a file (or a folder when ``payload`` is None) with fixed metadata, for identical bytes."""
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if payload is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.mode, info.size = 0o644, len(payload)
        tar.addfile(info, io.BytesIO(payload))


def make_synthetic_archive(root: str | os.PathLike | None = None, *, per_batch: int = 24, seed: int = 0) -> Path:
    """Write ``MiraBest_synthetic_batches.tar.gz`` (and its manifest) into ``root``.

    The archive has MiraBest's exact layout and pickle format: ``synthetic_batches/``
    with ``data_batch_1..7``, ``test_batch`` (``per_batch`` items each, sorted by label,
    fine labels 0-9 with every kind present) and ``batches.meta``; pickle protocol 2.
    The same ``seed`` gives the same bytes (fixed tar and gzip metadata). The manifest
    ``MiraBest_synthetic_batches.json`` records the archive md5 and member md5s so that
    ``load_mirabest(version="synthetic")`` verifies it like a published archive.
    An existing extracted ``synthetic_batches/`` is removed: it belongs to the old archive.

    Returns
    -------
    Path of the archive.
    """
    from .provenance import stamp

    spec = VERSIONS["synthetic"]
    root = Path(root).expanduser() if root is not None else paths.data_dir()
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    for k, batch in enumerate(TRAIN_BATCHES, start=1):
        members[batch] = pickle.dumps(_synthetic_batch(rng, per_batch, f"training batch {k} of 7", f"b{k}"), protocol=2)
    members["test_batch"] = pickle.dumps(_synthetic_batch(rng, per_batch, "testing batch 1 of 1", "test"), protocol=2)
    meta = {"num_cases_per_batch": per_batch, "label_names": list(LABEL_NAMES), "num_vis": IMAGE_SHAPE[0] * IMAGE_SHAPE[1]}
    members[META] = pickle.dumps(meta, protocol=2)

    buf = io.BytesIO()
    # gzip stores a timestamp and a file name in its header: fix both.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            _tar_add(tar, spec.folder, None)
            for name in MEMBERS:
                _tar_add(tar, f"{spec.folder}/{name}", members[name])
    payload = buf.getvalue()

    archive = root / spec.archive
    _atomic_write(archive, payload)
    manifest = {
        "archive": spec.archive,
        "folder": spec.folder,
        "archive_md5": md5sum(archive),
        "member_md5": {name: _md5_bytes(members[name]) for name in MEMBERS},
        "generator": {"function": "radioalign.data.make_synthetic_archive", "per_batch": per_batch, "seed": seed},
        "stamp": stamp(),
    }
    _atomic_write(root / SYNTHETIC_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    shutil.rmtree(root / spec.folder, ignore_errors=True)
    return archive


def _md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
