"""The settings of one fine-tuning run (``FinetuneConfig``) and what they resolve to on a device.

On a device they resolve to a mixed precision and its autocast; with a training-set size,
to the optimiser steps per epoch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..model import DEFAULT_TARGETS, PADDING_SIDES, PREPROCESSING, SCOPES


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of one fine-tuning run, as a plain block of values (nanoGPT style).

    ``scope``, ``r``, ``alpha``, ``dropout``, ``targets``: LoRA placement and shape
    (``model.apply_lora``). ``lr``, ``lr_schedule`` (``"linear"`` decay to 0, the Trainer's
    default, or ``"constant"``), ``weight_decay``, ``batch_size``, ``grad_accum``,
    ``max_grad_norm``, ``epochs``, ``patience`` (0 disables early stopping): AdamW.
    ``restore_best`` keeps the adapter of the best validation epoch instead of the last.
    ``seed`` drives LoRA init, the batch order and the validation split (``val_fraction``).
    ``eval_epochs``: epochs after which ``eval_sets`` are embedded. ``preprocessing``:
    ``model.PREPROCESSING``. ``mixed_precision``: ``"auto"`` (fp16 on CUDA, none elsewhere),
    ``"fp16"``, ``"bf16"`` or ``"no"``. ``embed_dtype``: dtype of the evaluation embeddings.
    ``lowercase``: as ``model.tokenize``. ``cache_frozen_tower``: in a single-tower run,
    compute the frozen tower's outputs once per call instead of at every step (same results).
    Text inputs, each the authors' choice by default: ``padding_side`` (``"right"``, SigLIP's
    pre-training layout); ``train_attention_mask`` (``None``: pass the mask exactly when
    the processor returns one, as their training passed ``model(**processor(...))``);
    ``eval_attention_mask`` (``False``: ids only, as their evaluation did): both the
    validation loss and the evaluation embeddings; the authors' ``prediction_step`` passed
    only ``pixel_values`` and ``input_ids``, so their validation loss, which early stopping
    watches, saw no mask even though their training did.
    ``fixed_epochs``: train exactly this many epochs (early stopping off; the learning-rate
    schedule is still planned over ``epochs``), so a control run can match another run's length.
    """

    scope: str
    r: int = 4
    alpha: float = 16
    dropout: float = 0.1
    targets: tuple[str, ...] = DEFAULT_TARGETS
    lr: float = 2.5e-5
    lr_schedule: str = "linear"
    weight_decay: float = 0.01
    batch_size: int = 16
    grad_accum: int = 2
    max_grad_norm: float = 4.0
    epochs: int = 50
    patience: int = 5
    restore_best: bool = False
    seed: int = 42
    val_fraction: float = 0.15
    eval_epochs: tuple[int, ...] = ()
    preprocessing: str = "paper"
    mixed_precision: str = "auto"
    embed_dtype: str = "float32"  # the authors computed features in float32
    lowercase: bool | None = None
    cache_frozen_tower: bool = True
    padding_side: str = "right"
    train_attention_mask: bool | None = None
    eval_attention_mask: bool = False
    fixed_epochs: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "eval_epochs", tuple(sorted({int(e) for e in self.eval_epochs})))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` on any setting that would fail later (before anything is written)."""
        from ..embed import resolve_dtype

        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; choose one of {SCOPES}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1 or self.r < 1:
            raise ValueError("batch_size, grad_accum, epochs and r must be >= 1")
        if self.fixed_epochs is not None and not 1 <= self.fixed_epochs <= self.epochs:
            raise ValueError(f"fixed_epochs must be between 1 and epochs={self.epochs}, not {self.fixed_epochs!r}")
        if self.patience < 0 or self.lr < 0 or self.weight_decay < 0 or not self.max_grad_norm > 0:
            raise ValueError("patience, lr and weight_decay must be >= 0, max_grad_norm > 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), not {self.val_fraction!r}")
        if self.lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        if self.preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {self.preprocessing!r}; choose one of {PREPROCESSING}")
        if self.mixed_precision not in ("auto", "fp16", "bf16", "no"):
            raise ValueError(f"mixed_precision must be 'auto', 'fp16', 'bf16' or 'no', got {self.mixed_precision!r}")
        if self.embed_dtype != "auto":
            resolve_dtype(self.embed_dtype)
        if self.padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side must be one of {PADDING_SIDES}, not {self.padding_side!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"], d["eval_epochs"] = list(self.targets), list(self.eval_epochs)
        return d


def resolve_mixed_precision(mode: str, device: torch.device) -> str:
    """``"fp16"``, ``"bf16"`` or ``"no"`` for ``mode`` on ``device`` (``"auto"``: fp16 on CUDA)."""
    if mode == "auto":
        return "fp16" if device.type == "cuda" else "no"  # the authors' Trainer: fp16 on GPU
    if mode not in ("fp16", "bf16", "no"):
        raise ValueError(f"mixed_precision must be 'auto', 'fp16', 'bf16' or 'no', got {mode!r}")
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs CUDA (a gradient scaler); use 'bf16' or 'no'")
    return mode


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def steps_per_epoch(n_train: int, config: FinetuneConfig) -> int:
    """Optimiser steps in one epoch: one per ``grad_accum`` batches, the last window possibly shorter."""
    return math.ceil(math.ceil(n_train / config.batch_size) / config.grad_accum)
