"""Where the study writes: ``results/<profile>/...`` (movable with ``$RADIOALIGN_RESULTS_DIR``).

Every notebook reads only files that an earlier one wrote here, so any one can be
rerun alone. :func:`results_dir` is the one place a ``Profile`` becomes a folder; the
other functions take that folder, as does every study function that needs nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..paths import _env_or, repo_root

if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile


def results_root() -> Path:
    return _env_or("RADIOALIGN_RESULTS_DIR", repo_root() / "results")


def results_dir(profile: Profile) -> Path:
    """``results/<profile>``: everything a profile's notebooks write."""
    if isinstance(profile, (str, os.PathLike)):
        # A name here is a mistake that would otherwise write to another profile's folder.
        raise TypeError(f"results_dir takes a Profile (study.profiles.get_profile({str(profile)!r})), not {profile!r}")
    return results_root() / profile.name


def folder(results: Path) -> Path:
    """``results`` checked to be a folder (a ``Path``), not a profile or its name: a name
    would silently become a relative path."""
    if not isinstance(results, Path):
        raise TypeError(f"expected a profile's results folder (layout.results_dir(profile)), not {results!r}")
    return results


def captions_store(results: Path, source: str, prompt: str, split: str) -> Path:
    return folder(results) / "captions" / source / f"{prompt}_{split}.jsonl"


def embeddings_dir(results: Path) -> Path:
    return folder(results) / "embeddings"


def embeddings_file(results: Path, tag: str) -> Path:
    """One ``.npz`` bundle of embeddings per model tag (``radioalign.study.bundles``)."""
    return embeddings_dir(results) / f"{tag}.npz"


def run_dir(results: Path, run: str) -> Path:
    """A LoRA run's folder (adapter, checkpoint, history), named by its run tag."""
    return folder(results) / "runs" / run


def figures_dir(results: Path) -> Path:
    return folder(results) / "figures"
