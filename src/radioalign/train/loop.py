"""The training loop: the LoRA copy, the optimiser, one epoch, the validation loss, the epochs.

A private LoRA copy of the model, AdamW with its schedule and scaler, one epoch of
accumulated and clipped steps, the validation loss, and the epochs in turn with a
checkpoint after each."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..model import apply_lora, base_model
from .batches import Pairs
from .checkpoints import CHECKPOINT, TrainState, save_checkpoint, write_json
from .config import FinetuneConfig, autocast, steps_per_epoch
from .outputs import embed_stage


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


def make_scheduler(optimizer, config: FinetuneConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``"linear"``: the rate falls from ``lr`` to 0 over the ``total_steps`` planned steps; ``"constant"``."""
    if config.lr_schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def make_scaler(precision: str) -> torch.amp.GradScaler:
    """The fp16 gradient scaler (a pass-through unless ``precision == "fp16"``)."""
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16")


@dataclass
class Optimisation:
    """The optimiser side of a run, which a checkpoint saves and restores whole: AdamW over
    the adapters, its learning-rate schedule, the fp16 gradient scaler, and the generator
    that draws each epoch's batch order."""

    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    generator: torch.Generator

    def parts(self) -> tuple:
        """``(optimizer, scheduler, scaler, generator)``, in the order the checkpoint functions take them."""
        return self.optimizer, self.scheduler, self.scaler, self.generator


def make_optimisation(model, config: FinetuneConfig, n_train: int, precision: str) -> Optimisation:
    """AdamW, its schedule planned over ``config.epochs`` epochs of ``n_train`` pairs, the
    scaler for ``precision`` and the batch-order generator seeded with ``config.seed``."""
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch(n_train, config) * config.epochs)
    return Optimisation(optimizer, scheduler, make_scaler(precision), torch.Generator().manual_seed(config.seed))


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
            with autocast(pairs.device, amp_dtype):
                loss = pairs.loss(model, idx)
            scaler.scale(loss / len(window)).backward()
            losses.append(loss.item())
        _optimizer_step(params, optimizer, scheduler, scaler, config.max_grad_norm)
    return float(np.mean(losses))


def evaluate_loss(model, pairs: Pairs, batch_size: int, amp_dtype) -> float:
    """Mean sigmoid loss over ``pairs`` in their order, batches weighted by size (as the Trainer)."""
    model.eval()
    total = 0.0
    with torch.no_grad(), autocast(pairs.device, amp_dtype):
        for start in range(0, len(pairs), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(pairs)))
            total += pairs.loss(model, idx).item() * len(idx)
    return total / len(pairs)


def train_epochs(model, processor, train: Pairs, val: Pairs, opt: Optimisation, state: TrainState, config: FinetuneConfig,
                 amp_dtype, *, output_dir: Path, key: str, eval_sets: Mapping[str, Any],
                 max_epochs_this_call: int | None = None, progress: bool = True) -> bool:  # fmt: skip
    """The epochs after ``state.epoch`` in turn, until early stopping or ``config.epochs``:
    each one trained, its validation loss recorded in ``state``, the ``eval_epochs``
    embeddings written, then a checkpoint and ``history.json``. Returns False when it paused
    after ``max_epochs_this_call`` epochs with the run unfinished (call again to resume)."""
    first = state.epoch + 1
    bar = tqdm(range(first, config.epochs + 1), desc=f"{config.scope} LoRA", disable=not progress or state.stopped)
    for epoch in bar:
        if state.stopped:
            break
        train_loss = train_one_epoch(model, train, *opt.parts(), config, amp_dtype)
        entry = state.record(epoch, train_loss, evaluate_loss(model, val, config.batch_size, amp_dtype), model, config)
        bar.set_postfix(train=f"{entry['train_loss']:.4f}", val=f"{entry['val_loss']:.4f}")
        if epoch in config.eval_epochs:
            embed_stage(model, processor, eval_sets, config, output_dir, f"epoch{epoch}")
        save_checkpoint(output_dir / CHECKPOINT, key, state, model, *opt.parts())
        write_json(output_dir / "history.json", state.history)
        paused = max_epochs_this_call is not None and epoch - first + 1 >= max_epochs_this_call
        if paused and not state.stopped and epoch < config.epochs:
            bar.close()
            return False
    bar.close()
    return True
