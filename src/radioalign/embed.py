"""Batched, cached image and text embeddings (float32, unnormalised), with optional D4 test-time averaging.

Embeddings are the towers' pooled outputs, returned **unnormalised** as float32
(the metrics normalise). ``dtype="auto"`` computes in bfloat16 where the hardware
runs it natively (CUDA GPUs that support it; x86 CPUs with AVX-512 BF16 or AMX) and
in float32 elsewhere; bfloat16 results agree with float32 to a cosine >= 0.999.

With ``cache_dir`` a result is stored as ``.npy`` under a SHA-256 key of everything
that determines it: the model's configuration and every parameter tensor (LoRA
adapters included) and adapter settings, the preprocessing, the compute dtype and
the input bytes or strings (and, for text, the tokenizer); a rerun is a file read.

The study stores these arrays as bundles (``radioalign.study.bundles``).
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .model import PREPROCESSING, base_model, image_features, model_device, preprocess, text_features, text_max_length, tokenize

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


# ---------------------------------------------------------------------------
# dtype


@lru_cache(maxsize=None)
def _cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
        if "avx512_bf16" in flags or "amx_bf16" in flags:
            return True
    except OSError:
        pass
    try:  # non-Linux x86: ask PyTorch's own CPU probe
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively (not emulated)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has_fast_bf16()
    return False  # MPS and others: float32 is the safe, fast default


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """``"auto"`` -> bfloat16 where :func:`bf16_is_fast`, else float32; names and dtypes pass through."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'") from None


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision for ``dtype`` on ``device`` (a no-op for float32)."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextmanager
def evaluating(model):
    """Eval mode (no dropout) for the block, then the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------
# cache keys


def _hash_tensor(h, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous().reshape(-1)
    h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes())


def model_fingerprint(model) -> str:
    """SHA-256 of a model's identity: its configuration, its adapter configurations and
    the bytes of every tensor in its state dict (so fine-tuned adapters change it)."""
    h = hashlib.sha256()
    h.update(base_model(model).config.to_json_string(use_diff=False).encode())
    for name, cfg in sorted(getattr(model, "peft_config", {}).items()):
        h.update(f"adapter {name}: {json.dumps(cfg.to_dict(), sort_keys=True, default=str)}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        _hash_tensor(h, name, tensor)
    return h.hexdigest()


def _tokenizer_fingerprint(processor) -> str:
    tok = getattr(processor, "tokenizer", processor)
    backend = getattr(tok, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tok.get_vocab(), sort_keys=True)
    return hashlib.sha256(f"{type(tok).__name__}|{tok.padding_side}|{text}".encode()).hexdigest()


def _cache_key(kind: str, model, parts: dict, payload: bytes) -> str:
    h = hashlib.sha256()
    h.update(kind.encode())
    h.update(model_fingerprint(model).encode())
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    h.update(hashlib.sha256(payload).digest())
    return h.hexdigest()


def _cached(cache_dir, kind: str, key: str, compute):
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{kind}-{key[:40]}.npy"
    if path.is_file():
        return np.load(path)
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, result)
    os.replace(tmp, path)  # atomic: parallel notebooks never read half a file
    return result


# ---------------------------------------------------------------------------
# embeddings


def _check_images(images) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array (N, H, W) of uint8, got {type(images).__name__}")
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W) uint8, got shape {images.shape} dtype {images.dtype}")
    return images


def embed_images(
    model,
    images: np.ndarray,
    *,
    preprocessing: str = "paper",
    batch_size: int = 32,
    dtype: str | torch.dtype = "auto",
    cache_dir: str | os.PathLike | None = None,
    tta: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Image embeddings ``(N, D)`` float32, unnormalised (the vision tower's pooled output).

    Parameters
    ----------
    model
        A ``SiglipModel`` or its peft wrapper, on the device to compute on.
    images
        ``(N, 150, 150)`` uint8 greyscale images.
    preprocessing
        ``"paper"``: bilinear resize to the model's image size, grey to 3 channels,
        pixels in [0, 1] (the authors' input); ``"siglip"``: the same mapped to
        [-1, 1] (the checkpoint's own normalisation). See ``radioalign.data.preprocess``.
    batch_size
        Images per forward pass.
    dtype
        ``"auto"`` (see :func:`resolve_dtype`), ``"float32"``, ``"bfloat16"``, ``"float16"``.
    cache_dir
        Folder for cached results (``None``: no cache).
    tta
        ``None``, or ``"d4"``: the mean of the embeddings of the 8 rotations and flips of
        each image (:func:`d4_transform`), a radio source having no preferred orientation.
    """
    images = _check_images(images)
    if tta not in (None, "d4"):
        raise ValueError(f"tta must be None or 'd4', not {tta!r}")
    if tta == "d4":
        views = [embed_images(model, d4_transform(images, k), preprocessing=preprocessing, batch_size=batch_size,
                              dtype=dtype, cache_dir=cache_dir, progress=progress) for k in range(8)]  # fmt: skip
        return np.mean(views, axis=0).astype(np.float32)
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; choose one of {PREPROCESSING}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    device = model_device(model)
    compute_dtype = resolve_dtype(dtype, device)
    size = int(base_model(model).config.vision_config.image_size)

    def compute() -> np.ndarray:
        return _image_features(model, images, preprocessing, size, batch_size, device, compute_dtype, progress)

    if cache_dir is None:
        return compute()
    parts = {"preprocessing": preprocessing, "dtype": str(compute_dtype), "size": size, "shape": images.shape}
    key = _cache_key("images", model, parts, np.ascontiguousarray(images).tobytes())
    return _cached(cache_dir, "images", key, compute)


def _image_features(model, images, preprocessing: str, size: int, batch_size: int, device, compute_dtype, progress: bool) -> np.ndarray:
    """The vision tower's pooled outputs of ``images`` in batches, float32 on the CPU (no cache)."""
    if len(images) == 0:
        return np.zeros((0, base_model(model).config.vision_config.hidden_size), np.float32)
    chunks = []
    with evaluating(model), torch.inference_mode(), autocast(device, compute_dtype):
        for start in tqdm(range(0, len(images), batch_size), desc="images", leave=False, disable=not progress):
            pixels = preprocess(images[start : start + batch_size], mode=preprocessing, size=size)
            feats = image_features(model, pixels.to(device, non_blocking=True))
            chunks.append(feats.float().cpu().numpy())
    return np.concatenate(chunks).astype(np.float32, copy=False)


D4_NAMES = ("identity", "rot90", "rot180", "rot270", "flip", "flip+rot90", "flip+rot180", "flip+rot270")


def d4_transform(images: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th of the 8 symmetries of the square (the dihedral group D4) applied to
    ``(N, H, W)`` images: ``k % 4`` quarter turns counter-clockwise, after a left-right
    flip when ``k >= 4`` (names in :data:`D4_NAMES`)."""
    if not 0 <= int(k) < 8:
        raise ValueError(f"k must be in 0..7, not {k!r}")
    out = images[:, :, ::-1] if k >= 4 else images
    return np.ascontiguousarray(np.rot90(out, k % 4, axes=(1, 2)))


def embed_texts(
    model,
    processor,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    dtype: str | torch.dtype = "auto",
    cache_dir: str | os.PathLike | None = None,
    lowercase: bool | None = None,
    attention_mask: bool = False,
    padding_side: str = "right",
    progress: bool = True,
) -> np.ndarray:
    """Text embeddings ``(N, D)`` float32, unnormalised (the text tower's pooled output).

    Texts are tokenised as SigLIP expects (``radioalign.model.tokenize``: padded on
    ``padding_side`` to the tower's length, 64 for the base model, truncated);
    ``attention_mask=False`` passes ids only, as the authors' evaluation did; ``lowercase``
    as in ``tokenize`` (``None``: only if the tokenizer declares it). Other parameters as in
    :func:`embed_images`.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    texts = list(texts)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    device = model_device(model)
    compute_dtype = resolve_dtype(dtype, device)
    length = text_max_length(base_model(model))
    ids, mask = tokenize(
        processor, texts or [""], length, lowercase=lowercase, padding_side=padding_side, return_attention_mask=True
    )
    mask = mask if attention_mask else None

    def compute() -> np.ndarray:
        if not texts:
            return np.zeros((0, base_model(model).config.text_config.projection_size), np.float32)
        chunks = []
        with evaluating(model), torch.inference_mode(), autocast(device, compute_dtype):
            for start in tqdm(range(0, len(texts), batch_size), desc="texts", leave=False, disable=not progress):
                batch_mask = mask[start : start + batch_size].to(device) if mask is not None else None
                feats = text_features(model, ids[start : start + batch_size].to(device, non_blocking=True), batch_mask)
                chunks.append(feats.float().cpu().numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)

    if cache_dir is None:
        return compute()
    parts = {"dtype": str(compute_dtype), "length": length, "tokenizer": _tokenizer_fingerprint(processor),
             "attention_mask": attention_mask, "padding_side": padding_side}  # fmt: skip
    payload = ids.numpy().tobytes() if texts else b""
    key = _cache_key("texts", model, parts, payload)
    return _cached(cache_dir, "texts", key, compute)
