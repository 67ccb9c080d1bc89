"""Bundles and their tags: the one place that builds, parses and lists them.

A *bundle* is one model's embeddings as an ``.npz`` under
``results/<profile>/embeddings/<tag>.npz``: ``image_{train,test}``,
``text_<captions>_{train,test}`` (float32), ``labels_{train,test}`` (int64) and
``names_{train,test}`` (str).

A *tag* names the model: ``frozen``, or ``<scope>-<captions>`` for a LoRA run's final
model and ``<scope>-<captions>_epoch<k>`` for its model after epoch ``k``
(``Tag(scope, captions, epoch)``; ``str(tag)`` formats and :func:`parse_tag` parses).

The controls' runs (notebook 08) extend the run name, before any ``_epoch<k>``:

* ``+<variant>``: trained on shuffled captions, ``variant`` a shuffle mode
  (``radioalign.captions.shuffle.SHUFFLE_MODES``), e.g. ``full-curated+withinclass``;
* ``_s<seed>``: trained with another seed than the profile's own (``Profile.seed``, the
  authors' 42), e.g. ``vision-control_s1``. A run with the profile's seed has no suffix, so
  the study's bundles keep their plain names.

A *plain* tag has neither: Table 1 and the figures see only plain final models
(:func:`available_bundles`); the controls list theirs with ``controls=True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..provenance import write_stamp
from .layout import embeddings_dir, embeddings_file, results_dir


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

FROZEN = "frozen"
SCOPES = ("vision", "text", "full")
_TAG = re.compile(
    r"^(?P<scope>vision|text|full)-(?P<captions>[a-z0-9]+)(?:\+(?P<variant>[a-z0-9]+))?"
    r"(?:_s(?P<seed>\d+))?(?:_epoch(?P<epoch>\d+))?$"
)
_NAME = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, order=True)
class Tag:
    """A model of the study: ``scope`` is ``"frozen"``, ``"vision"``, ``"text"`` or ``"full"``;
    ``captions`` the caption set a run trained on (None for frozen); ``epoch`` the
    intermediate stage (None: the run's final model); ``variant`` the shuffle mode of its
    training captions (None: the true pairs); ``seed`` its training seed (None: the
    profile's own seed)."""

    scope: str
    captions: str | None = None
    epoch: int | None = None
    variant: str | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.scope == FROZEN:
            if any(v is not None for v in (self.captions, self.epoch, self.variant, self.seed)):
                raise ValueError("the frozen model has no caption set, epoch, variant or seed")
        elif self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; choose frozen or one of {SCOPES}")
        elif not self.captions or not _NAME.fullmatch(self.captions):
            raise ValueError(f"a LoRA tag needs a caption-set name of lower-case letters and digits, not {self.captions!r}")
        elif self.variant is not None and not _NAME.fullmatch(self.variant):
            raise ValueError(f"a variant is lower-case letters and digits, not {self.variant!r}")
        elif self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"a seed is a non-negative integer, not {self.seed!r}")

    def __str__(self) -> str:
        if self.scope == FROZEN:
            return FROZEN
        return (
            f"{self.scope}-{self.captions}"
            + (f"+{self.variant}" if self.variant is not None else "")
            + (f"_s{self.seed}" if self.seed is not None else "")
            + (f"_epoch{self.epoch}" if self.epoch is not None else "")
        )

    @property
    def run(self) -> str:
        """The run this model belongs to (``<scope>-<captions>[+<variant>][_s<seed>]``;
        ``frozen`` for the frozen model): its folder under ``runs/``."""
        return str(replace(self, epoch=None))

    @property
    def is_final(self) -> bool:
        return self.epoch is None

    @property
    def is_plain(self) -> bool:
        """Trained on the true pairs with the profile's seed: a model of Table 1."""
        return self.variant is None and self.seed is None

    @property
    def plain(self) -> "Tag":
        """The same scope, captions and epoch without variant and seed."""
        return replace(self, variant=None, seed=None)

    def at_epoch(self, epoch: int | None) -> "Tag":
        return replace(self, epoch=epoch)


def tag(scope: str, captions: str | None = None, epoch: int | None = None, *, variant: str | None = None,
        seed: int | None = None) -> str:
    """The tag string of a model (``tag("vision", "curated", 5)`` -> ``"vision-curated_epoch5"``;
    ``tag("full", "curated", variant="withinclass", seed=1)`` -> ``"full-curated+withinclass_s1"``)."""
    return str(Tag(scope, captions, epoch, variant, seed))


def seed_suffix(seed: int | None, base_seed: int) -> int | None:
    """The ``seed`` field of a run trained with ``seed``: None for the profile's own
    ``base_seed`` (its tags stay plain), else the seed."""
    return None if seed is None or int(seed) == int(base_seed) else int(seed)


def parse_tag(text: str) -> Tag | None:
    """``"vision-curated_epoch5"`` -> ``Tag("vision", "curated", 5)``; ``"frozen"`` ->
    ``Tag("frozen")``; ``"full-control+across_s2"`` -> ``Tag("full", "control", variant="across",
    seed=2)``; None when ``text`` is not a tag."""
    if text == FROZEN:
        return Tag(FROZEN)
    m = _TAG.match(text)
    if m is None:
        return None
    epoch, seed = m.group("epoch"), m.group("seed")
    return Tag(m.group("scope"), m.group("captions"), int(epoch) if epoch else None, m.group("variant"),
               int(seed) if seed else None)  # fmt: skip


def run_tags(scopes: Sequence[str] = SCOPES, captions: Sequence[str] = ("curated", "control")) -> list[Tag]:
    """The final models of the LoRA runs ``scopes`` x ``captions``."""
    return [Tag(s, c) for s in scopes for c in captions]


def expected_tags(scopes: Sequence[str] = SCOPES, captions: Sequence[str] = ("curated", "control")) -> list[str]:
    """The final-model tags a complete study has: ``frozen`` and ``<scope>-<captions>``
    (plain tags only: the controls' runs are :func:`control_tags`)."""
    return [FROZEN] + [str(t) for t in run_tags(scopes, captions)]


def seed_run_tags(scopes: Sequence[str], captions: Sequence[str], seeds: Sequence[int], base_seed: int) -> list[Tag]:
    """The final models of the seeds control beyond the study's own: every ``scopes`` x
    ``captions`` run for each seed of ``seeds`` other than ``base_seed``."""
    return [Tag(s, c, seed=seed_suffix(seed, base_seed)) for seed in seeds if int(seed) != int(base_seed)
            for s in scopes for c in captions]  # fmt: skip


def shuffled_run_tags(captions: Sequence[str], modes: Sequence[str], scope: str = "full") -> list[Tag]:
    """The final models of the shuffled-pairs control: one ``scope`` run (the profile's
    seed) per caption set and shuffle mode."""
    return [Tag(scope, c, variant=m) for c in captions for m in modes]


def control_tags(profile: Profile, shuffle_scope: str = "full") -> list[str]:
    """Every final-model tag notebook 08 writes for ``profile`` (its ``seeds`` and
    ``shuffled``): :func:`seed_run_tags` then :func:`shuffled_run_tags`."""
    tags = seed_run_tags(profile.scopes, profile.prompts, profile.seeds, profile.seed)
    tags += shuffled_run_tags(profile.prompts, profile.shuffled, shuffle_scope)
    return [str(t) for t in tags]


def seed_tags(scopes: Sequence[str], captions: Sequence[str], seed: int, base_seed: int) -> list[str]:
    """The final models of one seed as Table 1 has them: ``frozen`` (no training, so the
    same for every seed) and each ``scopes`` x ``captions`` run trained with ``seed``."""
    return [FROZEN] + [str(Tag(s, c, seed=seed_suffix(seed, base_seed))) for s in scopes for c in captions]


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


def available_bundles(results: Path, *, stages: bool = False, controls: bool = False) -> dict[str, Path]:
    """Bundles present under ``results/embeddings`` (``results``: a profile's results folder): ``{tag: path}``, final models
    only unless ``stages`` (then the ``_epoch<k>`` bundles too), plain tags only unless
    ``controls`` (then the shuffled and other-seed runs too). Files that are not tags are ignored."""
    found = {}
    for path in sorted(embeddings_dir(results).glob("*.npz")):
        t = parse_tag(path.stem)
        if t is not None and (stages or t.is_final) and (controls or t.is_plain):
            found[path.stem] = path
    return found


def control_bundles(results: Path) -> dict[str, Path]:
    """The final bundles of the controls' runs (shuffled captions, other seeds): ``{tag: path}``."""
    return {t: p for t, p in available_bundles(results, controls=True).items() if not parse_tag(t).is_plain}


def load_bundles(results: Path, *, stages: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """The available bundles loaded: ``{tag: bundle}`` (see :func:`available_bundles`)."""
    return {t: load_bundle(path) for t, path in available_bundles(results, stages=stages).items()}


def missing_bundles(results: Path, scopes: Sequence[str] = SCOPES, captions: Sequence[str] = ("curated", "control")) -> list[str]:
    """Expected final-model tags whose bundle is absent."""
    have = available_bundles(results)
    return [t for t in expected_tags(scopes, captions) if t not in have]


def caption_sets(bundle) -> list[str]:
    """Caption sets with both splits in a bundle, sorted (e.g. ``["catalog", "control", "curated"]``)."""
    found = {k[len("text_") : -len("_test")] for k in bundle if k.startswith("text_") and k.endswith("_test")}
    return sorted(c for c in found if f"text_{c}_train" in bundle)


def write_bundle(profile: Profile, tag_: str | Tag, *, strict: bool = True, **arrays) -> Path:
    """:func:`save_bundle` at the profile's place for ``tag_``, stamped with the profile."""
    if parse_tag(str(tag_)) is None:
        raise ValueError(f"{tag_!r} is not a bundle tag (frozen, <scope>-<captions>[+<variant>][_s<seed>][_epoch<k>])")
    return save_bundle(embeddings_file(results_dir(profile), str(tag_)), profile=profile, strict=strict, **arrays)


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


def save_bundle(path: str | os.PathLike, *, profile: Profile | None = None, strict: bool = True, **arrays) -> Path:
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


def describe_bundles(profile: Profile, *, stages: bool = False) -> str:
    """What a notebook prints before it reads the bundles: which are present, which of the
    profile's final models are missing (and which notebook writes them), and with
    ``stages`` which intermediate epochs were not saved."""
    have = available_bundles(results_dir(profile), stages=True)
    missing = missing_bundles(results_dir(profile), profile.scopes, profile.prompts)
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


def describe_controls(profile: Profile) -> str:
    """What notebook 08 prints about its own runs: which control bundles (other seeds,
    shuffled captions) of the profile are present and which are missing."""
    have = available_bundles(results_dir(profile), controls=True)
    wanted = control_tags(profile)
    missing = [t for t in wanted if t not in have]
    lines = [f"control runs of profile {profile.name}: seeds {list(profile.seeds)} (own seed {profile.seed}), "
             f"shuffled captions {list(profile.shuffled) or 'none'}"]  # fmt: skip
    lines.append(f"{len(wanted) - len(missing)} of {len(wanted)} control bundles present")
    if missing:
        lines.append(f"MISSING: {', '.join(missing)}")
    return "\n".join(lines)
