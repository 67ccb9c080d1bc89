"""A synthetic radio-galaxy simulator and a MiraBest-format archive made from it.

The simulator draws FR-I (edge-darkened jets brightest near the core), FR-II
(edge-brightened lobes with hotspots) and hybrid sources as sums of elliptical Gaussians
along curved ridges, with noise clipped at 3 sigma. ``make_synthetic_archive`` writes
them in MiraBest's exact pickle/tar layout, so the smoke profile and the tests go
through the same verify/extract/load path as the real data.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np

from .. import paths
from .archive import (
    IMAGE_SHAPE,
    LABEL_NAMES,
    MEMBERS,
    META,
    SYNTHETIC_MANIFEST,
    TRAIN_BATCHES,
    VERSIONS,
    atomic_write,
    md5_bytes,
    md5sum,
)

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
    from ..provenance import stamp

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
    atomic_write(archive, payload)
    manifest = {
        "archive": spec.archive,
        "folder": spec.folder,
        "archive_md5": md5sum(archive),
        "member_md5": {name: md5_bytes(members[name]) for name in MEMBERS},
        "generator": {"function": "radioalign.data.make_synthetic_archive", "per_batch": per_batch, "seed": seed},
        "stamp": stamp(),
    }
    atomic_write(root / SYNTHETIC_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    shutil.rmtree(root / spec.folder, ignore_errors=True)
    return archive

