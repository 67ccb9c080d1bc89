"""The study's metrics on embeddings, each with a bootstrap interval.

Definitions (REFERENCE §4; the authors' ``finetune_image_text.py`` at commit ``ceb190b``):

* **Linear probe F1** (``protocol="paper"``): one ``torch.nn.Linear(D, n_classes)`` with
  cross-entropy (two outputs for FR-I/FR-II, as the authors' code), full-batch Adam,
  lr 0.01, 100 steps on all training features; after each of the last 10 steps the test
  set is predicted (arg-max) and scored; the reported F1 is the mean of these 10 scores.
  Binary F1 has FR-II (label 1) as the positive class. Features go in as given: the
  authors' code fed the raw (unnormalised) pooled SigLIP features, and so do we.
  ``protocol="sklearn"`` is a standard probe: standardised features and a logistic
  regression whose L2 strength is chosen by stratified 5-fold cross-validation (log loss)
  on the training set.
* **KNN F1**: scikit-learn's ``KNeighborsClassifier(k=5, metric="cosine",
  weights="uniform")`` fit on the training set, macro F1 on the test set.
* **Mean cosine**: the mean over test pairs of cos(image_i, text_i).
* **Recall@k**: on the cosine similarity of L2-normalised rows, row *i* of ``img`` pairs
  with row *i* of ``txt``. Image→text: the fraction of images whose paired text ranks in
  the top k texts; text→image likewise; ``"both"`` is the mean of the two (as the study
  reports). **Ties count against the pair**: the rank of the paired item is the number
  of candidates scoring at least its score (itself included, within ``TIE_TOL``), so a
  caption shared verbatim by several images never counts as retrieved by luck. The
  authors' ``argmax``/``topk`` gave ties to the lowest index instead.
* **Class-level Recall@1**: a hit when the top retrieved item has the query's class; when
  several items tie for the top score, a hit only if all of them have that class.
* **Concatenated features**: ``[text, image]`` (the authors' order) of the raw
  embeddings; ``concat_features(..., normalize=True)`` L2-normalises each part first and
  scales by 1/sqrt(2), so both modalities weigh the same and rows have unit norm.

Bootstrap (``evaluate_*``): percentile 95 % intervals from ``B`` resamples of the test
items, drawn by :func:`bootstrap_indices` from ``(n, B, seed)`` alone, so every metric of
every model sees the same resamples and differences between models can be bootstrapped
pairwise. Probes and KNN are trained once; only their test predictions are resampled.
Retrieval hits are computed once against the full test gallery, and the per-query hit
indicators are resampled (the gallery is not shrunk or duplicated), so the interval
reflects which queries were drawn, for the fixed gallery of n items.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TIE_TOL = 1e-6  # cosine scores closer than this to the paired score count as ties
PAPER_PROBE = dict(lr=0.01, steps=100, average_last=10)
DIRECTIONS = ("both", "i2t", "t2i")

# ---------------------------------------------------------------------------- checks


def _as_matrix(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (items, features), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _as_labels(y: Any, name: str, n: int) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} labels for {n} feature rows: lengths must match")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds NaN")
        if not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer class labels")
        a = a.astype(np.int64)
    return a


def _check_probe_inputs(train_x, train_y, test_x, test_y, average):
    train_x = _as_matrix(train_x, "train_x")
    test_x = _as_matrix(test_x, "test_x")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has {train_x.shape[1]} features but test_x has {test_x.shape[1]}")
    train_y = _as_labels(train_y, "train_y", len(train_x))
    test_y = _as_labels(test_y, "test_y", len(test_x))
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(f"train_y holds a single class ({classes.tolist()}): a classifier needs at least two")
    if average not in ("binary", "macro"):
        raise ValueError(f"average must be 'binary' or 'macro', got {average!r}")
    if average == "binary" and not set(np.unique(np.concatenate([train_y, test_y])).tolist()) <= {0, 1}:
        raise ValueError("average='binary' needs labels in {0, 1} (1 = FR-II is the positive class)")
    return train_x, train_y, test_x, test_y, classes


def _check_pairs(img, txt) -> tuple[np.ndarray, np.ndarray]:
    img = _as_matrix(img, "img")
    txt = _as_matrix(txt, "txt")
    if img.shape[0] != txt.shape[0]:
        raise ValueError(f"img has {img.shape[0]} rows but txt has {txt.shape[0]}: row i must pair with row i")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"img has {img.shape[1]} features but txt has {txt.shape[1]}: a shared embedding space is needed")
    return img, txt


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def l2_normalize(x: Any) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (float64); a zero row is an error, not a NaN."""
    a = _as_matrix(x, "x").astype(np.float64)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{int((norms == 0).sum())} row(s) have zero norm: cosine similarity is undefined")
    return a / norms


def concat_features(text: Any, image: Any, normalize: bool = False) -> np.ndarray:
    """``[text, image]`` per row, the authors' order.

    ``normalize=True`` L2-normalises each part and divides by sqrt(2): both modalities
    then carry equal weight and each row has unit norm.
    """
    text, image = _as_matrix(text, "text"), _as_matrix(image, "image")
    if len(text) != len(image):
        raise ValueError(f"text has {len(text)} rows but image has {len(image)}")
    if normalize:
        return np.concatenate([l2_normalize(text), l2_normalize(image)], axis=1) / np.sqrt(2.0)
    return np.concatenate([text, image], axis=1)


# ------------------------------------------------------------------------------ F1


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int], average: str = "binary") -> np.ndarray:
    """F1 over the last axis, vectorised over any leading axes (bootstrap replicates, steps).

    ``binary``: F1 of class 1; ``macro``: the unweighted mean of the per-class F1 over
    ``classes``. A class with no true and no predicted items scores 0 (scikit-learn's
    ``zero_division=0``), so one value equals ``sklearn.metrics.f1_score(...,
    labels=classes, zero_division=0)``.
    """
    positives = [1] if average == "binary" else list(classes)
    per_class = []
    for c in positives:
        pred_c, true_c = y_pred == c, y_true == c
        tp = np.sum(pred_c & true_c, axis=-1)
        wrong = np.sum(pred_c != true_c, axis=-1)  # fp + fn
        denom = 2 * tp + wrong
        per_class.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return np.mean(per_class, axis=0)


# ---------------------------------------------------------------------- predictions


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch and the BLAS libraries on one thread for a while.

    The probes are small (a few hundred items, at most ~1500 features): thread hand-offs
    cost more than they save, and on a shared 2-core machine they made a probe ~10x slower.
    One thread also fixes the order of floating-point reductions, so results repeat.
    """
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


def probe_predictions(train_x, train_y, test_x, *, protocol: str = "paper", seed: int = 0, **paper_options) -> np.ndarray:
    """Test-set predictions of a linear probe: shape (S, n_test).

    ``paper``: S = 10, the predictions after each of the last 10 of 100 full-batch Adam
    steps (see the module docstring); ``sklearn``: S = 1. ``paper_options`` override
    ``lr``, ``steps`` and ``average_last``.
    """
    train_x = _as_matrix(train_x, "train_x")
    test_x = _as_matrix(test_x, "test_x")
    train_y = _as_labels(train_y, "train_y", len(train_x))
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(f"train_y holds a single class ({classes.tolist()}): a classifier needs at least two")
    if protocol == "paper":
        with single_thread():
            return _paper_probe(train_x, train_y, test_x, classes, seed=seed, **{**PAPER_PROBE, **paper_options})
    if protocol == "sklearn":
        with single_thread():
            return _sklearn_probe(train_x, train_y, test_x, seed=seed)[None, :]
    raise ValueError(f"protocol must be 'paper' or 'sklearn', got {protocol!r}")


def _paper_probe(train_x, train_y, test_x, classes, *, seed, lr, steps, average_last) -> np.ndarray:
    import torch

    if not 1 <= average_last <= steps:
        raise ValueError(f"average_last={average_last} must be between 1 and steps={steps}")
    xtr = torch.as_tensor(np.asarray(train_x, dtype=np.float32))
    xte = torch.as_tensor(np.asarray(test_x, dtype=np.float32))
    ytr = torch.as_tensor(np.searchsorted(classes, train_y), dtype=torch.long)
    # A private RNG stream: the same seed gives the same initial layer, and the caller's
    # global torch RNG is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = torch.nn.Linear(xtr.shape[1], len(classes))
    optimizer = torch.optim.Adam(clf.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    predictions = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(clf(xtr), ytr)
        loss.backward()
        optimizer.step()
        if step >= steps - average_last:
            with torch.no_grad():
                predictions.append(classes[clf(xte).argmax(dim=1).numpy()])
    return np.stack(predictions)


def _sklearn_probe(train_x, train_y, test_x, *, seed) -> np.ndarray:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = np.bincount(np.unique(train_y, return_inverse=True)[1]).min()
    if smallest < 2:
        raise ValueError("the sklearn probe needs at least 2 training items per class for cross-validation")
    cv = StratifiedKFold(n_splits=int(min(5, smallest)), shuffle=True, random_state=seed)
    options = dict(Cs=10, cv=cv, scoring="neg_log_loss", max_iter=5000)
    # Spell out the defaults that scikit-learn >= 1.8 is changing, only where they exist.
    accepted = inspect.signature(LogisticRegressionCV).parameters
    if "l1_ratios" in accepted and "penalty" in accepted and accepted["penalty"].default == "deprecated":
        options["l1_ratios"] = (0.0,)
    if "use_legacy_attributes" in accepted:
        options["use_legacy_attributes"] = False
    model = make_pipeline(StandardScaler(), LogisticRegressionCV(**options))
    model.fit(np.asarray(train_x, dtype=np.float64), train_y)
    return model.predict(np.asarray(test_x, dtype=np.float64))


def knn_predictions(train_x, train_y, test_x, k: int = 5) -> np.ndarray:
    """Test predictions of ``KNeighborsClassifier(k, metric="cosine", weights="uniform")``."""
    from sklearn.neighbors import KNeighborsClassifier

    train_x = _as_matrix(train_x, "train_x")
    test_x = _as_matrix(test_x, "test_x")
    train_y = _as_labels(train_y, "train_y", len(train_x))
    if len(np.unique(train_y)) < 2:
        raise ValueError("train_y holds a single class: a classifier needs at least two")
    if not 1 <= k <= len(train_x):
        raise ValueError(f"k={k} must be between 1 and the {len(train_x)} training items")
    knn = KNeighborsClassifier(n_neighbors=k, weights="uniform", metric="cosine")
    with single_thread():
        return knn.fit(train_x, train_y).predict(test_x)


# ------------------------------------------------------------------- public metrics


def linear_probe_f1(
    train_x, train_y, test_x, test_y, *, protocol: str = "paper", average: str = "binary", seed: int = 0
) -> float:
    """F1 of a linear probe trained on ``train_x`` and scored on ``test_x``.

    ``protocol="paper"``: the authors' probe (module docstring), the mean F1 over the
    last 10 of 100 Adam steps; ``"sklearn"``: cross-validated logistic regression.
    ``average="binary"`` scores FR-II (label 1) as positive; ``"macro"`` averages classes.
    Deterministic for a given ``seed``.
    """
    train_x, train_y, test_x, test_y, classes = _check_probe_inputs(train_x, train_y, test_x, test_y, average)
    preds = probe_predictions(train_x, train_y, test_x, protocol=protocol, seed=seed)
    return float(f1_scores(test_y, preds, classes, average).mean())


def knn_f1(train_x, train_y, test_x, test_y, k: int = 5) -> float:
    """Macro F1 of a k-nearest-neighbour classifier (cosine distance, uniform weights)."""
    train_x, train_y, test_x, test_y, classes = _check_probe_inputs(train_x, train_y, test_x, test_y, "macro")
    return float(f1_scores(test_y, knn_predictions(train_x, train_y, test_x, k=k), classes, "macro"))


def pair_cosines(a, b) -> np.ndarray:
    """cos(a_i, b_i) for every row pair, shape (n,)."""
    a, b = _check_pairs(a, b)
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=1)


def mean_cosine(a, b) -> float:
    """The mean cosine similarity of paired rows ``a_i``, ``b_i``."""
    return float(pair_cosines(a, b).mean())


def similarity_matrix(img, txt) -> np.ndarray:
    """Cosine similarities S[i, j] = cos(img_i, txt_j) in float64."""
    img, txt = _check_pairs(img, txt)
    return l2_normalize(img) @ l2_normalize(txt).T


def pair_ranks(sim: np.ndarray, tol: float = TIE_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Rank of the paired item for each query, ties counted against it.

    rank_i2t[i] = #{j : S[i, j] >= S[i, i] - tol} (so 1 is a clean first place);
    rank_t2i[j] = #{i : S[i, j] >= S[j, j] - tol}.
    """
    diag = np.diag(sim)
    return (sim >= diag[:, None] - tol).sum(axis=1), (sim >= diag[None, :] - tol).sum(axis=0)


def retrieval_hits(img, txt, k: int = 1) -> dict[str, np.ndarray]:
    """Per-query Recall@k hit indicators, {"i2t": (n,), "t2i": (n,)} (floats 0/1)."""
    sim = similarity_matrix(img, txt)
    if not 1 <= int(k) <= len(sim):
        raise ValueError(f"k={k} must be between 1 and the {len(sim)} items")
    r_i2t, r_t2i = pair_ranks(sim)
    return {"i2t": (r_i2t <= k).astype(float), "t2i": (r_t2i <= k).astype(float)}


def class_hits(img, txt, labels, tol: float = TIE_TOL) -> dict[str, np.ndarray]:
    """Per-query class-level Recall@1 hits: every top-scoring item shares the query's class."""
    sim = similarity_matrix(img, txt)
    labels = _as_labels(labels, "labels", len(sim))
    other = labels[:, None] != labels[None, :]  # other[i, j]: item i and j differ in class
    top_i2t = sim >= sim.max(axis=1, keepdims=True) - tol
    top_t2i = sim >= sim.max(axis=0, keepdims=True) - tol
    return {
        "i2t": (~np.any(top_i2t & other, axis=1)).astype(float),
        "t2i": (~np.any(top_t2i & other, axis=0)).astype(float),
    }


def _combine(hits: Mapping[str, np.ndarray], direction: str) -> float:
    _check_direction(direction)
    if direction == "both":
        return float((hits["i2t"].mean() + hits["t2i"].mean()) / 2)
    return float(hits[direction].mean())


def recall_at_k(img, txt, k: int = 1, direction: str = "both") -> float:
    """Recall@k of paired retrieval (row i of ``img`` pairs with row i of ``txt``).

    ``"i2t"``: images query texts; ``"t2i"``: texts query images; ``"both"``: their mean.
    Ties count against the pair (module docstring).
    """
    _check_direction(direction)
    return _combine(retrieval_hits(img, txt, k), direction)


def class_recall_at_1(img, txt, labels, direction: str = "both") -> float:
    """Class-level Recall@1: the top retrieved item has the query's class (ties: all must)."""
    _check_direction(direction)
    return _combine(class_hits(img, txt, labels), direction)


# -------------------------------------------------------------------------- bootstrap


def bootstrap_indices(n: int, B: int, seed: int = 0) -> np.ndarray:
    """(B, n) resampled item indices, a function of (n, B, seed) only, so every metric and
    every model evaluated with the same arguments shares the same resamples."""
    if n < 1:
        raise ValueError("cannot bootstrap an empty set")
    return np.random.default_rng(seed).integers(0, n, size=(int(B), n))


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval; (nan, nan) without replicates."""
    replicates = np.asarray(replicates, dtype=float)
    if replicates.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _f1_replicates(y_true, preds, classes, average, idx) -> np.ndarray:
    # preds (S, n) -> (S, B, n) -> F1 per step and replicate -> mean over steps: (B,)
    return f1_scores(y_true[idx][None], preds[:, idx], classes, average).mean(axis=0)


def _mean_replicates(values, idx) -> np.ndarray:
    return values[idx].mean(axis=1)


# ------------------------------------------------------------------------ evaluation

BUNDLE_KEYS = ("image_train", "image_test", "labels_train", "labels_test")


def load_bundle(path: str | Path) -> dict[str, np.ndarray]:
    """An embedding bundle (``.npz``) as a dict; uses ``radioalign.embed.load_bundle`` when present."""
    try:
        from .embed import load_bundle as _load
    except ImportError:
        _load = None
    if _load is not None:
        return dict(_load(path))
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def caption_sets(bundle: Mapping[str, np.ndarray]) -> list[str]:
    """Caption sets with both splits in a bundle, e.g. ["catalog", "control", "curated"]."""
    found = {k[len("text_") : -len("_test")] for k in bundle if k.startswith("text_") and k.endswith("_test")}
    return sorted(c for c in found if f"text_{c}_train" in bundle)


def _bundle_parts(bundle, captions: str):
    bundle = load_bundle(bundle) if isinstance(bundle, (str, Path)) else bundle
    missing = [k for k in (*BUNDLE_KEYS, f"text_{captions}_train", f"text_{captions}_test") if k not in bundle]
    if missing:
        raise KeyError(f"bundle lacks {missing}; caption sets present: {caption_sets(bundle)}")
    return bundle


def _row(metric, modality, value, replicates, n, keep):
    lo, hi = percentile_interval(replicates)
    row = dict(metric=metric, modality=modality, value=float(value), low=lo, high=hi, n=int(n), B=len(replicates))
    if keep:
        row["replicates"] = np.asarray(replicates, dtype=float)
    return row


def evaluate_classification(
    bundle,
    captions: str = "curated",
    *,
    protocols: Sequence[str] = ("paper", "sklearn"),
    k: int = 5,
    bootstrap: int = 1000,
    seed: int = 0,
    authors_text_probe_defect: bool = True,
    concat_l2: bool = True,
    return_replicates: bool = False,
) -> list[dict]:
    """Linear probes and KNN on image, text and ``[text, image]`` features of one bundle.

    Rows: metric ``linear_probe_f1`` (paper protocol, binary F1), ``linear_probe_f1_sklearn``
    and ``knn_f1`` (macro F1); modality ``image``, ``text``, ``concat`` and, with
    ``concat_l2``, ``concat_l2``. With ``authors_text_probe_defect`` an extra
    ``linear_probe_f1`` row with modality ``text_authors`` reproduces the authors' "text"
    probe, which their code trained and tested on image features (a second probe draw,
    seed + 1, as their code initialised a second layer).
    """
    b = _bundle_parts(bundle, captions)
    ytr, yte = np.asarray(b["labels_train"]), np.asarray(b["labels_test"])
    feats = {
        "image": (b["image_train"], b["image_test"]),
        "text": (b[f"text_{captions}_train"], b[f"text_{captions}_test"]),
    }
    feats["concat"] = tuple(concat_features(t, i) for t, i in zip(feats["text"], feats["image"]))
    if concat_l2:
        feats["concat_l2"] = tuple(concat_features(t, i, normalize=True) for t, i in zip(feats["text"], feats["image"]))
    n = len(yte)
    idx = bootstrap_indices(n, bootstrap, seed)
    rows = []
    for modality, (xtr, xte) in feats.items():
        xtr, ytr_, xte, yte_, classes = _check_probe_inputs(xtr, ytr, xte, yte, "binary")
        for protocol in protocols:
            preds = probe_predictions(xtr, ytr_, xte, protocol=protocol, seed=seed)
            metric = "linear_probe_f1" if protocol == "paper" else f"linear_probe_f1_{protocol}"
            value = f1_scores(yte_, preds, classes, "binary").mean()
            rows.append(_row(metric, modality, value, _f1_replicates(yte_, preds, classes, "binary", idx), n, return_replicates))
            if modality == "image" and protocol == "paper" and authors_text_probe_defect:
                preds = probe_predictions(xtr, ytr_, xte, protocol="paper", seed=seed + 1)
                value = f1_scores(yte_, preds, classes, "binary").mean()
                reps = _f1_replicates(yte_, preds, classes, "binary", idx)
                rows.append(_row("linear_probe_f1", "text_authors", value, reps, n, return_replicates))
        preds = knn_predictions(xtr, ytr_, xte, k=k)[None, :]
        value = f1_scores(yte_, preds, classes, "macro").mean()
        rows.append(_row("knn_f1", modality, value, _f1_replicates(yte_, preds, classes, "macro", idx), n, return_replicates))
    return rows


def evaluate_retrieval(
    bundle,
    captions: str = "curated",
    *,
    ks: Sequence[int] = (1, 5),
    bootstrap: int = 1000,
    seed: int = 0,
    return_replicates: bool = False,
) -> list[dict]:
    """Mean paired cosine, Recall@k and class-level Recall@1 on the test split of one bundle.

    Retrieval rows come in modality ``image-text`` (the mean of both directions, as the
    study reports), ``i2t`` and ``t2i``. Intervals resample the per-query hits computed
    on the full test gallery (module docstring).
    """
    b = _bundle_parts(bundle, captions)
    img, txt, labels = b["image_test"], b[f"text_{captions}_test"], np.asarray(b["labels_test"])
    n = len(img)
    idx = bootstrap_indices(n, bootstrap, seed)
    cos = pair_cosines(img, txt)
    rows = [_row("mean_cosine", "image-text", cos.mean(), _mean_replicates(cos, idx), n, return_replicates)]
    per_metric = {f"recall@{k}": retrieval_hits(img, txt, k) for k in ks if k <= n}
    per_metric["class_recall@1"] = class_hits(img, txt, labels)
    for metric, hits in per_metric.items():
        both = (hits["i2t"] + hits["t2i"]) / 2  # the mean of two means is the mean of per-item averages
        rows.append(_row(metric, "image-text", both.mean(), _mean_replicates(both, idx), n, return_replicates))
        for direction in ("i2t", "t2i"):
            h = hits[direction]
            rows.append(_row(metric, direction, h.mean(), _mean_replicates(h, idx), n, return_replicates))
    return rows


ROW_COLUMNS = ["model", "tag", "captions", "metric", "modality", "value", "low", "high", "n", "B"]


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
    return_replicates: bool = False,
) -> pd.DataFrame:
    """Every metric of one bundle with one caption set, as long-format rows.

    Columns: model, tag, captions, metric, modality, value, low, high, n, B
    (plus ``replicates`` with ``return_replicates``). ``model`` defaults to the part of
    ``tag`` before ``-`` (``frozen``, ``vision``, ``text``, ``full``).
    """
    if isinstance(bundle, (str, Path)):
        tag = tag or Path(bundle).stem
        bundle = load_bundle(bundle)
    tag = tag or "unnamed"
    model = model or tag.split("-")[0]
    rows = evaluate_classification(
        bundle,
        captions,
        protocols=protocols,
        bootstrap=bootstrap,
        seed=seed,
        authors_text_probe_defect=authors_text_probe_defect,
        return_replicates=return_replicates,
    )
    rows += evaluate_retrieval(bundle, captions, bootstrap=bootstrap, seed=seed, return_replicates=return_replicates)
    frame = pd.DataFrame(rows)
    frame.insert(0, "captions", captions)
    frame.insert(0, "tag", tag)
    frame.insert(0, "model", model)
    columns = ROW_COLUMNS + (["replicates"] if return_replicates else [])
    return frame[columns]


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
