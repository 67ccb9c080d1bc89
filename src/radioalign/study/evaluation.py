"""The study's evaluation of one embedding bundle: every metric, as long-format rows.

A bundle (``radioalign.study.bundles``) holds one model's test and training embeddings;
:func:`evaluate_bundle` runs the library's metrics (``radioalign.metrics``) on it with
one caption set:

* classification (``metrics.evaluate_classification``) on the features ``image``,
  ``text`` (the caption set's text embeddings), ``concat`` (``[text, image]`` raw, the
  authors' order) and ``concat_l2`` (each part L2-normalised, scaled by 1/sqrt(2));
  plus, with ``authors_text_probe_defect``, the row ``linear_probe_f1`` / ``text_authors``
  that reproduces the authors' "text" probe: their code trained and tested it on image
  features (a second probe draw, seed + 1, as their code initialised a second layer);
* retrieval (``metrics.evaluate_retrieval``) on the test pairs: mean cosine, Recall@1,
  Recall@5 and class-level Recall@1;
* zero-shot classification (:func:`zero_shot_rows`, modality ``image``) of the test images
  with the FR prompts the bundle holds (``text_prompts``, ``prompt_classes``,
  ``logit_scale``, ``logit_bias``; ``radioalign.study.inputs``): ``zero_shot_f1`` (binary,
  FR-II positive) and ``zero_shot_accuracy``. No captions enter, so the frozen model's rows
  are the same with every caption set. Bundles without these keys get no zero-shot rows.

Every metric uses the same ``B`` resamples of the test items, drawn from
``(n_test, B, seed)``, so the rows of two bundles with the same test items are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import (
    bootstrap_indices,
    concat_features,
    evaluate_classification,
    evaluate_retrieval,
    f1_replicates,
    f1_scores,
    interval_row,
    mean_replicates,
    probe_f1_replicates,
)
from ..survey.zeroshot import zero_shot_probabilities
from .bundles import BUNDLE_KEYS, caption_sets, load_bundle, parse_tag

ROW_COLUMNS = ["model", "tag", "captions", "metric", "modality", "value", "low", "high", "n", "B"]
# What evaluation reads besides the caption set: every bundle key but the caption sets and
# the item names (names only tell whether two bundles hold the same test items).
CORE_KEYS = tuple(k for k in BUNDLE_KEYS if not k.startswith(("text_", "names_")))


def bundle_arrays(bundle, captions: str) -> dict[str, np.ndarray]:
    """The bundle (loaded if a path) after checking it holds ``captions`` for both splits."""
    bundle = load_bundle(bundle) if isinstance(bundle, (str, Path)) else bundle
    missing = [k for k in (*CORE_KEYS, f"text_{captions}_train", f"text_{captions}_test") if k not in bundle]
    if missing:
        raise KeyError(f"bundle lacks {missing}; caption sets present: {caption_sets(bundle)}")
    return bundle


def classification_features(bundle, captions: str, concat_l2: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{modality: (train_x, test_x)}``: ``image``, ``text``, ``concat`` and, with
    ``concat_l2``, ``concat_l2`` (module docstring)."""
    feats = {
        "image": (bundle["image_train"], bundle["image_test"]),
        "text": (bundle[f"text_{captions}_train"], bundle[f"text_{captions}_test"]),
    }
    feats["concat"] = tuple(concat_features(t, i) for t, i in zip(feats["text"], feats["image"]))
    if concat_l2:
        feats["concat_l2"] = tuple(concat_features(t, i, normalize=True) for t, i in zip(feats["text"], feats["image"]))
    return feats


def _authors_text_probe_row(bundle, *, bootstrap: int, seed: int, keep: bool, metric="linear_probe_f1", **paper) -> dict:
    ytr, yte = np.asarray(bundle["labels_train"]), np.asarray(bundle["labels_test"])
    idx = bootstrap_indices(len(yte), bootstrap, seed)
    value, reps = probe_f1_replicates(
        bundle["image_train"], ytr, bundle["image_test"], yte, idx, protocol="paper", seed=seed + 1, **paper
    )
    return interval_row(metric, "text_authors", value, reps, len(yte), keep)


AUTHORS_LR_METRIC = "linear_probe_f1_authors_lr"


def authors_lr_rows(bundle, captions: str, lr: float, *, bootstrap: int, seed: int, keep: bool) -> list[dict]:
    """The paper probe at learning rate ``lr`` (metric :data:`AUTHORS_LR_METRIC`) on images,
    the authors' image-feature "text" probe and the concatenation: the authors' logged
    Full-control command passed ``--linear_lr 0001``, which argparse reads as 1.0."""
    ytr, yte = np.asarray(bundle["labels_train"]), np.asarray(bundle["labels_test"])
    idx = bootstrap_indices(len(yte), bootstrap, seed)
    feats = classification_features(bundle, captions, concat_l2=False)
    rows = []
    for modality in ("image", "concat"):
        (train_x, test_x) = feats[modality]
        value, reps = probe_f1_replicates(train_x, ytr, test_x, yte, idx, protocol="paper", seed=seed, lr=lr)
        rows.append(interval_row(AUTHORS_LR_METRIC, modality, value, reps, len(yte), keep))
    rows.insert(1, _authors_text_probe_row(bundle, bootstrap=bootstrap, seed=seed, keep=keep, metric=AUTHORS_LR_METRIC, lr=lr))
    return rows


ZERO_SHOT_KEYS = ("text_prompts", "prompt_classes", "logit_scale", "logit_bias")


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def zero_shot_predictions(bundle) -> np.ndarray | None:
    """The zero-shot label (0 = FR-I, 1 = FR-II) of each test image: the class of highest
    SigLIP probability ``sigmoid(exp(logit_scale) * cos(image, class) + logit_bias)``, a
    class's text vector being the ensemble of its prompts
    (``radioalign.survey.zeroshot.zero_shot_probabilities``). None without the prompt keys."""
    if not all(k in bundle for k in ZERO_SHOT_KEYS):
        return None
    classes = np.asarray(bundle["prompt_classes"], dtype=np.int64)
    scale, bias = np.exp(_scalar(bundle["logit_scale"])), _scalar(bundle["logit_bias"])
    probs = zero_shot_probabilities(bundle["image_test"], bundle["text_prompts"], classes, scale, bias)
    return probs.argmax(axis=1).astype(np.int64)


def zero_shot_rows(bundle, *, bootstrap: int, seed: int, keep: bool = False) -> list[dict]:
    """``zero_shot_f1`` (binary, FR-II positive) and ``zero_shot_accuracy`` of the test
    images (modality ``image``), with intervals over the shared resamples
    ``bootstrap_indices(n_test, bootstrap, seed)``; [] when the bundle has no prompts."""
    preds = zero_shot_predictions(bundle)
    if preds is None:
        return []
    y = np.asarray(bundle["labels_test"], dtype=np.int64)
    idx = bootstrap_indices(len(y), bootstrap, seed)
    f1 = float(f1_scores(y, preds, (0, 1), "binary"))
    correct = (preds == y).astype(float)
    return [
        interval_row("zero_shot_f1", "image", f1, f1_replicates(y, preds[None], (0, 1), "binary", idx), len(y), keep),
        interval_row("zero_shot_accuracy", "image", correct.mean(), mean_replicates(correct, idx), len(y), keep),
    ]


def evaluate_bundle(
    bundle,
    captions: str = "curated",
    *,
    model: str | None = None,
    tag: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    protocols: Sequence[str] = ("paper", "sklearn"),
    authors_text_probe_defect: bool = True,
    authors_probe_lr: float | None = None,
    return_replicates: bool = False,
) -> pd.DataFrame:
    """Every metric of one bundle (a dict or an ``.npz`` path) with one caption set.

    Columns: model, tag, captions, metric, modality, value, low, high, n, B (plus
    ``replicates`` with ``return_replicates``). ``tag`` defaults to the file's stem
    (``"unnamed"`` for a dict); ``model`` to the tag's scope (``frozen``, ``vision``,
    ``text``, ``full``), or the tag itself when it is not a study tag. ``authors_probe_lr``
    adds :func:`authors_lr_rows` at that learning rate.
    """
    if isinstance(bundle, (str, Path)):
        tag = tag or Path(bundle).stem
    bundle = bundle_arrays(bundle, captions)
    tag = tag or "unnamed"
    parsed = parse_tag(tag)
    model = model or (parsed.scope if parsed is not None else tag)
    ytr, yte = np.asarray(bundle["labels_train"]), np.asarray(bundle["labels_test"])
    options = dict(bootstrap=bootstrap, seed=seed, return_replicates=return_replicates)
    rows = evaluate_classification(classification_features(bundle, captions), ytr, yte, protocols=protocols, **options)
    if authors_text_probe_defect and "paper" in protocols:
        at = next(i for i, r in enumerate(rows) if (r["metric"], r["modality"]) == ("linear_probe_f1", "image"))
        rows.insert(at + 1, _authors_text_probe_row(bundle, bootstrap=bootstrap, seed=seed, keep=return_replicates))
    if authors_probe_lr is not None and "paper" in protocols:
        rows += authors_lr_rows(bundle, captions, authors_probe_lr, bootstrap=bootstrap, seed=seed, keep=return_replicates)
    rows += evaluate_retrieval(bundle["image_test"], bundle[f"text_{captions}_test"], yte, **options)
    rows += zero_shot_rows(bundle, bootstrap=bootstrap, seed=seed, keep=return_replicates)
    frame = pd.DataFrame(rows)
    frame.insert(0, "captions", captions)
    frame.insert(0, "tag", tag)
    frame.insert(0, "model", model)
    return frame[ROW_COLUMNS + (["replicates"] if return_replicates else [])]


def synthetic_bundle(
    n_train: int = 60,
    n_test: int = 24,
    dim: int = 16,
    *,
    captions: Sequence[str] = ("curated", "control"),
    noise: float = 1.0,
    seed: int = 0,
    variant: int = 0,
) -> dict[str, np.ndarray]:
    """A random, class-structured bundle in the embedding-bundle format, for tests and demos.

    Not a model's output: item i has a latent vector (its class mean plus item noise,
    fixed by ``seed``), and its image and caption embeddings are that latent plus fresh
    noise of scale ``noise`` (drawn from ``(seed, variant)``), so images and captions pair
    up and classes separate. Bundles with the same ``seed`` and different ``variant``
    describe the same items, as the bundles of different models do.
    """
    items = np.random.default_rng(seed)
    means = items.normal(size=(2, dim)) * 1.5
    out: dict[str, np.ndarray] = {}
    latents = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n, dtype=np.int64) % 2
        latents[split] = means[y] + items.normal(size=(n, dim))
        out[f"labels_{split}"] = y
        out[f"names_{split}"] = np.array([f"{split}_{i:04d}" for i in range(n)])
    draw = np.random.default_rng([seed, variant])
    for split, z in latents.items():
        out[f"image_{split}"] = (z + noise * draw.normal(size=z.shape)).astype(np.float32)
        for k, c in enumerate(captions):
            out[f"text_{c}_{split}"] = (z + noise * (1 + 0.5 * k) * draw.normal(size=z.shape)).astype(np.float32)
    return out
