"""Bundles and their tags: the one place that builds, parses and lists them.

A *bundle* is one model's embeddings as an ``.npz`` under
``results/<profile>/embeddings/<tag>.npz``: ``image_{train,test}``,
``text_<captions>_{train,test}`` (float32), ``labels_{train,test}`` (int64) and
``names_{train,test}`` (str).

A *tag* names the model: ``frozen``, or ``<scope>-<captions>`` for a LoRA run's final
model and ``<scope>-<captions>_epoch<k>`` for its model after epoch ``k``
(``Tag(scope, captions, epoch)``; ``str(tag)`` formats and :func:`parse_tag` parses).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..provenance import write_stamp
from .layout import embeddings_dir, embeddings_file

FROZEN = "frozen"
SCOPES = ("vision", "text", "full")
_TAG = re.compile(r"^(?P<scope>vision|text|full)-(?P<captions>[a-z0-9]+)(?:_epoch(?P<epoch>\d+))?$")


@dataclass(frozen=True, order=True)
class Tag:
    """A model of the study: ``scope`` is ``"frozen"``, ``"vision"``, ``"text"`` or ``"full"``;
    ``captions`` the caption set a run trained on (None for frozen); ``epoch`` the
    intermediate stage (None: the run's final model)."""

    scope: str
    captions: str | None = None
    epoch: int | None = None

    def __post_init__(self):
        if self.scope == FROZEN:
            if self.captions is not None or self.epoch is not None:
                raise ValueError("the frozen model has no caption set and no epoch")
        elif self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; choose frozen or one of {SCOPES}")
        elif not self.captions or not re.fullmatch(r"[a-z0-9]+", self.captions):
            raise ValueError(f"a LoRA tag needs a caption-set name of lower-case letters and digits, not {self.captions!r}")

    def __str__(self) -> str:
        if self.scope == FROZEN:
            return FROZEN
        return f"{self.scope}-{self.captions}" + (f"_epoch{self.epoch}" if self.epoch is not None else "")

    @property
    def run(self) -> str:
        """The run this model belongs to (``<scope>-<captions>``; ``frozen`` for the frozen model)."""
        return str(replace(self, epoch=None))

    @property
    def is_final(self) -> bool:
        return self.epoch is None

    def at_epoch(self, epoch: int | None) -> "Tag":
        return replace(self, epoch=epoch)


def tag(scope: str, captions: str | None = None, epoch: int | None = None) -> str:
    """The tag string of a model (``tag("vision", "curated", 5)`` -> ``"vision-curated_epoch5"``)."""
    return str(Tag(scope, captions, epoch))


def parse_tag(text: str) -> Tag | None:
    """``"vision-curated_epoch5"`` -> ``Tag("vision", "curated", 5)``; ``"frozen"`` ->
    ``Tag("frozen")``; None when ``text`` is not a tag."""
    if text == FROZEN:
        return Tag(FROZEN)
    m = _TAG.match(text)
    if m is None:
        return None
    epoch = m.group("epoch")
    return Tag(m.group("scope"), m.group("captions"), int(epoch) if epoch else None)


def run_tags(scopes: Sequence[str] = SCOPES, captions: Sequence[str] = ("curated", "control")) -> list[Tag]:
    """The final models of the LoRA runs ``scopes`` x ``captions``."""
    return [Tag(s, c) for s in scopes for c in captions]


def expected_tags(scopes: Sequence[str] = SCOPES, captions: Sequence[str] = ("curated", "control")) -> list[str]:
    """The final-model tags a complete study has: ``frozen`` and ``<scope>-<captions>``."""
    return [FROZEN] + [str(t) for t in run_tags(scopes, captions)]


def stage_tags(available: Iterable[str], scope: str, captions: str) -> list[tuple[str, str | None]]:
    """``[(stage label, tag or None)]`` for one run, in order: frozen, each saved epoch, final.
    A stage whose bundle is not in ``available`` gets None."""
    have = {t: parse_tag(t) for t in available}
    epochs = sorted(t.epoch for t in have.values() if t and t.run == tag(scope, captions) and t.epoch is not None)
    final = tag(scope, captions)
    stages = [("frozen", FROZEN if FROZEN in have else None)]
    stages += [(f"epoch {k}", tag(scope, captions, k)) for k in epochs]
    stages.append(("final", final if final in have else None))
    return stages


# ------------------------------------------------------------------------- files


def available_bundles(profile: str, *, stages: bool = False) -> dict[str, Path]:
    """Bundles present under ``results/<profile>/embeddings``: ``{tag: path}``, final models
    only unless ``stages`` (then the ``_epoch<k>`` bundles too). Files that are not tags are ignored."""
    found = {}
    for path in sorted(embeddings_dir(profile).glob("*.npz")):
        t = parse_tag(path.stem)
        if t is not None and (stages or t.is_final):
            found[path.stem] = path
    return found


def load_bundles(profile: str, *, stages: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """The available bundles loaded: ``{tag: bundle}`` (see :func:`available_bundles`)."""
    return {t: load_bundle(path) for t, path in available_bundles(profile, stages=stages).items()}


def missing_bundles(profile: str, scopes: Sequence[str] = SCOPES, captions: Sequence[str] = ("curated", "control")) -> list[str]:
    """Expected final-model tags whose bundle is absent."""
    have = available_bundles(profile)
    return [t for t in expected_tags(scopes, captions) if t not in have]


def caption_sets(bundle) -> list[str]:
    """Caption sets with both splits in a bundle, sorted (e.g. ``["catalog", "control", "curated"]``)."""
    found = {k[len("text_") : -len("_test")] for k in bundle if k.startswith("text_") and k.endswith("_test")}
    return sorted(c for c in found if f"text_{c}_train" in bundle)


def write_bundle(profile, tag_: str | Tag, *, strict: bool = True, **arrays) -> Path:
    """:func:`save_bundle` at the profile's place for ``tag_``, stamped with the profile."""
    if parse_tag(str(tag_)) is None:
        raise ValueError(f"{tag_!r} is not a bundle tag (frozen, <scope>-<captions>[_epoch<k>])")
    return save_bundle(embeddings_file(profile.name, str(tag_)), profile=profile, strict=strict, **arrays)


SPLITS = ("train", "test")
BUNDLE_KEYS = (
    "image_train",
    "image_test",
    "text_curated_train",
    "text_curated_test",
    "text_control_train",
    "text_control_test",
    "labels_train",
    "labels_test",
    "names_train",
    "names_test",
)


def _split_of(key: str) -> str | None:
    for split in SPLITS:
        if key.endswith(f"_{split}"):
            return split
    return None


def save_bundle(path: str | os.PathLike, *, profile=None, strict: bool = True, **arrays) -> Path:
    """Write one model's embeddings as an ``.npz`` bundle (atomically) with a stamp beside it.

    Arrays named ``image_*`` / ``text_*`` are stored as float32 ``(N, D)``, ``labels_*``
    as int64 ``(N,)``, ``names_*`` as str ``(N,)``; within a split (``*_train``,
    ``*_test``) every array must have the same number of rows. With ``strict`` (default)
    every key of :data:`BUNDLE_KEYS` must be present.
    """
    path = Path(path)
    if strict:
        missing = [k for k in BUNDLE_KEYS if k not in arrays]
        if missing:
            raise ValueError(f"bundle {path.name} lacks {missing}")
    out: dict[str, np.ndarray] = {}
    rows: dict[str, tuple[str, int]] = {}
    for key, value in arrays.items():
        if key.startswith(("image_", "text_")):
            a = np.asarray(value, dtype=np.float32)
            if a.ndim != 2 or not np.isfinite(a).all():
                raise ValueError(f"{key}: embeddings must be a finite 2-D array, got shape {a.shape}")
        elif key.startswith("labels_"):
            a = np.asarray(value)
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{key}: labels must be a 1-D integer array")
            a = a.astype(np.int64)
        elif key.startswith("names_"):
            a = np.asarray([str(v) for v in value], dtype=str)
        else:
            a = np.asarray(value)
            if a.dtype == object:
                raise ValueError(f"{key}: object arrays are not allowed in a bundle")
        split = _split_of(key)
        if split is not None:
            if split in rows and rows[split][1] != len(a):
                other, n = rows[split]
                raise ValueError(f"{key} has {len(a)} rows but {other} has {n}")
            rows.setdefault(split, (key, len(a)))
        out[key] = a
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    write_stamp(path, profile=profile, keys=sorted(out))
    return path


def load_bundle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a bundle written by :func:`save_bundle` (no pickles)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def describe_bundles(profile, *, stages: bool = False) -> str:
    """What a notebook prints before it reads the bundles: which are present, which of the
    profile's final models are missing (and which notebook writes them), and with
    ``stages`` which intermediate epochs were not saved."""
    have = available_bundles(profile.name, stages=True)
    missing = missing_bundles(profile.name, profile.scopes, profile.prompts)
    lines = [f"bundles under results/{profile.name}/embeddings: {', '.join(have) or 'none'}"]
    if missing:
        lines.append(f"MISSING (their cells below show '–' or say so): {', '.join(missing)}")
        lines.append("  they are written by 02_frozen_embeddings (frozen) and 03_lora_finetuning (the LoRA runs)")
    else:
        lines.append(f"all {len(expected_tags(profile.scopes, profile.prompts))} final bundles are present")
    if stages:
        wanted = [tag(s, c, k) for s in profile.scopes for c in profile.prompts for k in profile.eval_epochs]
        absent = [t for t in wanted if t not in have]
        if absent:
            lines.append(f"intermediate stages not saved (early stopping, or not run): {', '.join(absent)}")
    return "\n".join(lines)
