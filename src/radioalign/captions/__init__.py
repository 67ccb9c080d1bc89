"""Captions as data with provenance: four interchangeable sources behind one call.

    caption_images(images, prompt, backend, store, **options) -> {id: caption}

``images`` maps ids (``MiraBest.names``) to 150x150 ``uint8`` arrays; ``prompt`` is
"control" or "curated" (``PROMPTS``); ``store`` is the JSONL file the captions go
to (the study keeps them at ``study.layout.captions_store(results, source, prompt, split)``). Backends:

``published``  the authors' Gemini captions (``published.py``); ids ``full-<split>-NNNN``
               or ``split=`` with the images in ``MiraBest_full`` row order.
``gemini``     Google Gemini via google-genai (``gemini.py``); key from GOOGLE_API_KEY / GEMINI_API_KEY.
``local``      an open VLM via transformers (``local.py``), default SmolVLM-256M-Instruct.
``catalog``    deterministic captions measured from the pixels (``catalog.py``), offline.
``auto``       ``gemini`` when a key is set, else ``catalog``.

Ids that already have a caption in the store are skipped (no request is sent),
so an interrupted run is resumed by calling again; failed ids are tried again.
Ids that still have no caption are left out of the result and reported in a
``CaptionFailureWarning`` (their reasons are in the store: ``failures(store)``).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping

import numpy as np

from .catalog import VERSION as CATALOG_VERSION
from .catalog import catalog_caption, describe, measure
from .curation import apply_curation, curation_table, diff_words, load_curation
from .prompts import PROMPT_SPECS, PROMPTS, Prompt, get_prompt
from .published import load_published_captions, load_published_records
from .stats import caption_stats, token_lengths
from .store import CaptionStore, make_record, read_records, read_store

__all__ = [
    "BACKENDS",
    "PROMPTS",
    "PROMPT_SPECS",
    "CaptionFailureWarning",
    "CaptionStore",
    "Prompt",
    "apply_curation",
    "caption_images",
    "caption_stats",
    "catalog_caption",
    "curation_table",
    "default_backend",
    "describe",
    "diff_words",
    "failures",
    "get_prompt",
    "load_curation",
    "load_published_captions",
    "load_published_records",
    "measure",
    "read_records",
    "read_store",
    "token_lengths",
]

BACKENDS = ("published", "gemini", "local", "catalog")


class CaptionFailureWarning(UserWarning):
    """Some images got no caption; their reasons are in the store."""


def default_backend() -> str:
    """``gemini`` when GOOGLE_API_KEY or GEMINI_API_KEY is set, else the offline ``catalog``."""
    from .gemini import has_api_key

    return "gemini" if has_api_key() else "catalog"


def failures(store: str | os.PathLike) -> dict[str, str]:
    """``{id: reason}`` of the ids in a store that have no successful caption."""
    return CaptionStore(store).failures()


def _check_images(images: Mapping[str, Any], need_pixels: bool) -> list[tuple[str, Any]]:
    if not isinstance(images, Mapping):
        raise TypeError(f"images must be a mapping id -> image (e.g. radioalign.data.images_by_name(ds)), got {type(images).__name__}")
    items = []
    for key, image in images.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"image ids must be non-empty strings, got {key!r}")
        if need_pixels:
            arr = np.asarray(image)
            if arr.ndim != 2:
                raise ValueError(f"image {key!r}: expected one 2-D greyscale image, got shape {arr.shape}")
            if arr.dtype != np.uint8:
                if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 255:
                    raise ValueError(f"image {key!r}: expected uint8 pixels (0-255), got {arr.dtype} in [{arr.min()}, {arr.max()}]")
                arr = arr.astype(np.uint8)
            image = arr
        items.append((key, image))
    return items


def _check_store(store: CaptionStore, prompt: str, backend: str) -> None:
    """Refuse to mix prompts or sources in one store: a caption must never be silently the wrong kind."""
    spec = get_prompt(prompt)
    for r in store.records():
        if r["status"] != "ok":
            continue
        if r.get("prompt") != prompt or r.get("prompt_sha256") != spec.sha256:
            raise ValueError(
                f"{store.path} holds captions for prompt {r.get('prompt')!r} (sha256 {str(r.get('prompt_sha256'))[:12]}), "
                f"not {prompt!r} (sha256 {spec.sha256[:12]}): use one store per (source, prompt, split)"
            )
        if r.get("backend") != backend:
            raise ValueError(f"{store.path} holds {r.get('backend')!r} captions; use another store for the {backend!r} backend")


def caption_images(
    images: Mapping[str, np.ndarray],
    prompt: str,
    backend: str,
    store: str | os.PathLike,
    *,
    progress: bool = True,
    **options: Any,
) -> dict[str, str]:
    """Caption ``images`` with ``backend`` into ``store``; return ``{id: caption}`` for the given ids.

    Parameters
    ----------
    images : mapping id -> 2-D uint8 image (``published`` reads only the ids).
    prompt : "control" or "curated".
    backend : "published" | "gemini" | "local" | "catalog" | "auto" (see the module docstring).
    store : the JSONL store (created when absent; appended to, never rewritten).
    progress : show tqdm progress bars.
    **options : passed to the backend: ``published.caption_published`` (split, root),
        ``gemini.caption_gemini`` (model, temperature, concurrency, rpm, attempts, batch, ...),
        ``local.caption_local`` (model, batch_size, max_new_tokens, device, ...), or
        ``catalog.measure`` (nsigma, min_pixels, ...).

    Returns
    -------
    dict
        id -> caption, in the order of ``images``, for the ids that have a caption;
        ids that failed are left out and reported in a ``CaptionFailureWarning``.
    """
    get_prompt(prompt)
    if backend == "auto":
        backend = default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or 'auto', got {backend!r}")
    items = _check_images(images, need_pixels=backend != "published")
    store = CaptionStore(store)
    _check_store(store, prompt, backend)
    done = store.captions()
    todo = [(i, x) for i, x in items if i not in done]
    if todo:
        _run_backend(backend, todo, prompt, store, progress=progress, **options)
    captions = store.captions()
    result = {i: captions[i] for i, _ in items if i in captions}
    missing = [i for i, _ in items if i not in captions]
    if missing:
        reasons = store.failures()
        shown = "; ".join(f"{i}: {reasons.get(i, 'no record')}" for i in missing[:3])
        warnings.warn(
            f"{len(missing)} of {len(items)} images have no {prompt} caption from {backend} (e.g. {shown}); "
            f"rerun caption_images to retry them (reasons in {store.path})",
            CaptionFailureWarning,
            stacklevel=2,
        )
    return result


def _run_backend(backend: str, todo: list, prompt: str, store: CaptionStore, *, progress: bool, **options: Any) -> None:
    if backend == "published":
        from .published import caption_published

        caption_published(todo, prompt, store, progress=progress, **options)
    elif backend == "gemini":
        from .gemini import caption_gemini

        caption_gemini(todo, prompt, store, progress=progress, **options)
    elif backend == "local":
        from .local import caption_local

        caption_local(todo, prompt, store, progress=progress, **options)
    else:
        caption_catalog(todo, prompt, store, progress=progress, **options)


def caption_catalog(todo: list, prompt: str, store: CaptionStore, *, progress: bool = True, chunk: int = 64, **measure_options: Any) -> None:
    """The ``catalog`` backend: measure, describe, store (in chunks, each record its own fsynced line)."""
    from tqdm.auto import tqdm

    from .. import __version__

    spec = get_prompt(prompt)
    bar = tqdm(total=len(todo), desc=f"catalog {prompt}", disable=not progress)
    for start in range(0, len(todo), chunk):
        records = []
        for i, image in todo[start : start + chunk]:
            records.append(
                make_record(
                    i,
                    caption=catalog_caption(image, prompt, **measure_options),
                    backend="catalog",
                    model=f"radioalign.captions.catalog v{CATALOG_VERSION}",
                    model_version=f"radioalign {__version__}",
                    prompt=prompt,
                    prompt_sha256=spec.sha256,
                    settings=measure_options or None,
                )
            )
        store.append(*records)
        bar.update(len(records))
    bar.close()
