"""Classification metrics on embeddings: linear probes, KNN, F1, with bootstrap intervals.

Definitions (REFERENCE §4; the authors' ``finetune_image_text.py`` at commit ``ceb190b``):

* **Linear probe F1** (``protocol="paper"``): one linear layer ``D -> n_classes`` with
  cross-entropy (two outputs for FR-I/FR-II, as the authors' code), full-batch Adam
  (betas 0.9/0.999, eps 1e-8), lr 0.01, 100 steps on all training features; after each
  of the last 10 steps the test set is predicted (arg-max) and scored; the reported F1
  is the mean of these 10 scores. Binary F1 has FR-II (label 1) as the positive class.
  Features go in as given: the authors' code fed the raw (unnormalised) pooled SigLIP
  features, and so do we. The authors drew a ``torch.nn.Linear`` from torch's global
  generator, never seeded for the probe (the deviation registry's "Linear-probe seeding");
  here the layer is the one ``torch.manual_seed(seed); torch.nn.Linear`` draws, through a
  numpy port in float32 (torch's MT19937 stream and its uniform transform, see
  :func:`torch_linear_init`) that follows torch's Adam update, so its predictions match
  torch's (tests compare them) without importing torch.
* ``protocol="sklearn"``: a standard probe, standardised features and a logistic
  regression whose L2 strength is chosen by stratified 5-fold cross-validation (log
  loss) on the training set.
* **KNN F1**: scikit-learn's ``KNeighborsClassifier(k=5, metric="cosine",
  weights="uniform")`` fit on the training set, macro F1 on the test set.
* **F1**: ``binary`` is the F1 of class 1; ``macro`` the unweighted mean over classes; a
  class with no true and no predicted item scores 0 (scikit-learn's ``zero_division=0``).
* **Concatenated features**: ``[text, image]`` (the authors' order) of the raw
  embeddings; ``concat_features(..., normalize=True)`` L2-normalises each part first and
  scales by 1/sqrt(2), so both modalities weigh the same and rows have unit norm.

Bootstrap (:func:`evaluate_classification`): probes and KNN are trained once on the
full training set; a replicate is the F1 of their test predictions on one resample of
the test items (:mod:`.bootstrap`), for the paper probe the mean over its 10 steps.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from .arrays import as_labels, as_matrix, l2_normalize
from .bootstrap import bootstrap_indices, interval_row

PAPER_PROBE = dict(lr=0.01, steps=100, average_last=10)
ADAM = dict(beta1=0.9, beta2=0.999, eps=1e-8)  # torch.optim.Adam's defaults, as the authors ran it


def check_probe_inputs(train_x, train_y, test_x, test_y, average):
    """The probe's arrays checked and converted: ``(train_x, train_y, test_x, test_y, classes)``."""
    train_x = as_matrix(train_x, "train_x")
    test_x = as_matrix(test_x, "test_x")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has {train_x.shape[1]} features but test_x has {test_x.shape[1]}")
    train_y = as_labels(train_y, "train_y", len(train_x))
    test_y = as_labels(test_y, "test_y", len(test_x))
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(f"train_y holds a single class ({classes.tolist()}): a classifier needs at least two")
    if average not in ("binary", "macro"):
        raise ValueError(f"average must be 'binary' or 'macro', got {average!r}")
    if average == "binary" and not set(np.unique(np.concatenate([train_y, test_y])).tolist()) <= {0, 1}:
        raise ValueError("average='binary' needs labels in {0, 1} (1 = FR-II is the positive class)")
    return train_x, train_y, test_x, test_y, classes


def concat_features(text, image, normalize: bool = False) -> np.ndarray:
    """``[text, image]`` per row, the authors' order.

    ``normalize=True`` L2-normalises each part and divides by sqrt(2): both modalities
    then carry equal weight and each row has unit norm.
    """
    text, image = as_matrix(text, "text"), as_matrix(image, "image")
    if len(text) != len(image):
        raise ValueError(f"text has {len(text)} rows but image has {len(image)}")
    if normalize:
        return np.concatenate([l2_normalize(text), l2_normalize(image)], axis=1) / np.sqrt(2.0)
    return np.concatenate([text, image], axis=1)


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


def f1_replicates(y_true, preds, classes, average, idx) -> np.ndarray:
    """Bootstrap replicates of the F1 of fixed predictions ``preds`` (S, n): for each
    resample of ``idx`` (B, n), the F1 of each of the S prediction sets, averaged: (B,)."""
    return f1_scores(np.asarray(y_true)[idx][None], np.asarray(preds)[:, idx], classes, average).mean(axis=0)


# ---------------------------------------------------------------------- predictions


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the BLAS and OpenMP libraries on one thread for a while.

    The probes are small (a few hundred items, at most ~1500 features): thread hand-offs
    cost more than they save, and on a shared 2-core machine they made a probe ~10x slower.
    One thread also fixes the order of floating-point reductions, so results repeat.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def probe_predictions(train_x, train_y, test_x, *, protocol: str = "paper", seed: int = 0, **paper_options) -> np.ndarray:
    """Test-set predictions of a linear probe: shape (S, n_test).

    ``paper``: S = 10, the predictions after each of the last 10 of 100 full-batch Adam
    steps (see the module docstring); ``sklearn``: S = 1. ``paper_options`` override
    ``lr``, ``steps`` and ``average_last``.
    """
    train_x = as_matrix(train_x, "train_x")
    test_x = as_matrix(test_x, "test_x")
    train_y = as_labels(train_y, "train_y", len(train_x))
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


def torch_linear_init(n_in: int, n_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The float32 ``(weight (n_out, n_in), bias (n_out,))`` that ``torch.manual_seed(seed);
    torch.nn.Linear(n_in, n_out)`` draws on the CPU, computed without torch.

    torch seeds a standard MT19937 with ``seed mod 2**32`` (numpy's legacy seeding is the
    same), turns each 32-bit output into ``(u & (2**24 - 1)) / 2**24`` and maps it to
    ``[-bound, bound)`` in double before rounding to float32. Weight (row-major) then bias
    use bound 1/sqrt(n_in): ``kaiming_uniform_(a=sqrt(5))`` works out to that.
    """
    bits = np.random.MT19937()
    bits.state = np.random.RandomState(int(seed) % 2**32).get_state(legacy=False)
    u = (bits.random_raw(n_out * n_in + n_out) & np.uint64((1 << 24) - 1)).astype(np.float64) / (1 << 24)
    # Python floats, in the order torch.nn.init computes them, so the bounds round alike.
    a = math.sqrt(5)
    weight_bound = math.sqrt(3.0) * (math.sqrt(2.0 / (1 + a**2)) / math.sqrt(n_in))
    bias_bound = 1 / math.sqrt(n_in)

    def uniform(x, bound):
        lo, hi = np.float32(-bound), np.float32(bound)
        return (x * np.float64(hi - lo) + np.float64(lo)).astype(np.float32)

    return uniform(u[: n_out * n_in], weight_bound).reshape(n_out, n_in), uniform(u[n_out * n_in :], bias_bound)


def _paper_probe(train_x, train_y, test_x, classes, *, seed, lr, steps, average_last) -> np.ndarray:
    if not 1 <= average_last <= steps:
        raise ValueError(f"average_last={average_last} must be between 1 and steps={steps}")
    f32 = np.float32
    xtr, xte = np.asarray(train_x, dtype=f32), np.asarray(test_x, dtype=f32)
    n = len(xtr)
    weight, bias = torch_linear_init(xtr.shape[1], len(classes), seed)
    target = np.zeros((n, len(classes)), dtype=f32)
    target[np.arange(n), np.searchsorted(classes, train_y)] = 1
    b1, b2, eps = ADAM["beta1"], ADAM["beta2"], ADAM["eps"]
    params = (weight, bias)
    first, second = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    predictions = []
    for step in range(1, steps + 1):
        # Mean cross-entropy of softmax(x W^T + b): its gradient in the logits is (p - y) / n.
        logits = xtr @ weight.T + bias
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - target) / f32(n)
        grads = (g.T @ xtr, g.sum(axis=0))
        # Adam as torch.optim.Adam computes it (single-tensor path, float32 state).
        for param, grad, m, v in zip(params, grads, first, second):
            m += f32(1 - b1) * (grad - m)
            v *= f32(b2)
            v += f32(1 - b2) * grad * grad
            denom = np.sqrt(v) / f32((1 - b2**step) ** 0.5) + f32(eps)
            param -= f32(lr / (1 - b1**step)) * (m / denom)
        if step > steps - average_last:
            predictions.append(classes[(xte @ weight.T + bias).argmax(axis=1)])
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

    train_x = as_matrix(train_x, "train_x")
    test_x = as_matrix(test_x, "test_x")
    train_y = as_labels(train_y, "train_y", len(train_x))
    if len(np.unique(train_y)) < 2:
        raise ValueError("train_y holds a single class: a classifier needs at least two")
    if not 1 <= k <= len(train_x):
        raise ValueError(f"k={k} must be between 1 and the {len(train_x)} training items")
    knn = KNeighborsClassifier(n_neighbors=k, weights="uniform", metric="cosine")
    with single_thread():
        return knn.fit(train_x, train_y).predict(test_x)


# ------------------------------------------------------------------- public metrics


def linear_probe_f1(
    train_x, train_y, test_x, test_y, *, protocol: str = "paper", average: str = "binary", seed: int = 0, **paper_options
) -> float:
    """F1 of a linear probe trained on ``train_x`` and scored on ``test_x``.

    ``protocol="paper"``: the authors' probe (module docstring), the mean F1 over the
    last 10 of 100 Adam steps; ``"sklearn"``: cross-validated logistic regression.
    ``average="binary"`` scores FR-II (label 1) as positive; ``"macro"`` averages classes.
    Deterministic for a given ``seed``. ``paper_options`` (``lr``, ``steps``,
    ``average_last``) change the paper probe, e.g. ``lr=1.0`` as the authors' log ran it.
    """
    train_x, train_y, test_x, test_y, classes = check_probe_inputs(train_x, train_y, test_x, test_y, average)
    preds = probe_predictions(train_x, train_y, test_x, protocol=protocol, seed=seed, **paper_options)
    return float(f1_scores(test_y, preds, classes, average).mean())


def knn_f1(train_x, train_y, test_x, test_y, k: int = 5) -> float:
    """Macro F1 of a k-nearest-neighbour classifier (cosine distance, uniform weights)."""
    train_x, train_y, test_x, test_y, classes = check_probe_inputs(train_x, train_y, test_x, test_y, "macro")
    return float(f1_scores(test_y, knn_predictions(train_x, train_y, test_x, k=k), classes, "macro"))


def probe_f1_replicates(
    train_x, train_y, test_x, test_y, idx, *, protocol: str = "paper", average: str = "binary", seed: int = 0,
    **paper_options,
) -> tuple[float, np.ndarray]:
    """:func:`linear_probe_f1` and its bootstrap replicates over the resamples ``idx``
    (B, n_test): the probe is trained once; only its test predictions are resampled.
    ``paper_options`` (``lr``, ``steps``, ``average_last``) as in :func:`probe_predictions`."""
    train_x, train_y, test_x, test_y, classes = check_probe_inputs(train_x, train_y, test_x, test_y, average)
    preds = probe_predictions(train_x, train_y, test_x, protocol=protocol, seed=seed, **paper_options)
    return float(f1_scores(test_y, preds, classes, average).mean()), f1_replicates(test_y, preds, classes, average, idx)


def knn_f1_replicates(train_x, train_y, test_x, test_y, idx, k: int = 5) -> tuple[float, np.ndarray]:
    """:func:`knn_f1` and its bootstrap replicates over the resamples ``idx`` (B, n_test)."""
    train_x, train_y, test_x, test_y, classes = check_probe_inputs(train_x, train_y, test_x, test_y, "macro")
    preds = knn_predictions(train_x, train_y, test_x, k=k)[None, :]
    return float(f1_scores(test_y, preds, classes, "macro").mean()), f1_replicates(test_y, preds, classes, "macro", idx)


def evaluate_classification(
    features: Mapping[str, tuple],
    train_y,
    test_y,
    *,
    protocols: Sequence[str] = ("paper", "sklearn"),
    k: int = 5,
    bootstrap: int = 1000,
    seed: int = 0,
    return_replicates: bool = False,
) -> list[dict]:
    """Linear probes and KNN on each feature set, with percentile bootstrap intervals.

    ``features`` maps a modality name to ``(train_x, test_x)`` (e.g. ``image``, ``text``,
    ``concat``); labels are shared. Per modality, in order: one row per protocol, metric
    ``linear_probe_f1`` (paper protocol) or ``linear_probe_f1_<protocol>`` (binary F1,
    FR-II positive), then ``knn_f1`` (macro F1, ``k`` neighbours). Rows are
    :func:`~radioalign.metrics.bootstrap.interval_row` dicts; the ``B = bootstrap``
    resamples of the test items come from ``bootstrap_indices(n_test, B, seed)`` and the
    probes use ``seed``.
    """
    test_y = np.asarray(test_y)
    n = len(test_y)
    idx = bootstrap_indices(n, bootstrap, seed)
    rows = []
    for modality, (xtr, xte) in features.items():
        check_probe_inputs(xtr, train_y, xte, test_y, "binary")
        for protocol in protocols:
            metric = "linear_probe_f1" if protocol == "paper" else f"linear_probe_f1_{protocol}"
            value, reps = probe_f1_replicates(xtr, train_y, xte, test_y, idx, protocol=protocol, seed=seed)
            rows.append(interval_row(metric, modality, value, reps, n, return_replicates))
        value, reps = knn_f1_replicates(xtr, train_y, xte, test_y, idx, k=k)
        rows.append(interval_row("knn_f1", modality, value, reps, n, return_replicates))
    return rows
