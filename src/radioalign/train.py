"""LoRA fine-tuning of SigLIP with the sigmoid loss: a small, resumable training loop.

By default it follows the authors' protocol (REFERENCE §3), which ran the Hugging
Face ``Trainer`` with its defaults:

- loss: ``BCEWithLogits(logits_per_image, I)`` averaged over the N² image-text pairs
  of a batch (the SigLIP sigmoid loss divided by N), logit scale and bias frozen;
- AdamW (betas 0.9/0.999, eps 1e-8), lr 2.5e-5 decaying linearly to 0 over the
  planned optimiser steps (the Trainer's default schedule), weight decay 0.01;
- batches of 16, gradients accumulated over 2 batches, clipped to norm 4;
- fp16 autocast with a gradient scaler on CUDA (``mixed_precision="auto"``), float32 elsewhere;
- at most 50 epochs, early stopping when the validation loss has not improved for 5
  epochs, and the *last* model is kept (``restore_best=True`` keeps the best);
- validation: a random 15 % of the training items, seed 42, in the order of the
  authors' ``random_split`` subsets (``data.validation_split(..., sort=False)``); its loss
  from token ids without the attention mask, as their ``prediction_step`` computed it
  (training passes the mask the processor returns, as their ``model(**inputs)`` did).

In a single-tower run (``scope`` ``"vision"`` or ``"text"``) the other tower carries no
adapter and no dropout, so its outputs are the same at every step: they are computed
once per call (``cache_frozen_tower``) and the logits are formed from them exactly as
``SiglipModel.forward`` does. Losses and weights are those of the full forward, bit for
bit when every batch is full (a short last batch can round differently in float32, as
the matrix-multiply kernels depend on the batch size).

After every epoch a checkpoint (adapter weights, optimiser, scheduler, scaler, RNG
states, history, early-stopping state) replaces the previous one, so an interrupted
run continues from its last finished epoch and ends with the same weights as an
uninterrupted one; a checkpoint of a different run (data, model or settings) is
ignored. At the end the adapter is saved with peft's ``save_pretrained`` (``adapter/``,
loadable by plain ``PeftModel.from_pretrained``), beside ``history.json`` and
``config.json``.

Reading order: :func:`finetune` at the bottom calls the pieces above it in turn.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .embed import embed_images, embed_texts, evaluating, model_fingerprint
from .model import (
    DEFAULT_TARGETS, PREPROCESSING, SCOPES, apply_lora, base_model, image_features, preprocess, text_features,
    PADDING_SIDES, text_max_length, text_processing, tokenize, trainable_fraction,
)  # fmt: skip
from .provenance import stamp

CHECKPOINT = "checkpoint.pt"


# ---------------------------------------------------------------------------
# the loss


def sigmoid_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of every image-text logit against the identity.

    For an N x N logit matrix ``z`` (``z_ij`` = image i vs text j, already scaled and
    shifted by the frozen logit scale and bias):
    ``L = -(1/N²) Σ_ij [ δ_ij log σ(z_ij) + (1 - δ_ij) log(1 - σ(z_ij)) ]``.
    """
    if logits_per_image.ndim != 2 or logits_per_image.shape[0] != logits_per_image.shape[1]:
        raise ValueError(f"expected a square logit matrix, got shape {tuple(logits_per_image.shape)}")
    target = torch.eye(logits_per_image.shape[0], device=logits_per_image.device, dtype=torch.float32)
    return F.binary_cross_entropy_with_logits(logits_per_image.float(), target)


def batch_loss(model, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The sigmoid loss of one batch of matching (image, caption) pairs (attention mask optional)."""
    out = model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)
    return sigmoid_loss(out.logits_per_image)


def siglip_logits(model, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """``logits_per_image`` from the towers' pooled outputs, as ``SiglipModel.forward`` forms them:
    both L2-normalised, ``z = (t̂ · îᵀ) · exp(logit_scale) + logit_bias`` per text, transposed."""
    siglip = base_model(model)
    image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
    logits_per_text = torch.matmul(text_embeds, image_embeds.t().to(text_embeds.device))
    scale, bias = siglip.logit_scale.to(text_embeds.device), siglip.logit_bias.to(text_embeds.device)
    return (logits_per_text * scale.exp() + bias).t()


# ---------------------------------------------------------------------------
# settings and result


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
        from .embed import resolve_dtype

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


def resolve_mixed_precision(mode: str, device: torch.device) -> str:
    """``"fp16"``, ``"bf16"`` or ``"no"`` for ``mode`` on ``device`` (``"auto"``: fp16 on CUDA)."""
    if mode == "auto":
        return "fp16" if device.type == "cuda" else "no"  # the authors' Trainer: fp16 on GPU
    if mode not in ("fp16", "bf16", "no"):
        raise ValueError(f"mixed_precision must be 'auto', 'fp16', 'bf16' or 'no', got {mode!r}")
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs CUDA (a gradient scaler); use 'bf16' or 'no'")
    return mode


def _amp_dtype(precision: str) -> torch.dtype | None:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


# ---------------------------------------------------------------------------
# data: the validation split, token ids, the frozen tower's outputs


def _check_pairs(images, texts, what: str) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{what} images must be a (N, H, W) uint8 array")
    if isinstance(texts, str) or len(images) != len(texts):
        raise ValueError(f"{what}: {len(images)} images but {len(texts)} captions")
    if len(images) == 0:
        raise ValueError(f"{what}: no items")


@dataclass
class Split:
    """The training and validation pairs of a run. ``val_indices``: positions of the
    validation pairs among the given training pairs (``None`` when they were given)."""

    train_images: np.ndarray
    train_texts: list[str]
    val_images: np.ndarray
    val_texts: list[str]
    val_indices: np.ndarray | None
    val_source: str


def split_pairs(images, texts, val_images, val_texts, config: FinetuneConfig) -> Split:
    """The given validation set, or the authors' hold-out of ``config.val_fraction`` of the
    training pairs: ``random_split`` with ``seed``, both subsets kept in ``random_split``'s
    order as the authors' ``Subset`` objects are (the validation batches, and hence their
    negatives and loss, depend on that order; the training order is redrawn every epoch)."""
    from .data import validation_split

    _check_pairs(images, texts, "training")
    texts = list(texts)
    if (val_images is None) != (val_texts is None):
        raise ValueError("give both val_images and val_texts, or neither")
    if val_images is not None:
        _check_pairs(val_images, val_texts, "validation")
        return Split(images, texts, val_images, list(val_texts), None, "given")
    train_idx, val_idx = validation_split(len(images), config.val_fraction, config.seed, sort=False)
    source = f"data.validation_split(n, {config.val_fraction}, seed={config.seed}, sort=False)"
    return Split(
        images[train_idx], [texts[i] for i in train_idx], images[val_idx], [texts[i] for i in val_idx], val_idx, source
    )


@dataclass
class Pairs:
    """Matching (image, caption) pairs as the model takes them: ``images`` (N, H, W) uint8,
    ``ids`` (N, L) token ids, and, in a single-tower run, the frozen tower's pooled outputs
    (``image_embeds`` or ``text_embeds``, (N, D) on ``device``) computed once."""

    images: np.ndarray
    ids: torch.Tensor
    preprocessing: str
    size: int
    device: torch.device
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # the text attention mask, when the run passes one

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self, idx: torch.Tensor) -> torch.Tensor:
        return preprocess(self.images[idx.numpy()], mode=self.preprocessing, size=self.size).to(self.device, non_blocking=True)

    def text(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Ids and (when the run passes one) attention mask of the pairs at ``idx``, on the device."""
        mask = self.mask[idx].to(self.device) if self.mask is not None else None
        return self.ids[idx].to(self.device), mask

    def loss(self, model, idx: torch.Tensor) -> torch.Tensor:
        """The sigmoid loss of the pairs at ``idx`` (a CPU index tensor), from cached features where present."""
        if self.image_embeds is not None:
            text = text_features(model, *self.text(idx))
            return sigmoid_loss(siglip_logits(model, self.image_embeds[idx.to(self.device)], text))
        if self.text_embeds is not None:
            image = image_features(model, self.pixels(idx))
            return sigmoid_loss(siglip_logits(model, image, self.text_embeds[idx.to(self.device)]))
        return batch_loss(model, self.pixels(idx), *self.text(idx))


def train_attention_mask(processor, config: FinetuneConfig) -> bool:
    """Whether training passes the text attention mask: ``config.train_attention_mask``, or
    when ``None`` whether the processor returns one (the authors' ``model(**inputs)``)."""
    if config.train_attention_mask is not None:
        return config.train_attention_mask
    return text_processing(processor)["returns_attention_mask"]


def make_pairs(model, processor, images: np.ndarray, texts: Sequence[str], config: FinetuneConfig, device,
               *, with_mask: bool) -> Pairs:  # fmt: skip
    """Tokenised pairs (padded to the text tower's length on ``config.padding_side``, with the
    attention mask when ``with_mask``) for ``model``."""
    siglip = base_model(model)
    ids, mask = tokenize(processor, list(texts), text_max_length(siglip), lowercase=config.lowercase,
                         padding_side=config.padding_side, return_attention_mask=True)  # fmt: skip
    mask = mask if with_mask else None
    size = int(siglip.config.vision_config.image_size)
    return Pairs(images, ids, config.preprocessing, size, torch.device(device), mask=mask)


def run_pairs(model, processor, split: Split, config: FinetuneConfig, device, tower, amp_dtype) -> tuple[Pairs, Pairs]:
    """The training and validation :class:`Pairs` of a run, each with the frozen tower's
    outputs when ``tower``. Training passes the mask when :func:`train_attention_mask` (the
    authors' ``model(**inputs)``); validation only with ``config.eval_attention_mask``, ids
    alone by default, as the authors' ``prediction_step`` computed the loss early stopping watches."""
    train = make_pairs(model, processor, split.train_images, split.train_texts, config, device,
                       with_mask=train_attention_mask(processor, config))  # fmt: skip
    val = make_pairs(model, processor, split.val_images, split.val_texts, config, device, with_mask=config.eval_attention_mask)
    return (with_frozen_features(model, train, tower, config.batch_size, amp_dtype),
            with_frozen_features(model, val, tower, config.batch_size, amp_dtype))  # fmt: skip


def frozen_tower(model, scope: str) -> str | None:
    """The tower whose outputs stay fixed through a ``scope`` run: ``"vision"`` for a text-only
    run, ``"text"`` for a vision-only one; ``None`` for ``"full"``, or when that tower has
    attention dropout (then its training outputs vary from step to step)."""
    tower = {"text": "vision", "vision": "text"}.get(scope)
    if tower is None:
        return None
    tower_config = getattr(base_model(model).config, f"{tower}_config")
    return tower if float(getattr(tower_config, "attention_dropout", 0.0)) == 0.0 else None


def with_frozen_features(model, pairs: Pairs, tower: str | None, batch_size: int, amp_dtype) -> Pairs:
    """``pairs`` with the ``tower``'s pooled outputs computed once (eval mode, no gradients,
    under the training autocast so they equal what each step's forward would give)."""
    if tower is None:
        return pairs
    chunks = []
    with evaluating(model), torch.no_grad(), _autocast(pairs.device, amp_dtype):
        for start in range(0, len(pairs), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(pairs)))
            if tower == "vision":
                chunks.append(image_features(model, pairs.pixels(idx)))
            else:
                chunks.append(text_features(model, *pairs.text(idx)))
    return replace(pairs, **{"image_embeds" if tower == "vision" else "text_embeds": torch.cat(chunks)})


# ---------------------------------------------------------------------------
# model, optimiser and scheduler


def lora_model(model, config: FinetuneConfig, device):
    """A private copy of the plain ``SiglipModel`` on ``device`` with fresh LoRA adapters
    (the caller's frozen model can serve the next run)."""
    model = copy.deepcopy(base_model(model)).to(device)
    torch.manual_seed(config.seed)  # LoRA's A matrices start random
    return apply_lora(model, scope=config.scope, r=config.r, alpha=config.alpha, dropout=config.dropout, targets=config.targets)


def make_optimizer(model, config: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW over the trainable (LoRA) parameters, betas 0.9/0.999, eps 1e-8."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)


def steps_per_epoch(n_train: int, config: FinetuneConfig) -> int:
    """Optimiser steps in one epoch: one per ``grad_accum`` batches, the last window possibly shorter."""
    return math.ceil(math.ceil(n_train / config.batch_size) / config.grad_accum)


def make_scheduler(optimizer, config: FinetuneConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``"linear"``: the rate falls from ``lr`` to 0 over the ``total_steps`` planned steps; ``"constant"``."""
    if config.lr_schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def make_scaler(precision: str) -> torch.amp.GradScaler:
    """The fp16 gradient scaler (a pass-through unless ``precision == "fp16"``)."""
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16")


# ---------------------------------------------------------------------------
# one epoch


def _optimizer_step(params, optimizer, scheduler, scaler, max_grad_norm: float) -> None:
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def train_one_epoch(model, pairs: Pairs, optimizer, scheduler, scaler, generator, config: FinetuneConfig, amp_dtype) -> float:
    """One pass over ``pairs`` in a fresh random order drawn from ``generator``: batches of
    ``batch_size``, the gradients of ``grad_accum`` consecutive batches averaged into one
    clipped AdamW step. Returns the mean batch loss."""
    model.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    order = torch.randperm(len(pairs), generator=generator)
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    losses = []
    for first in range(0, len(batches), config.grad_accum):
        window = batches[first : first + config.grad_accum]
        for idx in window:
            with _autocast(pairs.device, amp_dtype):
                loss = pairs.loss(model, idx)
            scaler.scale(loss / len(window)).backward()
            losses.append(loss.item())
        _optimizer_step(params, optimizer, scheduler, scaler, config.max_grad_norm)
    return float(np.mean(losses))


def evaluate_loss(model, pairs: Pairs, batch_size: int, amp_dtype) -> float:
    """Mean sigmoid loss over ``pairs`` in their order, batches weighted by size (as the Trainer)."""
    model.eval()
    total = 0.0
    with torch.no_grad(), _autocast(pairs.device, amp_dtype):
        for start in range(0, len(pairs), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(pairs)))
            total += pairs.loss(model, idx).item() * len(idx)
    return total / len(pairs)


# ---------------------------------------------------------------------------
# progress, early stopping and checkpoints


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable_state(model, state: Mapping[str, torch.Tensor]) -> None:
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
            self.best_state = _trainable_state(model) if config.restore_best else None
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


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def save_checkpoint(path: Path, run_key: str, state: TrainState, model, optimizer, scheduler, scaler, generator) -> None:
    """Replace ``path`` atomically with everything needed to continue exactly after ``state.epoch``."""
    _save_atomic(
        {
            "run_key": run_key, "epoch": state.epoch, "trainable": _trainable_state(model),
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
    _load_trainable_state(model, saved["trainable"])
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


# ---------------------------------------------------------------------------
# evaluation embeddings and the run's files


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


def _result(model, state: TrainState, output_dir: Path, split: Split, completed: bool, embeddings=None) -> FinetuneResult:
    return FinetuneResult(
        model=model, history=state.history, output_dir=output_dir, completed=completed, epochs_run=state.epoch,
        best_epoch=state.best_epoch, stopped_early=state.stopped and completed, trainable_percent=trainable_fraction(model),
        embeddings=embeddings or {}, val_indices=split.val_indices,
    )  # fmt: skip


def finish_run(model, processor, state: TrainState, config, record: dict, eval_sets, output_dir: Path, split) -> FinetuneResult:
    """The end of a run: the best epoch's adapter when ``restore_best``, saved with peft's
    ``save_pretrained`` (``adapter/``), the stage and final embeddings, the completed ``config.json``."""
    if config.restore_best and state.best_state is not None:
        _load_trainable_state(model, state.best_state)
    model.eval()
    model.save_pretrained(output_dir / "adapter")
    _write_json(output_dir / "history.json", state.history)
    embeddings = saved_stages(output_dir, config, state.history)
    if eval_sets:
        embeddings["final"] = embed_stage(model, processor, eval_sets, config, output_dir, "final")
    record.update(epochs_run=len(state.history), best_epoch=state.best_epoch, stopped_early=state.stopped,
                  restored_best=config.restore_best)  # fmt: skip
    _write_json(output_dir / "config.json", record)
    return _result(model, state, output_dir, split, completed=True, embeddings=embeddings)


# ---------------------------------------------------------------------------
# the run


def finetune(
    model,
    processor,
    train_images: np.ndarray,
    train_texts: Sequence[str],
    val_images: np.ndarray | None = None,
    val_texts: Sequence[str] | None = None,
    *,
    output_dir: str | os.PathLike,
    config: FinetuneConfig | None = None,
    eval_sets: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    max_epochs_this_call: int | None = None,
    stamp_profile=None,
    stamp_extra: Mapping[str, Any] | None = None,
    progress: bool = True,
    **settings: Any,
) -> FinetuneResult:
    """Fine-tune LoRA adapters with the sigmoid loss (see the module docstring).

    ``model``/``processor``: a plain ``SiglipModel`` (copied, so it stays frozen) and its
    processor. ``train_images``/``train_texts``: matching ``(N, H, W)`` uint8 images and N
    captions; ``val_images``/``val_texts``: a validation set, or ``None`` for the authors'
    hold-out (:func:`split_pairs`). ``config`` holds every setting (:class:`FinetuneConfig`);
    keyword ``settings`` override its fields (``finetune(..., scope="text", lr=1e-4)`` builds
    one). ``eval_sets``: ``{name: images array | captions}`` embedded after each of
    ``eval_epochs`` and at the end (``result.embeddings``, ``output_dir/embeddings/``).
    ``resume``: continue from ``output_dir/checkpoint.pt`` when it is this run's.
    ``max_epochs_this_call``: stop after that many epochs (``result.completed`` is False).
    ``stamp_profile`` (and the fields of ``stamp_extra``) are recorded in ``config.json``'s
    provenance stamp. Every setting and input is checked before anything is written.
    """
    config = replace(config, **settings) if config is not None else FinetuneConfig(**settings)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    precision = resolve_mixed_precision(config.mixed_precision, device)
    amp_dtype = _amp_dtype(precision)
    if any("lora_" in name for name, _ in model.named_parameters()):
        raise ValueError("the model already carries LoRA adapters; pass the plain SiglipModel from load_siglip")
    split = split_pairs(train_images, train_texts, val_images, val_texts, config)
    key = run_key(config, precision, model, split)

    model = lora_model(model, config, device)
    tower = frozen_tower(model, config.scope) if config.cache_frozen_tower else None
    train, val = run_pairs(model, processor, split, config, device, tower, amp_dtype)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch(len(train), config) * config.epochs)
    scaler = make_scaler(precision)
    generator = torch.Generator().manual_seed(config.seed)

    output_dir = Path(output_dir)
    (output_dir / "embeddings").mkdir(parents=True, exist_ok=True)
    ckpt = output_dir / CHECKPOINT
    state = (load_checkpoint(ckpt, key, model, optimizer, scheduler, scaler, generator) if resume else None) or TrainState()
    record = run_record(config, precision, split, model, device, tower, stamp_profile, stamp_extra)
    record["train_attention_mask_used"] = train.mask is not None
    record["val_attention_mask_used"] = val.mask is not None
    _write_json(output_dir / "config.json", record)

    eval_sets = dict(eval_sets or {})
    first = state.epoch + 1
    bar = tqdm(range(first, config.epochs + 1), desc=f"{config.scope} LoRA", disable=not progress or state.stopped)
    for epoch in bar:
        if state.stopped:
            break
        train_loss = train_one_epoch(model, train, optimizer, scheduler, scaler, generator, config, amp_dtype)
        entry = state.record(epoch, train_loss, evaluate_loss(model, val, config.batch_size, amp_dtype), model, config)
        bar.set_postfix(train=f"{entry['train_loss']:.4f}", val=f"{entry['val_loss']:.4f}")
        if epoch in config.eval_epochs:
            embed_stage(model, processor, eval_sets, config, output_dir, f"epoch{epoch}")
        save_checkpoint(ckpt, key, state, model, optimizer, scheduler, scaler, generator)
        _write_json(output_dir / "history.json", state.history)
        paused = max_epochs_this_call is not None and epoch - first + 1 >= max_epochs_this_call
        if paused and not state.stopped and epoch < config.epochs:
            bar.close()
            return _result(model, state, output_dir, split, completed=False)
    bar.close()

    return finish_run(model, processor, state, config, record, eval_sets, output_dir, split)
