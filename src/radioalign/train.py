"""LoRA fine-tuning of SigLIP with the sigmoid loss: a small, resumable training loop.

By default it follows the authors' protocol (REFERENCE §3), which ran the Hugging
Face ``Trainer`` with its defaults:

- loss: ``BCEWithLogits(logits_per_image, I)`` averaged over the N² image-text pairs
  of a batch (the SigLIP sigmoid loss divided by N), logit scale and bias frozen;
- AdamW (betas 0.9/0.999, eps 1e-8), lr 2.5e-5 decaying linearly to 0 over the
  planned optimiser steps (the Trainer's default schedule), weight decay 0.01;
- batches of 16, gradients accumulated over 2 batches, clipped to norm 4;
- fp16 autocast on CUDA (``mixed_precision="auto"``), float32 elsewhere;
- at most 50 epochs, early stopping when the validation loss has not improved for 5
  epochs, and the *last* model is kept (``restore_best=True`` keeps the best);
- validation: a random 15 % of the training items, seed 42 (``data.validation_split``).

After every epoch a checkpoint (adapter weights, optimiser, scheduler, scaler, RNG
states, history, early-stopping state) replaces the previous one, so an interrupted
run continues from its last finished epoch and ends with the same weights as an
uninterrupted one. At the end the adapter is saved with peft's ``save_pretrained``
(``adapter/``, loadable by plain ``PeftModel.from_pretrained``), beside
``history.json`` and ``config.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .embed import embed_images, embed_texts, model_fingerprint
from .model import DEFAULT_TARGETS, PREPROCESSING, SCOPES, apply_lora, base_model, text_max_length, tokenize, trainable_fraction
from .provenance import stamp

CHECKPOINT = "checkpoint.pt"


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


def batch_loss(model, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The sigmoid loss of one batch of matching (image, caption) pairs, no attention mask."""
    out = model(input_ids=input_ids, pixel_values=pixel_values)
    return sigmoid_loss(out.logits_per_image)


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    ``embeddings`` maps ``"epoch<k>"`` (the ``eval_epochs`` reached) and ``"final"``
    to ``{eval-set name: float32 array}``; ``completed`` is False when the call stopped
    at ``max_epochs_this_call`` (call again to resume).
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


def _check_pairs(images, texts, what: str) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{what} images must be a (N, H, W) uint8 array")
    if isinstance(texts, str) or len(images) != len(texts):
        raise ValueError(f"{what}: {len(images)} images but {len(texts)} captions")
    if len(images) == 0:
        raise ValueError(f"{what}: no items")


def _digest(images: np.ndarray, texts: Sequence[str]) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(json.dumps(list(texts)).encode())
    return h.hexdigest()


def _resolve_mixed_precision(mode: str, device: torch.device) -> str:
    if mode == "auto":
        return "fp16" if device.type == "cuda" else "no"  # the authors' Trainer: fp16 on GPU
    if mode not in ("fp16", "bf16", "no"):
        raise ValueError(f"mixed_precision must be 'auto', 'fp16', 'bf16' or 'no', got {mode!r}")
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs CUDA (a gradient scaler); use 'bf16' or 'no'")
    return mode


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


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _embed_sets(model, processor, eval_sets, *, preprocessing, dtype, lowercase, progress) -> dict[str, np.ndarray]:
    out = {}
    for name, value in eval_sets.items():
        if isinstance(value, np.ndarray):
            out[name] = embed_images(model, value, preprocessing=preprocessing, dtype=dtype, progress=progress)
        else:
            out[name] = embed_texts(model, processor, list(value), dtype=dtype, lowercase=lowercase, progress=progress)
    return out


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
    ``lowercase``: as ``model.tokenize``.
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"], d["eval_epochs"] = list(self.targets), list(self.eval_epochs)
        return d


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
    progress: bool = True,
    **settings: Any,
) -> FinetuneResult:
    """Fine-tune LoRA adapters with the sigmoid loss (see the module docstring).

    ``config`` holds every setting (:class:`FinetuneConfig`); keyword ``settings`` override
    its fields (``finetune(..., scope="text", lr=1e-4)`` builds one). ``stamp_profile`` is
    recorded in ``config.json``'s provenance stamp.
    """
    if config is None:
        config = FinetuneConfig(**settings)
    elif settings:
        config = replace(config, **settings)
    return _finetune_legacy(
        model, processor, train_images, train_texts, val_images, val_texts, output_dir=output_dir,
        eval_sets=eval_sets, device=device, resume=resume, max_epochs_this_call=max_epochs_this_call,
        profile=stamp_profile, progress=progress, **config.to_dict(),
    )  # fmt: skip


def _finetune_legacy(
    model,
    processor,
    train_images: np.ndarray,
    train_texts: Sequence[str],
    val_images: np.ndarray | None = None,
    val_texts: Sequence[str] | None = None,
    *,
    scope: str,
    output_dir: str | os.PathLike,
    r: int = 4,
    alpha: float = 16,
    dropout: float = 0.1,
    targets: Sequence[str] = DEFAULT_TARGETS,
    lr: float = 2.5e-5,
    lr_schedule: str = "linear",
    weight_decay: float = 0.01,
    batch_size: int = 16,
    grad_accum: int = 2,
    max_grad_norm: float = 4.0,
    epochs: int = 50,
    patience: int = 5,
    restore_best: bool = False,
    seed: int = 42,
    val_fraction: float = 0.15,
    eval_sets: Mapping[str, Any] | None = None,
    eval_epochs: Sequence[int] = (),
    preprocessing: str = "paper",
    device: str | torch.device | None = None,
    mixed_precision: str = "auto",
    embed_dtype: str = "auto",
    lowercase: bool | None = None,
    resume: bool = True,
    max_epochs_this_call: int | None = None,
    profile=None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune LoRA adapters on ``scope`` with the sigmoid loss; see the module docstring.

    Parameters
    ----------
    model, processor
        A plain ``SiglipModel`` and its processor (``load_siglip``). The model is copied,
        so the caller's model stays frozen and can serve several runs.
    train_images, train_texts
        Matching pairs: ``(N, H, W)`` uint8 images and N captions.
    val_images, val_texts
        A validation set; ``None`` holds out ``data.validation_split(N, val_fraction, seed)``
        of the training pairs (the authors' protocol).
    scope, r, alpha, dropout, targets
        LoRA placement and shape (``radioalign.model.apply_lora``).
    lr, lr_schedule, weight_decay, batch_size, grad_accum, max_grad_norm, epochs, patience
        Optimisation (AdamW); ``lr_schedule`` is ``"linear"`` (decay to 0, the Trainer's
        default) or ``"constant"``. ``patience=0`` disables early stopping.
    restore_best
        Keep the adapter of the epoch with the lowest validation loss instead of the last.
    eval_sets
        ``{name: images array | list of texts}`` embedded at each epoch in ``eval_epochs``
        that is reached and at the end (``result.embeddings``; also saved under
        ``output_dir/embeddings/``).
    mixed_precision
        ``"auto"`` (fp16 on CUDA, none elsewhere), ``"fp16"``, ``"bf16"`` or ``"no"``.
    embed_dtype
        dtype of the evaluation embeddings (``embed.resolve_dtype``).
    resume
        Continue from ``output_dir/checkpoint.pt`` when it belongs to the same run
        (same data, model and settings); otherwise start afresh.
    max_epochs_this_call
        Stop after this many epochs in this call (``result.completed`` is False).
    """
    from .data import validation_split

    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    if any("lora_" in name for name, _ in model.named_parameters()):
        raise ValueError("the model already carries LoRA adapters; pass the plain SiglipModel from load_siglip")
    if batch_size < 1 or grad_accum < 1 or epochs < 1:
        raise ValueError("batch_size, grad_accum and epochs must be >= 1")
    if lr_schedule not in ("linear", "constant"):
        raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {lr_schedule!r}")
    _check_pairs(train_images, train_texts, "training")
    train_texts = list(train_texts)
    val_source = "given"
    if (val_images is None) != (val_texts is None):
        raise ValueError("give both val_images and val_texts, or neither")
    if val_images is None:
        train_idx, val_idx = validation_split(len(train_images), val_fraction, seed)
        val_images, val_texts = train_images[val_idx], [train_texts[i] for i in val_idx]
        train_images, train_texts = train_images[train_idx], [train_texts[i] for i in train_idx]
        val_source = f"data.validation_split(n, {val_fraction}, seed={seed})"
    _check_pairs(val_images, val_texts, "validation")
    val_texts = list(val_texts)
    eval_sets = dict(eval_sets or {})
    eval_epochs = sorted({int(e) for e in eval_epochs})

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "embeddings").mkdir(exist_ok=True)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    precision = _resolve_mixed_precision(mixed_precision, device)
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

    settings = dict(
        scope=scope, r=r, alpha=alpha, dropout=dropout, targets=list(targets), lr=lr, lr_schedule=lr_schedule,
        weight_decay=weight_decay, batch_size=batch_size, grad_accum=grad_accum, max_grad_norm=max_grad_norm,
        epochs=epochs, patience=patience, restore_best=restore_best, seed=seed, preprocessing=preprocessing,
        mixed_precision=precision, lowercase=lowercase, val_source=val_source,
    )  # fmt: skip
    run_key = hashlib.sha256(
        json.dumps(
            {
                **settings,
                "base": model_fingerprint(model),
                "train": _digest(train_images, train_texts),
                "val": _digest(val_images, val_texts),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()

    # A private copy, so the caller's frozen model can serve the next run.
    model = copy.deepcopy(base_model(model)).to(device)
    torch.manual_seed(seed)  # LoRA's A matrices start random
    model = apply_lora(model, scope=scope, r=r, alpha=alpha, dropout=dropout, targets=targets)
    trainable = [p for p in model.parameters() if p.requires_grad]
    percent = trainable_fraction(model)

    length = text_max_length(base_model(model))
    train_ids = tokenize(processor, train_texts, length, lowercase=lowercase)
    val_ids = tokenize(processor, val_texts, length, lowercase=lowercase)
    size = int(base_model(model).config.vision_config.image_size)
    from .model import preprocess

    def pixels(images: np.ndarray) -> torch.Tensor:
        return preprocess(images, mode=preprocessing, size=size).to(device, non_blocking=True)

    n_batches = math.ceil(len(train_images) / batch_size)
    steps_per_epoch = math.ceil(n_batches / grad_accum)
    total_steps = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    if lr_schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    generator = torch.Generator().manual_seed(seed)

    history: list[dict] = []
    best_val, best_epoch, bad_epochs, best_state, stopped = math.inf, None, 0, None, False
    start_epoch = 1
    ckpt_path = output_dir / CHECKPOINT
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("run_key") == run_key:
            _load_trainable_state(model, state["trainable"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"], generator)
            history = list(state["history"])
            best_val, best_epoch, bad_epochs = state["best_val"], state["best_epoch"], state["bad_epochs"]
            best_state, stopped = state["best_state"], state["stopped"]
            start_epoch = state["epoch"] + 1
        else:
            warnings.warn(f"{ckpt_path} belongs to a different run (data, model or settings changed): starting afresh")

    config = dict(
        settings,
        n_train=len(train_images), n_val=len(val_images), steps_per_epoch=steps_per_epoch,
        trainable_percent=percent, model=getattr(base_model(model).config, "_name_or_path", ""),
        device=str(device), stamp=stamp(profile),
    )  # fmt: skip
    _write_json(output_dir / "config.json", config)

    def val_loss() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            for start in range(0, len(val_images), batch_size):
                stop = start + batch_size
                loss = batch_loss(model, pixels(val_images[start:stop]), val_ids[start:stop].to(device))
                total += loss.item() * len(val_ids[start:stop])  # the Trainer weights batches by size
        return total / len(val_images)

    def embeddings_at(tag: str) -> dict[str, np.ndarray]:
        arrays = _embed_sets(
            model, processor, eval_sets, preprocessing=preprocessing, dtype=embed_dtype, lowercase=lowercase, progress=False
        )
        if arrays:
            np.savez(output_dir / "embeddings" / f"{tag}.npz", **arrays)
        return arrays

    epochs_this_call = 0
    bar = tqdm(range(start_epoch, epochs + 1), desc=f"{scope} LoRA", disable=not progress or stopped)
    for epoch in bar:
        if stopped:
            break
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        losses = []
        for first in range(0, len(batches), grad_accum):
            window = batches[first : first + grad_accum]
            for idx in window:
                idx_np = idx.numpy()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = batch_loss(model, pixels(train_images[idx_np]), train_ids[idx].to(device))
                scaler.scale(loss / len(window)).backward()
                losses.append(loss.item())
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss()}
        history.append(record)
        bar.set_postfix(train=f"{record['train_loss']:.4f}", val=f"{record['val_loss']:.4f}")

        if record["val_loss"] < best_val:
            best_val, best_epoch, bad_epochs = record["val_loss"], epoch, 0
            best_state = _trainable_state(model) if restore_best else None
        else:
            bad_epochs += 1
        stopped = patience > 0 and bad_epochs >= patience
        if epoch in eval_epochs:
            embeddings_at(f"epoch{epoch}")
        _save_atomic(
            {
                "run_key": run_key, "epoch": epoch, "trainable": _trainable_state(model),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": _rng_state(generator), "history": history, "best_val": best_val, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "best_state": best_state, "stopped": stopped,
            },
            ckpt_path,
        )  # fmt: skip
        _write_json(output_dir / "history.json", history)
        epochs_this_call += 1
        if max_epochs_this_call is not None and epochs_this_call >= max_epochs_this_call and not stopped and epoch < epochs:
            bar.close()
            return FinetuneResult(
                model=model, history=history, output_dir=output_dir, completed=False, epochs_run=epoch,
                best_epoch=best_epoch, stopped_early=False, trainable_percent=percent,
            )  # fmt: skip
    bar.close()

    if restore_best and best_state is not None:
        _load_trainable_state(model, best_state)
    model.eval()
    model.save_pretrained(output_dir / "adapter")
    _write_json(output_dir / "history.json", history)
    embeddings = {}
    for epoch in eval_epochs:
        path = output_dir / "embeddings" / f"epoch{epoch}.npz"
        if path.is_file() and any(h["epoch"] == epoch for h in history):
            with np.load(path) as data:
                embeddings[f"epoch{epoch}"] = {k: data[k] for k in data.files}
    if eval_sets:
        embeddings["final"] = embeddings_at("final")
    config.update(epochs_run=len(history), best_epoch=best_epoch, stopped_early=stopped, restored_best=restore_best)
    _write_json(output_dir / "config.json", config)
    return FinetuneResult(
        model=model, history=history, output_dir=output_dir, completed=True, epochs_run=len(history),
        best_epoch=best_epoch, stopped_early=stopped, trainable_percent=percent, embeddings=embeddings,
    )  # fmt: skip
