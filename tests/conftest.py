"""Shared test set-up: fully offline, real data from ../shared when present."""

from __future__ import annotations

import os

# Before any Hugging Face import: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from radioalign.paths import shared_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared() -> Path:
    """The project's ../shared folder; tests that need it skip visibly when it is absent
    (a user's fresh clone has no ../shared)."""
    path = shared_dir()
    if path is None or not (path / "data").is_dir():
        pytest.skip("../shared/data is absent (a fresh clone): real-data test skipped")
    return path


@pytest.fixture(scope="session")
def mirabest_f_archive(shared: Path) -> Path:
    path = shared / "data" / "mirabest" / "MiraBest_F_batches.tar.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent: real-data test skipped")
    return path


@pytest.fixture(scope="session")
def published_captions_dir(shared: Path) -> Path:
    path = shared / "data" / "captions"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: published-captions test skipped")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: thread synchronisation costs more than it saves on shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    """A tiny SigLIP with a locally built tokenizer, saved once per session (no download)."""
    from tiny_siglip import tiny_folder

    return tiny_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tiny(tiny_siglip_dir):
    """``(model, processor)`` of the tiny SigLIP, loaded through ``load_siglip`` once per module."""
    from tiny_siglip import load_tiny

    return load_tiny(tiny_siglip_dir)
