"""One fine-tuning run, top to bottom: ``finetune``."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .batches import frozen_tower, run_pairs, split_pairs
from .checkpoints import CHECKPOINT, TrainState, load_checkpoint, run_key, write_json
from .config import FinetuneConfig, autocast_dtype, resolve_mixed_precision
from .loop import lora_model, make_optimisation, train_epochs
from .outputs import FinetuneResult, finish_run, run_record, run_result


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
    amp_dtype = autocast_dtype(precision)
    if any("lora_" in name for name, _ in model.named_parameters()):
        raise ValueError("the model already carries LoRA adapters; pass the plain SiglipModel from load_siglip")
    split = split_pairs(train_images, train_texts, val_images, val_texts, config)
    key = run_key(config, precision, model, split)

    model = lora_model(model, config, device)
    tower = frozen_tower(model, config.scope) if config.cache_frozen_tower else None
    train, val = run_pairs(model, processor, split, config, device, tower, amp_dtype)
    opt = make_optimisation(model, config, len(train), precision)

    output_dir = Path(output_dir)
    (output_dir / "embeddings").mkdir(parents=True, exist_ok=True)
    state = (load_checkpoint(output_dir / CHECKPOINT, key, model, *opt.parts()) if resume else None) or TrainState()
    record = run_record(config, precision, split, model, device, tower, stamp_profile, stamp_extra)
    record.update(train_attention_mask_used=train.mask is not None, val_attention_mask_used=val.mask is not None)
    write_json(output_dir / "config.json", record)

    eval_sets = dict(eval_sets or {})
    completed = train_epochs(model, processor, train, val, opt, state, config, amp_dtype, output_dir=output_dir, key=key,
                             eval_sets=eval_sets, max_epochs_this_call=max_epochs_this_call, progress=progress)  # fmt: skip
    if not completed:
        return run_result(model, state, output_dir, split, completed=False)
    return finish_run(model, processor, state, config, record, eval_sets, output_dir, split)
