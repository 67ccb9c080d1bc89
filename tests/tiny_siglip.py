"""Shared helpers for the model, embedding and training tests: a tiny SigLIP saved to a
temporary folder and loaded back through ``load_siglip`` (the real loading path), and a
toy paired data set of images and captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CAPTIONS = [
    "a bright compact core",
    "two extended lobes with hotspots",
    "a faint diffuse plume to the left",
    "a wide-angle tail bent to the north",
    "a double-double source with two jets",
    "a narrow-angle tail to the bottom right",
    "an unresolved point-like source",
    "an edge-brightened fr-ii radio galaxy",
]


def tiny_folder(root: Path) -> Path:
    from radioalign.model import build_tiny_siglip

    return build_tiny_siglip(root / "tiny-siglip")


def load_tiny(folder: Path):
    from radioalign.model import load_siglip

    return load_siglip(folder, device="cpu")


def toy_images(n: int, seed: int = 0, size: int = 150) -> np.ndarray:
    """``n`` distinct (size, size) uint8 images: a blob at a position that depends on the index, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        sigma = size * (0.05 + 0.03 * (i % 3))
        blob = 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        out[i] = np.clip(blob + rng.normal(20, 8, (size, size)), 0, 255).astype(np.uint8)
    return out


def toy_captions(n: int) -> list[str]:
    return [f"{CAPTIONS[i % len(CAPTIONS)]} at {i} arcsec" for i in range(n)]
