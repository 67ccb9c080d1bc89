"""Calibrated probabilities and conformal prediction sets: temperature/Platt scaling, sets that abstain.

Pure arrays (numpy, scipy, scikit-learn's folds): the probe (:mod:`.probe`) and notebook
11's experiment (``radioalign.study.labelling_curves``) use them on logits and labels.

*Calibration* (:class:`LogitCalibrator`): ``p = softmax(a * z + beta)``, ``a = 1/T`` a
temperature and ``beta`` per-class biases (Platt scaling for two classes), fitted by
penalised likelihood (a standard normal prior on ``log a`` and on each ``beta_c``,
so a handful of labels moves it gently). The probe is calibrated on its out-of-fold
logits (temperature only: it has its own intercepts); zero-shot (SigLIP's sigmoids are
one probability per pair, neither a distribution nor calibrated) with the biases too,
its uncalibrated probabilities being ``softmax(z)``.

*Conformal sets* (:func:`conformal_thresholds`, :func:`conformal_sets`): the score of a
labelled source is ``1 - p_y`` (its out-of-fold calibrated probability of its true
class); a class is in a source's set when ``1 - p_c <= q``, ``q`` the
``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` scores (infinite, so every class, when
that exceeds ``n``). Class-conditional (Mondrian: ``q_c`` from the scores of class ``c``)
when every class has enough labels for a finite ``q_c`` (9 at alpha 0.1, 19 at 0.05),
else marginal. When the scores come from fold models that differ from the final one, as
in cross-conformal prediction, the guarantee is approximate, so the coverage and mean
set size are also measured on the labelled set by cross-validation
(:func:`cross_validated_coverage`). Sets are written as their classes joined by ``|``
(:func:`set_labels`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator

from .labels import SEPARATOR, LabellingError

FOLDS = 5


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(proba, y) -> float:
    """Mean negative log-likelihood of class indices ``y`` under ``proba`` (N, K)."""
    p = np.asarray(proba, dtype=np.float64)[np.arange(len(y)), np.asarray(y)]
    return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))


class LogitCalibrator(BaseEstimator):
    """Temperature (and, with ``bias``, Platt-style per-class bias) scaling of logits:
    ``softmax(a * z + beta)``, fitted by maximum likelihood with ``penalty *
    ((log a)^2 + |beta|^2) / 2`` added (a standard normal prior when ``penalty`` is 1)."""

    def __init__(self, bias: bool = True, penalty: float = 1.0):
        self.bias = bias
        self.penalty = penalty

    def fit(self, logits, y):
        from scipy.optimize import minimize

        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        n, k = z.shape
        onehot = np.eye(k)[y]

        def objective(theta):
            a, beta = np.exp(theta[0]), (theta[1:] if self.bias else np.zeros(k))
            p = softmax(a * z + beta)
            loss = -np.sum(onehot * np.log(np.clip(p, 1e-300, None))) + self.penalty * 0.5 * np.sum(theta**2)
            resid = p - onehot
            grad = [a * np.sum(resid * z)] + (list(resid.sum(axis=0)) if self.bias else [])
            return loss, np.asarray(grad) + self.penalty * theta

        start = np.zeros(1 + (k if self.bias else 0))
        theta = minimize(objective, start, jac=True, method="L-BFGS-B").x
        self.log_scale_ = float(theta[0])
        self.bias_ = theta[1:] if self.bias else np.zeros(k)
        return self

    @property
    def temperature_(self) -> float:
        return float(np.exp(-self.log_scale_))

    def predict_proba(self, logits) -> np.ndarray:
        return softmax(np.exp(self.log_scale_) * np.asarray(logits, dtype=np.float64) + self.bias_)


# ---------------------------------------------------------------- conformal


def conformal_quantile(scores, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` scores; ``inf`` when that
    rank exceeds ``n`` (too few scores for level ``alpha``: every class enters)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil(round((len(scores) + 1) * (1.0 - alpha), 9))
    return float(scores[rank - 1]) if 1 <= rank <= len(scores) else math.inf


def mondrian_minimum(alpha: float) -> int:
    """The fewest scores per class for which a class's threshold is finite at ``alpha``."""
    n = 1
    while conformal_quantile(np.zeros(n), alpha) == math.inf:
        n += 1
    return n


def conformal_thresholds(proba, y, alpha: float = 0.1, mondrian="auto") -> tuple[np.ndarray, bool]:
    """``(thresholds (K,), mondrian used)`` from labelled probabilities ``proba`` (N, K) and
    class indices ``y``: per class (``mondrian=True``, or ``"auto"`` when every class has
    :func:`mondrian_minimum` labels) or one for all."""
    if not 0.0 < alpha < 1.0:
        raise LabellingError(f"alpha must lie strictly between 0 and 1, not {alpha}")
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.int64)
    k = proba.shape[1]
    scores = 1.0 - proba[np.arange(len(y)), y]
    counts = np.bincount(y, minlength=k)
    if mondrian == "auto":
        mondrian = bool(len(y)) and bool(counts.min() >= mondrian_minimum(alpha))
    if mondrian:
        return np.array([conformal_quantile(scores[y == c], alpha) for c in range(k)]), True
    return np.full(k, conformal_quantile(scores, alpha)), False


def conformal_sets(proba, thresholds) -> np.ndarray:
    """Membership ``(N, K)``: class ``c`` is in the set when ``1 - p_c <= thresholds[c]``;
    the most probable class always is (no empty sets: this can only raise the coverage)."""
    proba = np.asarray(proba, dtype=np.float64)
    sets = (1.0 - proba) <= np.asarray(thresholds)[None, :] + 1e-12
    if proba.size:
        sets[np.arange(len(proba)), proba.argmax(axis=1)] = True
    return sets


def set_labels(sets: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Each set as its classes joined by ``|``."""
    return [SEPARATOR.join(c for c, inside in zip(classes, row) if inside) for row in sets]


def cross_validated_coverage(proba, y, alpha: float = 0.1, *, folds: int = FOLDS, seed: int = 0, mondrian="auto") -> dict:
    """Coverage and mean set size of conformal sets measured on labelled data: each fold's
    sets use thresholds from the other folds' scores. ``nan`` with fewer than 2 labels."""
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if len(y) < 2:
        return {"coverage": math.nan, "mean_set_size": math.nan, "n": int(len(y))}
    covered, sizes = np.zeros(len(y), bool), np.zeros(len(y))
    for train, test in _splits(y, min(folds, len(y)), seed, stratify=False):
        thresholds, _ = conformal_thresholds(proba[train], y[train], alpha, mondrian)
        sets = conformal_sets(proba[test], thresholds)
        covered[test], sizes[test] = sets[np.arange(len(test)), y[test]], sets.sum(axis=1)
    return {"coverage": float(covered.mean()), "mean_set_size": float(sizes.mean()), "n": int(len(y))}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) binomial interval of a proportion ``k / n``."""
    from scipy.stats import beta

    if n <= 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    low = 0.0 if k <= 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def _splits(y, folds: int, seed: int, stratify: bool = True):
    from sklearn.model_selection import KFold, StratifiedKFold

    if stratify:
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))
