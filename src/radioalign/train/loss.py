"""The sigmoid loss of matching (image, caption) pairs, and SigLIP's logits from pooled outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model import base_model


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
