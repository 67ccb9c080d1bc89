"""Batches and collation: the validation split, the pairs as the model takes them, the frozen tower.

The pairs hold token ids and attention masks and make pixels on demand; in a single-tower
run the frozen tower's outputs are computed once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from ..embed import evaluating
from ..model import base_model, image_features, preprocess, text_features, text_max_length, text_processing, tokenize
from .config import FinetuneConfig, autocast
from .loss import batch_loss, siglip_logits, sigmoid_loss


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
    from ..data import validation_split

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
    with evaluating(model), torch.no_grad(), autocast(pairs.device, amp_dtype):
        for start in range(0, len(pairs), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(pairs)))
            if tower == "vision":
                chunks.append(image_features(model, pairs.pixels(idx)))
            else:
                chunks.append(text_features(model, *pairs.text(idx)))
    return replace(pairs, **{"image_embeds" if tower == "vision" else "text_embeds": torch.cat(chunks)})
