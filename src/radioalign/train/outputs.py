"""What a run leaves behind: stage embeddings, ``config.json``, ``history.json``, the adapter.

And the :class:`FinetuneResult` handed back to the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..embed import embed_images, embed_texts
from ..model import base_model, trainable_fraction
from ..provenance import stamp
from .batches import Split
from .checkpoints import TrainState, load_trainable_state, write_json
from .config import FinetuneConfig, steps_per_epoch


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    ``embeddings`` maps ``"epoch<k>"`` (the ``eval_epochs`` reached) and ``"final"``
    to ``{eval-set name: float32 array}``; ``completed`` is False when the call stopped
    at ``max_epochs_this_call`` (call again to resume). ``val_indices``: the positions
    in the given training pairs that were held out for validation, in the order they
    were evaluated (``None`` when a validation set was given).
    """

    model: Any
    history: list[dict]
    output_dir: Path
    completed: bool
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    trainable_percent: float
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    val_indices: np.ndarray | None = None


def embed_stage(model, processor, eval_sets: Mapping[str, Any], config: FinetuneConfig, output_dir: Path, tag: str) -> dict:
    """``{name: embeddings}`` of every eval set (images arrays or caption lists) with the
    model as it is now, also saved as ``output_dir/embeddings/<tag>.npz``."""
    arrays = {}
    for name, value in eval_sets.items():
        if isinstance(value, np.ndarray):
            arrays[name] = embed_images(model, value, preprocessing=config.preprocessing, dtype=config.embed_dtype, progress=False)
        else:
            arrays[name] = embed_texts(
                model, processor, list(value), dtype=config.embed_dtype, lowercase=config.lowercase,
                attention_mask=config.eval_attention_mask, padding_side=config.padding_side, progress=False,
            )
    if arrays:
        np.savez(output_dir / "embeddings" / f"{tag}.npz", **arrays)
    return arrays


def saved_stages(output_dir: Path, config: FinetuneConfig, history: Sequence[dict]) -> dict:
    """The ``epoch<k>`` embeddings saved by this run (this call or an earlier one), for each ``eval_epochs`` reached."""
    reached = {h["epoch"] for h in history}
    stages = {}
    for epoch in config.eval_epochs:
        path = output_dir / "embeddings" / f"epoch{epoch}.npz"
        if epoch in reached and path.is_file():
            with np.load(path) as data:
                stages[f"epoch{epoch}"] = {k: data[k] for k in data.files}
    return stages


def run_record(config, precision, split: Split, model, device, tower, stamp_profile, stamp_extra=None) -> dict:
    """The content of ``config.json``: the settings, the data sizes and validation indices,
    the model, the device and a provenance stamp (``provenance.stamp(stamp_profile, **stamp_extra)``)."""
    return {
        **config.to_dict(), "mixed_precision": precision, "val_source": split.val_source,
        "val_indices": None if split.val_indices is None else split.val_indices.tolist(),
        "n_train": len(split.train_images), "n_val": len(split.val_images),
        "steps_per_epoch": steps_per_epoch(len(split.train_images), config), "frozen_tower_cached": tower,
        "trainable_percent": trainable_fraction(model), "model": getattr(base_model(model).config, "_name_or_path", ""),
        "device": str(device), "stamp": stamp(stamp_profile, **dict(stamp_extra or {})),
    }  # fmt: skip


def run_result(model, state: TrainState, output_dir: Path, split: Split, completed: bool, embeddings=None) -> FinetuneResult:
    """The :class:`FinetuneResult` of a run that ended (``completed``) or paused where ``state`` stands."""
    return FinetuneResult(
        model=model, history=state.history, output_dir=output_dir, completed=completed, epochs_run=state.epoch,
        best_epoch=state.best_epoch, stopped_early=state.stopped and completed, trainable_percent=trainable_fraction(model),
        embeddings=embeddings or {}, val_indices=split.val_indices,
    )  # fmt: skip


def finish_run(model, processor, state: TrainState, config, record: dict, eval_sets, output_dir: Path, split) -> FinetuneResult:
    """The end of a run: the best epoch's adapter when ``restore_best``, saved with peft's
    ``save_pretrained`` (``adapter/``), the stage and final embeddings, the completed ``config.json``."""
    if config.restore_best and state.best_state is not None:
        load_trainable_state(model, state.best_state)
    model.eval()
    model.save_pretrained(output_dir / "adapter")
    write_json(output_dir / "history.json", state.history)
    embeddings = saved_stages(output_dir, config, state.history)
    if eval_sets:
        embeddings["final"] = embed_stage(model, processor, eval_sets, config, output_dir, "final")
    record.update(epochs_run=len(state.history), best_epoch=state.best_epoch, stopped_early=state.stopped,
                  restored_best=config.restore_best)  # fmt: skip
    write_json(output_dir / "config.json", record)
    return run_result(model, state, output_dir, split, completed=True, embeddings=embeddings)
