"""The study's inputs: a profile's splits and stored captions, and one model's bundle arrays.

These are the cells every notebook repeated; a notebook now calls
``train, test = load_splits(P)`` and ``texts = study_captions(P, train, test)``.

A bundle also holds what zero-shot classification needs (:func:`zero_shot_prompts`,
:func:`logit_arrays`): ``text_prompts`` (the survey tool's built-in FR prompts embedded
by the bundle's model, ``(P, D)``), ``prompt_classes`` (``(P,)``, each prompt's class:
0 = FR-I, 1 = FR-II as the MiraBest labels) and the model's ``logit_scale`` and
``logit_bias`` (its parameters as stored: a pair's probability is
``sigmoid(exp(logit_scale) * cos + logit_bias)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
from typing import Sequence

import numpy as np

from ..captions import read_store
from ..data import CLASS_NAMES, MiraBest, load_mirabest
from ..embed import embed_images, embed_texts
from ..model import base_model
from .layout import captions_store, results_dir


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

# The prompt set of the bundles' zero-shot rows: radioalign.survey.zeroshot's built-in one.
ZERO_SHOT_PROMPTS = "fr"


def load_split(profile: Profile, split: str) -> MiraBest:
    """One split of the profile's MiraBest version, cut to ``profile.limit`` items."""
    ds = load_mirabest(split, version=profile.data_version)
    return ds.subset(range(min(profile.limit, len(ds)))) if profile.limit else ds


def load_splits(profile: Profile) -> tuple[MiraBest, MiraBest]:
    """``(train, test)`` of the profile's MiraBest version, cut to ``profile.limit`` items each."""
    return load_split(profile, "train"), load_split(profile, "test")


def split_line(split: str, ds: MiraBest) -> str:
    """``"<split>: N images (a FR-I, b FR-II)"``."""
    return f"{split}: {len(ds)} images ({int((ds.labels == 0).sum())} FR-I, {int((ds.labels == 1).sum())} FR-II)"


def describe_splits(train, test, texts=None) -> str:
    """One line per split: sizes by class and the caption sets present."""
    lines = []
    for split, ds in (("train", train), ("test", test)):
        line = split_line(split, ds)
        if texts:
            line += ", " + ", ".join(f"{len(texts[p][split])} {p} captions" for p in texts)
        lines.append(line)
    return "\n".join(lines)


def study_captions(profile: Profile, train, test, *, source: str | None = None, prompts: Sequence[str] | None = None) -> dict:
    """``{prompt: {"train": [...], "test": [...]}}``: the stored captions of each prompt set in
    dataset order (``[store[name] for name in ds.names]``), read from
    ``layout.captions_store(layout.results_dir(profile), source, prompt, split)`` (notebook 01 writes them),
    plus each of ``profile.extra_captions`` (its curated prompt, keyed by the source's
    name, e.g. ``"catalog"``) when notebook 01 stored it for every item.

    Raises ``KeyError`` naming the items without a successful caption.
    """
    source = source or profile.caption_source
    out: dict[str, dict[str, list[str]]] = {}
    for prompt in prompts or profile.prompts:
        out[prompt] = {}
        for split, ds in (("train", train), ("test", test)):
            path = captions_store(results_dir(profile), source, prompt, split)
            store = read_store(path)
            missing = [name for name in ds.names if name not in store]
            if missing:
                raise KeyError(
                    f"{len(missing)} of {len(ds.names)} {split} items have no {prompt} caption in {path} "
                    f"(e.g. {missing[:3]}): rerun notebooks/01_captioning.ipynb"
                )
            out[prompt][split] = [store[name] for name in ds.names]
    # Further caption conditions (e.g. the catalogue's) enter under the source's name when
    # notebook 01 stored them for every item; they are evaluated, not trained on.
    for extra in profile.extra_captions:
        if extra == source or extra in out:
            continue
        files = {split: captions_store(results_dir(profile), extra, "curated", split) for split in ("train", "test")}
        if not all(f.is_file() for f in files.values()):
            continue
        stores = {split: read_store(f) for split, f in files.items()}
        if all(name in stores[split] for split, ds in (("train", train), ("test", test)) for name in ds.names):
            out[extra] = {split: [stores[split][name] for name in ds.names] for split, ds in (("train", train), ("test", test))}
    return out


def zero_shot_prompts() -> tuple[list[str], np.ndarray]:
    """``(texts, prompt_classes)``: every prompt of the built-in FR prompt set in its order,
    and each prompt's class as a MiraBest label (``CLASS_NAMES``: 0 = FR-I, 1 = FR-II)."""
    from ..survey.zeroshot import load_prompts, prompt_table

    classes, texts, owner = prompt_table(load_prompts(ZERO_SHOT_PROMPTS)[1])
    labels = np.asarray([CLASS_NAMES.index(classes[k]) for k in owner], dtype=np.int64)
    return texts, labels


def logit_arrays(model) -> dict[str, np.ndarray]:
    """The model's ``logit_scale`` and ``logit_bias`` parameters (a peft wrapper's base
    model's) as float32 scalars: bundle keys of the same names."""
    base = base_model(model)
    return {name: np.float32(getattr(base, name).detach().float().item()) for name in ("logit_scale", "logit_bias")}


def embed_study(
    model,
    processor,
    train,
    test,
    texts: dict,
    *,
    preprocessing: str = "paper",
    dtype="auto",
    cache_dir: str | os.PathLike | None = None,
    lowercase: bool | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """A bundle's arrays for one model: images and every prompt set's captions, train and
    test, plus labels and names (pass the result to ``bundles.write_bundle``), and the
    zero-shot arrays (module docstring) with the captions' text settings."""
    arrays: dict[str, np.ndarray] = {}
    prompts, arrays["prompt_classes"] = zero_shot_prompts()
    arrays["text_prompts"] = embed_texts(
        model, processor, prompts, dtype=dtype, cache_dir=cache_dir, lowercase=lowercase, progress=False
    )
    arrays.update(logit_arrays(model))
    for split, ds in (("train", train), ("test", test)):
        arrays[f"image_{split}"] = embed_images(
            model, ds.images, preprocessing=preprocessing, dtype=dtype, cache_dir=cache_dir, progress=progress
        )
        for prompt, by_split in texts.items():
            arrays[f"text_{prompt}_{split}"] = embed_texts(
                model, processor, by_split[split], dtype=dtype, cache_dir=cache_dir, lowercase=lowercase, progress=progress
            )
        arrays[f"labels_{split}"] = np.asarray(ds.labels, dtype=np.int64)
        arrays[f"names_{split}"] = np.asarray(list(ds.names), dtype=str)
    return arrays
