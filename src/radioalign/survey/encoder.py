"""A SigLIP model, optionally with a fine-tuned adapter, as the survey tools use it.

An :class:`Encoder` turns ``(N, 150, 150)`` ``uint8`` images and texts into
L2-normalised vectors (``radioalign.embed``), and carries the model's identity: the
fingerprint (``radioalign.embed.model_fingerprint``, adapters included) that a store
records and checks on every query.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..model import BASE_MODEL, PREPROCESSING, base_model, load_adapter, load_siglip
from .store import normalise


def adapter_folder(path: str | os.PathLike) -> Path:
    """The peft adapter folder of ``path``: the folder itself when it holds
    ``adapter_config.json``, else its ``adapter/`` sub-folder (a fine-tuning run)."""
    path = Path(path).expanduser()
    for candidate in (path, path / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"{path} holds no adapter (no adapter_config.json in it or in {path / 'adapter'})")


def run_settings(adapter: str | os.PathLike | None) -> dict:
    """A fine-tuning run's ``config.json`` (model input preprocessing, lower-casing), or {}."""
    if adapter is None:
        return {}
    # finetune writes <run>/config.json beside <run>/adapter/ (which holds peft's files)
    config = adapter_folder(adapter).parent / "config.json"
    try:
        settings = json.loads(config.read_text())
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


@dataclass
class Encoder:
    """A loaded model and how to feed it.

    ``preprocessing`` is the model input of ``radioalign.model.preprocess`` (``"paper"``:
    pixels in [0, 1], the study's; ``"siglip"``: [-1, 1]); ``lowercase`` as in
    ``radioalign.model.tokenize``.
    """

    model: object
    processor: object
    model_id: str
    adapter: str | None = None
    preprocessing: str = "paper"
    lowercase: bool | None = None
    dtype: str = "auto"
    batch_size: int = 64
    extra: dict = field(default_factory=dict)

    @cached_property
    def fingerprint(self) -> str:
        from ..embed import model_fingerprint

        return model_fingerprint(self.model)

    @property
    def dim(self) -> int:
        return int(base_model(self.model).config.vision_config.hidden_size)

    def images(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` ``uint8`` -> ``(N, D)`` L2-normalised float32."""
        from ..embed import embed_images

        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = embed_images(
            self.model, images, preprocessing=self.preprocessing, batch_size=self.batch_size, dtype=self.dtype, progress=False
        )
        return normalise(vectors)

    def texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> ``(N, D)`` L2-normalised float32."""
        from ..embed import embed_texts

        vectors = embed_texts(self.model, self.processor, list(texts), dtype=self.dtype, lowercase=self.lowercase, progress=False)
        return normalise(vectors)

    def logit_scale_bias(self) -> tuple[float, float]:
        """SigLIP's learnt ``(exp(logit_scale), logit_bias)``: a text-image pair's
        probability is ``sigmoid(exp(logit_scale) * cos + logit_bias)``."""
        model = base_model(self.model)
        return float(model.logit_scale.detach().exp().item()), float(model.logit_bias.detach().item())

    def describe(self) -> dict[str, str]:
        """What a store records about this model (its ``meta`` table)."""
        return {
            "fingerprint": self.fingerprint,
            "model": self.model_id,
            "adapter": self.adapter or "",
            "model_input": self.preprocessing,
            "lowercase": json.dumps(self.lowercase),
            "dim": str(self.dim),
        }


def load_encoder(
    model: str | os.PathLike = BASE_MODEL,
    adapter: str | os.PathLike | None = None,
    *,
    device=None,
    dtype: str = "auto",
    batch_size: int = 64,
    preprocessing: str | None = None,
    lowercase: bool | None = None,
) -> Encoder:
    """Load ``model`` (a hub id, a folder or ``"tiny"``) and, if given, a fine-tuned
    adapter (a run folder or its ``adapter/``). ``preprocessing`` and ``lowercase``
    default to the run's own settings, else ``"paper"`` and the tokenizer's default."""
    settings = run_settings(adapter)
    preprocessing = preprocessing or settings.get("preprocessing") or "paper"
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"unknown model input {preprocessing!r}; choose one of {PREPROCESSING}")
    if lowercase is None:
        lowercase = settings.get("lowercase")
    net, processor = load_siglip(model, device=device)  # it reports on stderr: stdout carries JSON
    adapter_path = None
    if adapter is not None:
        adapter_path = str(adapter_folder(adapter))
        net = load_adapter(net, adapter_path)
        net.eval()
    model_id = str(model) if not Path(str(model)).expanduser().is_dir() else str(Path(str(model)).expanduser().resolve())
    return Encoder(
        model=net, processor=processor, model_id=model_id, adapter=adapter_path,
        preprocessing=preprocessing, lowercase=lowercase, dtype=dtype, batch_size=batch_size,
    )  # fmt: skip


def encoder_for_store(meta: dict[str, str], model=None, adapter=None, **kwargs) -> Encoder:
    """The encoder a store query uses: the store's own model and adapter unless ``model``
    or ``adapter`` is given (the store then checks the fingerprint)."""
    if model is None and adapter is None:
        model, adapter = meta.get("model"), meta.get("adapter") or None
        if model is None:
            raise ValueError("the store records no model; pass --model")
        kwargs.setdefault("preprocessing", meta.get("model_input") or None)
        if "lowercase" in meta and "lowercase" not in kwargs:
            kwargs["lowercase"] = json.loads(meta["lowercase"])
    return load_encoder(model or BASE_MODEL, adapter, **kwargs)
