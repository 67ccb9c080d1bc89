"""Where the study writes: ``results/<profile>/...`` (movable with ``$RADIOALIGN_RESULTS_DIR``).

Every notebook reads only files that an earlier one wrote here, so any one can be
rerun alone.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import _env_or, repo_root


def results_root() -> Path:
    return _env_or("RADIOALIGN_RESULTS_DIR", repo_root() / "results")


def results_dir(profile: str) -> Path:
    """``results/<profile>``: everything a profile's notebooks write."""
    return results_root() / profile


def captions_store(profile: str, source: str, prompt: str, split: str) -> Path:
    return results_dir(profile) / "captions" / source / f"{prompt}_{split}.jsonl"


def embeddings_dir(profile: str) -> Path:
    return results_dir(profile) / "embeddings"


def embeddings_file(profile: str, tag: str) -> Path:
    """One ``.npz`` bundle of embeddings per model tag (``radioalign.study.bundles``)."""
    return embeddings_dir(profile) / f"{tag}.npz"


def run_dir(profile: str, run: str) -> Path:
    """A LoRA run's folder (adapter, checkpoint, history), named by its run tag."""
    return results_dir(profile) / "runs" / run


def figures_dir(profile: str) -> Path:
    return results_dir(profile) / "figures"
