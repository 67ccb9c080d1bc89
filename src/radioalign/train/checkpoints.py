"""Checkpoints and resume: where a run stands, the checkpoint after every epoch, the run's key.

:class:`TrainState` holds the history and early stopping; the checkpoint replaces the
previous one after every epoch, and the run key lets a checkpoint resume only its own run."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..embed import model_fingerprint
from .batches import Split
from .config import FinetuneConfig

CHECKPOINT = "checkpoint.pt"


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise ValueError(f"checkpoint lacks adapter weights {missing[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


@dataclass
class TrainState:
    """Where a run stands after ``epoch`` finished epochs: the per-epoch ``history``, the
    lowest validation loss so far (``best_val`` at ``best_epoch``; ``best_state`` its adapter
    weights when ``restore_best``), the epochs since it (``bad_epochs``) and whether early
    stopping has ended the run (``stopped``)."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int | None = None
    bad_epochs: int = 0
    best_state: dict | None = None
    stopped: bool = False

    def record(self, epoch: int, train_loss: float, val_loss: float, model, config: FinetuneConfig) -> dict:
        """Add one finished epoch; a strictly lower validation loss is a new best."""
        entry = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss}
        self.epoch = epoch
        self.history.append(entry)
        if val_loss < self.best_val:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            self.best_state = trainable_state(model) if config.restore_best else None
        else:
            self.bad_epochs += 1
        if config.fixed_epochs is not None:
            self.stopped = epoch >= config.fixed_epochs
        else:
            self.stopped = config.patience > 0 and self.bad_epochs >= config.patience
        return entry


def _rng_state(generator: torch.Generator) -> dict:
    state = {"cpu": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(torch, "mps", None) is not None and torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["cpu"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def save_checkpoint(path: Path, run_key: str, state: TrainState, model, optimizer, scheduler, scaler, generator) -> None:
    """Replace ``path`` atomically with everything needed to continue exactly after ``state.epoch``."""
    _save_atomic(
        {
            "run_key": run_key, "epoch": state.epoch, "trainable": trainable_state(model),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": _rng_state(generator), "history": state.history, "best_val": state.best_val,
            "best_epoch": state.best_epoch, "bad_epochs": state.bad_epochs, "best_state": state.best_state,
            "stopped": state.stopped,
        },
        path,
    )  # fmt: skip


def load_checkpoint(path: Path, run_key: str, model, optimizer, scheduler, scaler, generator) -> TrainState | None:
    """Restore weights, optimiser, scheduler, scaler and RNG states from ``path`` and return the
    run's state; ``None`` (start afresh) when there is none or it belongs to another run."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("run_key") != run_key:
        warnings.warn(f"{path} belongs to a different run (data, model or settings changed): starting afresh")
        return None
    load_trainable_state(model, saved["trainable"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    _set_rng_state(saved["rng"], generator)
    return TrainState(
        epoch=saved["epoch"], history=list(saved["history"]), best_val=saved["best_val"], best_epoch=saved["best_epoch"],
        bad_epochs=saved["bad_epochs"], best_state=saved["best_state"], stopped=saved["stopped"],
    )  # fmt: skip


def _digest(images: np.ndarray, texts: Sequence[str]) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(json.dumps(list(texts)).encode())
    return h.hexdigest()


def run_key(config: FinetuneConfig, precision: str, model, split: Split) -> str:
    """SHA-256 of what determines the trained weights: the settings (not ``eval_epochs`` or
    ``embed_dtype``, which leave them unchanged), the base model, and the training and
    validation pairs in their order. A checkpoint resumes only its own run.

    ``cache_frozen_tower`` counts: cached features equal the live ones bit for bit only when
    both come from batches of the same size (a short last batch may round differently)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("eval_epochs", "embed_dtype")}
    record = {
        **settings, "mixed_precision": precision, "val_source": split.val_source, "base": model_fingerprint(model),
        "validation_text_inputs": "input_ids+attention_mask" if config.eval_attention_mask else "input_ids",
        "train": _digest(split.train_images, split.train_texts), "val": _digest(split.val_images, split.val_texts),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
