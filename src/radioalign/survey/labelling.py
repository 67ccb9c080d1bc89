"""Labelling a store: people's labels, a probe on the stored vectors, sets that abstain, suggestions.

Labels from people (or a catalogue), a probe on the stored embeddings, calibrated
predictions with conformal sets that say "I don't know", and the next sources worth
labelling: for any survey store, not only MiraBest.

Tables (created in the store on first write, beside ``sources`` and the zero-shot ``labels``):

``user_labels``        one row per labelled source: ``id``, ``class`` (a free string; a
                       prompt set's classes are offered first), ``who``, ``origin``
                       (``user`` | ``import``) and ``created_at``. Labelling a source again
                       replaces its row; :func:`remove_labels` deletes it.
``probe_predictions``  one row per source and model: ``id``, ``model`` (``probe`` |
                       ``zeroshot``), ``predicted`` (the class; null where the run abstained),
                       ``best`` (the most probable class), ``score`` (its calibrated
                       probability), ``probabilities`` (JSON ``{class: calibrated p}``),
                       ``prediction_set`` (the conformal set, classes joined by ``|``, e.g.
                       ``FR-I|FR-II``), ``alpha``,
                       ``abstain`` (whether the run abstained on open sets) and ``created_at``.
                       A run replaces the rows of the model it used.

Definitions (``X`` the L2-normalised image vectors, ``K`` classes):

*Prior* (:class:`Prior`): the zero-shot text prototypes. Class ``c``'s zero-shot logit is
SigLIP's ``z_c = s * cos(x, t_c) + b`` (``t_c`` the prompt ensemble of
``radioalign.survey.zeroshot``, ``s = exp(logit_scale)``, ``b = logit_bias``).

*Probe* (:class:`LabelProbe`, :func:`fit_probe`): a scikit-learn ``LogisticRegression``
(L2 penalty, ``class_weight="balanced"``) on the labelled sources' features
``[x, w * (z - mean_c z)]``: the image vector and, when a prior is given, its centred
zero-shot logits times ``prior_weight`` ``w`` (default 1) as extra features. With a pair
of labels the fit is close to a nearest-class-mean rule in that space, so the zero-shot
direction already counts; as labels grow the data decide how much it is worth. ``C``
is chosen from :data:`C_GRID` by stratified ``k``-fold cross-validation (``k = min(5,
smallest class)``; highest out-of-fold macro F1, ties to lower log-loss) when every
class has at least :data:`MIN_CV_LABELS` labels, else ``C =`` :data:`C_FEW`.
Fallbacks, each with a message in ``fallback_`` (never an exception when a prior
exists): no labels, or labels of one class only (a single label included), predict
zero-shot; without a prior these raise :class:`LabellingError`.

*Calibration* (:class:`LogitCalibrator`): ``p = softmax(a * z + beta)``, ``a = 1/T`` a
temperature and ``beta`` per-class biases (Platt scaling for two classes), fitted by
penalised likelihood (a standard normal prior on ``log a`` and on each ``beta_c``,
so a handful of labels moves it gently). The probe is calibrated on its out-of-fold
logits (temperature only: it has its own intercepts); zero-shot (SigLIP's sigmoids are
one probability per pair, neither a distribution nor calibrated) with the biases too,
its uncalibrated probabilities being ``softmax(z)``. The out-of-fold probabilities
``oof_proba_`` are cross-fitted: each fold's calibrator never saw the fold.

*Conformal sets* (:func:`conformal_thresholds`, :func:`conformal_sets`): the score of a
labelled source is ``1 - p_y`` (its out-of-fold calibrated probability of its true
class); a class is in a source's set when ``1 - p_c <= q``, ``q`` the
``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` scores (infinite, so every class, when
that exceeds ``n``). Class-conditional (Mondrian: ``q_c`` from the scores of class ``c``)
when every class has enough labels for a finite ``q_c`` (9 at alpha 0.1, 19 at 0.05),
else marginal. The fold models differ from the final one, as in cross-conformal
prediction: the guarantee is approximate, so the coverage and mean set size are also
measured on the labelled set by cross-validation (:meth:`LabelProbe.conformal_report`).
``abstain`` labels a source only when its set holds one class.

*Suggestions* (:func:`suggest_indices`, :func:`suggest`): uncertainty ``1 - (p_1 - p_2)``
(margin of the two most probable classes) or the entropy of the calibrated
probabilities; without labels, the cosine to a text query. Among the ``pool`` most
uncertain unlabelled sources (default ``3 n``) a batch is chosen greedily by max-min
cosine distance, starting from the most uncertain: no near-duplicates in one batch.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .store import SOURCES, Store, in_list, now, open_store, quote

USER_LABELS, PREDICTIONS = "user_labels", "probe_predictions"
ORIGINS = ("user", "import")
MODELS = ("probe", "zeroshot")
C_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
C_FEW = 10.0  # the probe's C when some class has fewer than MIN_CV_LABELS labels
MIN_CV_LABELS = 5
FOLDS = 5
SEPARATOR = "|"
ID_COLUMNS = ("id", "source_id")
NAME_COLUMNS = ("name", "source_name", "source", "object", "designation", "main_id")
CLASS_COLUMNS = ("class", "label", "classification", "type", "morphology", "fr_class")
_CHUNK = 500


class LabellingError(ValueError):
    """Labels or a request that cannot be used as given; the message says why."""


# ------------------------------------------------------------------- tables


def user_labels_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("class", pa.string()),
            pa.field("who", pa.string()),
            pa.field("origin", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def predictions_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("model", pa.string()),
            pa.field("predicted", pa.string()),
            pa.field("best", pa.string()),
            pa.field("score", pa.float32()),
            pa.field("probabilities", pa.string()),
            pa.field("prediction_set", pa.string()),
            pa.field("alpha", pa.float32()),
            pa.field("abstain", pa.bool_()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


# -------------------------------------------------------------------- prior


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Prior:
    """Zero-shot class prototypes: ``classes``, their L2-normalised text vectors
    ``vectors`` ``(C, D)``, and SigLIP's ``scale`` (``exp(logit_scale)``) and ``bias``."""

    classes: list[str]
    vectors: np.ndarray
    scale: float = 1.0
    bias: float = 0.0
    name: str = ""

    def __post_init__(self):
        self.classes = [str(c) for c in self.classes]
        self.vectors = _unit(self.vectors)
        if len(self.classes) != len(self.vectors) or len(set(self.classes)) != len(self.classes):
            raise LabellingError(f"a prior needs one vector per distinct class: {len(self.classes)} classes, {len(self.vectors)} vectors")

    @classmethod
    def from_prompts(cls, classes, text_vectors, prompt_classes, scale: float, bias: float, name: str = "") -> "Prior":
        """The prior of a prompt set from its prompts' embeddings: each class's vector is the
        normalised mean of its prompts' (``radioalign.survey.zeroshot.ensemble``)."""
        from .zeroshot import ensemble

        return cls(list(classes), ensemble(text_vectors, prompt_classes, len(classes)), float(scale), float(bias), name)

    def logits(self, X) -> np.ndarray:
        """Zero-shot logits ``(N, C)``: ``scale * cos(x, t_c) + bias``."""
        X = _unit(X)
        if X.shape[1] != self.vectors.shape[1]:
            raise LabellingError(f"the prior's vectors have {self.vectors.shape[1]} dimensions, the images {X.shape[1]}")
        return self.scale * X @ self.vectors.T + self.bias

    def probabilities(self, X) -> np.ndarray:
        """SigLIP's own sigmoid probabilities (one per class, not summing to 1)."""
        return 1.0 / (1.0 + np.exp(-self.logits(X)))


# -------------------------------------------------------------- calibration


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


# -------------------------------------------------------------------- probe


def macro_f1(y, pred, k: int) -> float:
    """Macro F1 over the ``k`` classes (a class never true nor predicted counts 0)."""
    y, pred = np.asarray(y), np.asarray(pred)
    scores = []
    for c in range(k):
        tp, fp, fn = np.sum((pred == c) & (y == c)), np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


def _logits_of(estimator, features) -> np.ndarray:
    d = estimator.decision_function(features)
    return np.column_stack([np.zeros_like(d), d]) if d.ndim == 1 else d


class LabelProbe(ClassifierMixin, BaseEstimator):
    """A calibrated, conformal linear probe on image vectors with a zero-shot prior
    (see the module's definitions). ``model="zeroshot"`` calibrates the prior alone.

    Fitted attributes: ``classes_``, ``model_`` (``probe`` | ``zeroshot``), ``estimator_``
    (the ``LogisticRegression``, None for zero-shot), ``C_``, ``calibrator_``,
    ``cv_macro_f1_`` (out-of-fold, None without cross-validation), ``oof_proba_`` and
    ``y_index_`` (the labelled sources' cross-fitted calibrated probabilities and class
    indices: the conformal scores), ``label_counts_``, ``fallback_`` (why a probe
    fell back to zero-shot, else None) and ``notes_``."""

    def __init__(self, prior: Prior | None = None, *, model: str = "probe", C: float | None = None, Cs=C_GRID,
                 prior_weight: float = 1.0, class_weight="balanced", folds: int = FOLDS, random_state: int = 0,
                 max_iter: int = 2000):  # fmt: skip
        self.prior = prior
        self.model = model
        self.C = C
        self.Cs = Cs
        self.prior_weight = prior_weight
        self.class_weight = class_weight
        self.folds = folds
        self.random_state = random_state
        self.max_iter = max_iter

    # -- fitting ------------------------------------------------------------

    def fit(self, X, y):
        if self.model not in MODELS:
            raise LabellingError(f"model must be one of {MODELS}, not {self.model!r}")
        X = _unit(np.asarray(X, dtype=np.float64).reshape(len(X), -1)) if len(X) else np.zeros((0, 1))
        y = np.asarray([str(v) for v in y], dtype=object)
        self.label_counts_ = dict(Counter(y.tolist()))
        self.n_labels_, self.notes_, self.fallback_ = len(y), [], None
        from threadpoolctl import threadpool_limits

        # Small problems: BLAS threads cost more than they save (10x slower on a busy 2-core machine).
        with threadpool_limits(limits=1):
            if self.model == "zeroshot":
                return self._fit_zero_shot(X, y)
            if len(self.label_counts_) < 2:
                return self._fall_back(X, y)
            return self._fit_probe(X, y)

    def _fall_back(self, X, y):
        counts = ", ".join(f"{c}: {n}" for c, n in self.label_counts_.items())
        why = "no labels yet" if not len(y) else f"only one class is labelled ({counts}); a probe needs two"
        if self.prior is None:
            raise LabellingError(f"cannot train a probe: {why}, and there is no prompt set to fall back on")
        self.fallback_ = f"{why}: the predictions are zero-shot ({self.prior.name or 'prompts'})"
        return self._fit_zero_shot(X, y)

    def _fit_zero_shot(self, X, y):
        if self.prior is None:
            raise LabellingError("zero-shot predictions need a prompt set (a prior)")
        self.model_, self.estimator_, self.C_, self.cv_macro_f1_ = "zeroshot", None, None, None
        self.classes_ = np.asarray(self.prior.classes, dtype=object)
        known = np.isin(y, self.classes_)
        if (~known).any():
            self.notes_.append(f"{int((~known).sum())} labels of classes without a prompt are not used by zero-shot")
        y_index = np.asarray([self.prior.classes.index(v) for v in y[known]], dtype=np.int64)
        logits = self.prior.logits(X[known]) if known.any() else np.zeros((0, len(self.classes_)))
        self.calibrator_, self.oof_proba_ = None, softmax(logits) if len(y_index) else None
        if len(set(y_index.tolist())) >= 2:
            self.calibrator_ = LogitCalibrator(bias=True).fit(logits, y_index)
            self.oof_proba_ = self._cross_fit(logits, y_index, bias=True)
            self.cv_macro_f1_ = macro_f1(y_index, self.oof_proba_.argmax(axis=1), len(self.classes_))
        elif len(y_index):
            self.notes_.append("labels of one class only: zero-shot stays uncalibrated")
        self.y_index_ = y_index
        return self

    def _cross_fit(self, logits, y_index, *, bias: bool, splits=None) -> np.ndarray:
        """Out-of-fold calibrated probabilities: each fold's calibrator is fitted on the others."""
        if splits is None:
            smallest = int(np.unique(y_index, return_counts=True)[1].min())
            stratify = smallest >= 2
            splits = _splits(y_index, min(self.folds, smallest if stratify else len(y_index)), self.random_state, stratify)
        out = np.zeros(logits.shape)
        for train, test in splits:
            out[test] = LogitCalibrator(bias=bias).fit(logits[train], y_index[train]).predict_proba(logits[test])
        return out

    def features(self, X) -> np.ndarray:
        """The probe's input: ``[x, prior_weight * centred zero-shot logits]``."""
        X = _unit(X)
        if self.prior is None or not self.prior_weight:
            return X
        z = self.prior.logits(X)
        return np.hstack([X, self.prior_weight * (z - z.mean(axis=1, keepdims=True))])

    def _fit_probe(self, X, y):
        from sklearn.linear_model import LogisticRegression

        prior_classes = self.prior.classes if self.prior is not None else []
        self.classes_ = np.asarray([c for c in prior_classes if c in self.label_counts_]
                                   + sorted(c for c in self.label_counts_ if c not in prior_classes), dtype=object)  # fmt: skip
        y_index = np.asarray([list(self.classes_).index(v) for v in y], dtype=np.int64)
        F, smallest = self.features(X), int(np.bincount(y_index).min())
        self.model_, self.y_index_, self.cv_macro_f1_ = "probe", y_index, None
        Cs = [float(self.C)] if self.C is not None else list(self.Cs) if smallest >= MIN_CV_LABELS else [C_FEW]
        self.C_, self.calibrator_, self.oof_proba_ = Cs[0], None, None
        if smallest >= 2:
            splits = _splits(y_index, min(self.folds, smallest), self.random_state)
            oof = self._out_of_fold(F, y_index, Cs, splits)
            best = self._choose(oof, y_index)
            self.C_ = Cs[best]
            self.calibrator_ = LogitCalibrator(bias=False).fit(oof[best], y_index)
            self.oof_proba_ = self._cross_fit(oof[best], y_index, bias=False, splits=splits)
            self.cv_macro_f1_ = macro_f1(y_index, oof[best].argmax(axis=1), len(self.classes_))
        else:
            self.notes_.append("a class has a single label: no cross-validation, calibration or conformal sets yet")
        self.estimator_ = LogisticRegression(C=self.C_, class_weight=self.class_weight, max_iter=self.max_iter,
                                             random_state=self.random_state).fit(F, y_index)  # fmt: skip
        return self

    def _out_of_fold(self, F, y_index, Cs, splits) -> np.ndarray:
        """Out-of-fold logits ``(len(Cs), N, K)``, each fold's models warm-started along ``Cs``."""
        from sklearn.linear_model import LogisticRegression

        out = np.zeros((len(Cs), len(y_index), len(self.classes_)))
        for train, test in splits:
            est = LogisticRegression(class_weight=self.class_weight, max_iter=self.max_iter, warm_start=True,
                                     random_state=self.random_state)  # fmt: skip
            for j in np.argsort(Cs):
                est.set_params(C=Cs[j]).fit(F[train], y_index[train])
                out[j, test] = _logits_of(est, F[test])
        return out

    def _choose(self, oof, y_index) -> int:
        k = len(self.classes_)
        keys = [(-macro_f1(y_index, o.argmax(axis=1), k), log_loss(softmax(o), y_index)) for o in oof]
        return int(min(range(len(keys)), key=keys.__getitem__))

    # -- predicting ---------------------------------------------------------

    def decision_function(self, X) -> np.ndarray:
        """Uncalibrated logits ``(N, K)``."""
        if self.model_ == "zeroshot":
            return self.prior.logits(X)
        return _logits_of(self.estimator_, self.features(X))

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities ``(N, K)`` (softmax of the logits without a calibrator)."""
        logits = self.decision_function(X)
        return self.calibrator_.predict_proba(logits) if self.calibrator_ is not None else softmax(logits)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def thresholds(self, alpha: float = 0.1, mondrian="auto") -> tuple[np.ndarray, bool]:
        """Conformal thresholds from the labelled sources' out-of-fold scores (every class
        enters every set while there are none)."""
        if self.oof_proba_ is None or not len(self.y_index_):
            return np.full(len(self.classes_), math.inf), False
        return conformal_thresholds(self.oof_proba_, self.y_index_, alpha, mondrian)

    def predict_sets(self, X, alpha: float = 0.1) -> np.ndarray:
        """Conformal prediction sets at level ``alpha``: membership ``(N, K)``."""
        return conformal_sets(self.predict_proba(X), self.thresholds(alpha)[0])

    def conformal_report(self, alpha: float = 0.1) -> dict:
        """Coverage and mean set size of the sets at ``alpha`` measured on the labelled
        sources by cross-validation (:func:`cross_validated_coverage`), and whether the
        thresholds are per class."""
        mondrian = self.thresholds(alpha)[1]
        if self.oof_proba_ is None:
            return {"coverage": math.nan, "mean_set_size": float(len(self.classes_)), "n": 0, "mondrian": False}
        report = cross_validated_coverage(self.oof_proba_, self.y_index_, alpha, folds=self.folds,
                                          seed=self.random_state, mondrian=mondrian)  # fmt: skip
        return {**report, "mondrian": mondrian}


def fit_probe(X, y, prior: Prior | None = None, **options) -> LabelProbe:
    """A fitted :class:`LabelProbe` (``options``: its parameters, e.g. ``model="zeroshot"``)."""
    return LabelProbe(prior, **options).fit(X, y)


# -------------------------------------------------------------- suggestions


def uncertainty(proba, kind: str = "margin") -> np.ndarray:
    """Per row, higher is less sure: ``1 - (p_1 - p_2)`` (``margin``, the two most probable
    classes) or ``-sum p log p`` (``entropy``)."""
    p = np.asarray(proba, dtype=np.float64)
    if kind == "margin":
        top = np.sort(p, axis=1)[:, ::-1]
        return 1.0 - (top[:, 0] - (top[:, 1] if p.shape[1] > 1 else 0.0))
    if kind == "entropy":
        return -np.sum(p * np.log(np.clip(p, 1e-300, None)), axis=1)
    raise LabellingError(f"uncertainty is 'margin' or 'entropy', not {kind!r}")


def diverse_order(X, n: int) -> np.ndarray:
    """``n`` row indices of ``X`` (rows sorted best first) picked greedily by max-min cosine
    distance: the first row, then each time the row farthest from all picked so far
    (ties to the earlier, better-ranked row)."""
    X = _unit(X)
    n = min(int(n), len(X))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    chosen = [0]
    distance = 1.0 - X @ X[0]
    distance[0] = -np.inf
    while len(chosen) < n:
        pick = int(np.argmax(distance))
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - X @ X[pick])
        distance[chosen] = -np.inf
    return np.asarray(chosen, dtype=np.int64)


def pool_size(n: int, pool: int | None = None) -> int:
    """How many of the most uncertain sources a batch of ``n`` is chosen from (default ``3 n``)."""
    return max(int(n), int(pool) if pool else 3 * int(n))


def rank_scores(X, *, proba=None, query=None, kind: str = "margin") -> tuple[np.ndarray, str]:
    """``(score, by)``: higher first. Uncertainty of ``proba``, else the cosine to a text
    ``query`` (``(D,)``, or ``(Q, D)`` taking the best of the queries)."""
    if proba is not None:
        return uncertainty(proba, kind), kind
    if query is not None:
        return (_unit(X) @ _unit(query).T).max(axis=1), "query"
    raise LabellingError("nothing to rank sources by: label a few sources, give a prompt set or a text query")


def suggest_indices(X, n: int = 20, *, proba=None, query=None, exclude=None, kind: str = "margin", pool=None) -> np.ndarray:
    """Indices of ``n`` rows of ``X`` worth labelling next, never one of ``exclude``: the
    most uncertain under ``proba`` (or, without, the closest to ``query``), spread by
    :func:`diverse_order` among the :func:`pool_size` best-ranked."""
    X = np.asarray(X)
    score, _ = rank_scores(X, proba=proba, query=query, kind=kind)
    allowed = np.ones(len(X), bool)
    if exclude is not None and len(exclude):
        allowed[np.asarray(exclude, dtype=np.int64)] = False
    candidates = np.flatnonzero(allowed)
    top = candidates[np.argsort(-score[candidates], kind="stable")[: pool_size(n, pool)]]
    return top[diverse_order(X[top], n)]


# ------------------------------------------------------------- store: labels


def _who(who: str | None) -> str:
    if who:
        return str(who)
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _few(values: Sequence, k: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:k])
    return shown + (f" and {len(values) - k} more" if len(values) > k else "")


def resolve_sources(store: Store, keys: Sequence[str]) -> tuple[dict[str, str], list[str], dict[str, list[str]]]:
    """``(found, unknown, ambiguous)`` for keys that are source ids or names: ``{key: id}``,
    the keys matching nothing, and ``{name: [ids]}`` for names shared by several sources."""
    keys = list(dict.fromkeys(str(k) for k in keys))
    found = {}
    for chunk in _chunks(keys):
        found.update({r["id"]: r["id"] for r in store.rows_where(in_list("id", chunk), ["id"])})
    by_name: dict[str, list[str]] = {}
    rest = [k for k in keys if k not in found]
    for chunk in _chunks(rest):
        for r in store.rows_where(in_list("name", chunk), ["id", "name"]):
            by_name.setdefault(r["name"], []).append(r["id"])
    ambiguous = {k: v for k, v in by_name.items() if len(v) > 1}
    found.update({k: v[0] for k, v in by_name.items() if len(v) == 1})
    unknown = [k for k in rest if k not in by_name]
    return found, unknown, ambiguous


def check_class(value) -> str:
    """A class name: a non-empty string without ``|`` (the prediction sets' separator)."""
    name = str(value).strip()
    if not name or SEPARATOR in name:
        raise LabellingError(f"a class is a non-empty name without {SEPARATOR!r}, not {value!r}")
    return name


def _resolve_or_fail(store: Store, keys: Sequence[str]) -> dict[str, str]:
    if not store.has(SOURCES):
        raise LabellingError(f"the store at {store.path} has no sources yet (run `radioalign ingest` first)")
    found, unknown, ambiguous = resolve_sources(store, keys)
    if unknown:
        raise LabellingError(f"{len(unknown)} unknown source(s), neither an id nor a name in the store: {_few(unknown)}")
    if ambiguous:
        raise LabellingError(f"names shared by several sources (give their ids): {_few(sorted(ambiguous))}")
    return found


def _write_labels(store: Store, labels: Mapping[str, str], who: str, origin: str) -> dict:
    import pyarrow as pa

    created = now()
    rows = [{"id": i, "class": c, "who": who, "origin": origin, "created_at": created} for i, c in labels.items()]
    with store.writing():
        table = store._create(USER_LABELS, user_labels_schema())
        before = set(user_labels_of(store, list(labels)))
        for chunk in _chunks(rows, 10_000):
            data = pa.Table.from_pylist(list(chunk), schema=user_labels_schema())
            table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
    return {"added": len(rows) - len(before), "replaced": len(before)}


def add_labels(store: Store | str | os.PathLike, labels: Mapping[str, str], *, who: str | None = None,
               origin: str = "user") -> dict:  # fmt: skip
    """Label sources: ``labels`` maps a source id or name to its class. A source labelled
    before gets the new class. Returns ``{"added", "replaced"}``. Unknown ids or names,
    names shared by several sources and bad classes raise :class:`LabellingError`."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    if origin not in ORIGINS:
        raise LabellingError(f"origin must be one of {ORIGINS}, not {origin!r}")
    if not labels:
        return {"added": 0, "replaced": 0}
    classes = {str(k): check_class(v) for k, v in labels.items()}
    found = _resolve_or_fail(store, list(classes))
    return _write_labels(store, {found[k]: c for k, c in classes.items()}, _who(who), origin)


def remove_labels(store: Store | str | os.PathLike, keys: Sequence[str]) -> dict:
    """Remove the labels of sources given by id or name: ``{"removed", "not_labelled"}``.
    Unknown ids or names raise :class:`LabellingError`."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    found = _resolve_or_fail(store, list(keys))
    ids = sorted(set(found.values()))
    labelled = set(user_labels_of(store, ids))
    if labelled:
        with store.writing():
            for chunk in _chunks(sorted(labelled)):
                store.table(USER_LABELS).delete(in_list("id", chunk))
    return {"removed": len(labelled), "not_labelled": len(ids) - len(labelled)}


def user_labels(store: Store | str | os.PathLike, *, details: bool = False) -> dict:
    """Every user label: ``{id: class}``, or with ``details`` ``{id: {class, who, origin, created_at}}``."""
    store = store if isinstance(store, Store) else open_store(store)
    out = {}
    for batch in store.scan(["id", "class", "who", "origin", "created_at"], 65536, table=USER_LABELS):
        for r in batch.to_pylist():
            out[r["id"]] = {k: v for k, v in r.items() if k != "id"} if details else r["class"]
    return out


def user_labels_of(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """The user labels of ``ids`` that have one: ``{id: class}``."""
    if not ids or not store.has(USER_LABELS):
        return {}
    out = {}
    for chunk in _chunks(list(ids)):
        out.update({r["id"]: r["class"] for r in store.rows_where(in_list("id", chunk), ["id", "class"], USER_LABELS)})
    return out


def forget(store: Store, ids: Sequence[str]) -> None:
    """Delete the user labels and predictions of sources (e.g. deleted from the store)."""
    with store.writing():
        for name in (USER_LABELS, PREDICTIONS):
            if store.has(name):
                for chunk in _chunks(list(ids)):
                    store.table(name).delete(in_list("id", chunk))


# ------------------------------------------------------------ store: import


def read_label_table(path: str | os.PathLike, format: str | None = None):
    """An astropy ``Table`` from CSV, TSV, ECSV, VOTable or FITS (by extension unless ``format``)."""
    from astropy.table import Table

    path = Path(path).expanduser()
    if not path.is_file():
        raise LabellingError(f"no label file at {path}")
    suffix = path.suffix.lower()
    guess = {".csv": "ascii.csv", ".tsv": "ascii.tab", ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable"}
    try:
        return Table.read(str(path), format=format or guess.get(suffix))
    except Exception as err:  # astropy raises many kinds for a file it cannot read
        raise LabellingError(f"cannot read {path.name} as a table (CSV, TSV, ECSV, VOTable or FITS): {err}") from None


def _column(table, given: str | None, candidates: Sequence[str], what: str) -> str | None:
    names = {n.lower(): n for n in table.colnames}
    if given is not None:
        if given not in table.colnames and given.lower() not in names:
            raise LabellingError(f"the file has no {what} column {given!r}; its columns: {_few(table.colnames, 12)}")
        return given if given in table.colnames else names[given.lower()]
    return next((names[c] for c in candidates if c in names), None)


def _cell(value) -> str | None:
    if value is None or np.ma.is_masked(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


@dataclass
class ImportSummary:
    """What :func:`import_labels` did: rows read, matched (labelled), unmatched, ambiguous
    (a name of several sources), blank (no key or class), and a few unmatched keys."""

    rows: int = 0
    matched: int = 0
    unmatched: int = 0
    ambiguous: int = 0
    blank: int = 0
    added: int = 0
    replaced: int = 0
    examples: list = field(default_factory=list)

    def line(self) -> str:
        extra = f" (e.g. {_few(self.examples, 3)})" if self.unmatched else ""
        return (f"labels: {self.matched} of {self.rows} rows matched a source ({self.added} new, {self.replaced} replaced); "
                f"{self.unmatched} unmatched{extra}, {self.ambiguous} ambiguous, {self.blank} blank")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)


def import_labels(store: Store | str | os.PathLike, path: str | os.PathLike, id_col: str | None = None,
                  name_col: str | None = None, class_col: str | None = None, *, class_map: Mapping | None = None,
                  who: str | None = None, format: str | None = None) -> ImportSummary:  # fmt: skip
    """Label sources from a table file (e.g. a catalogue's classifications): each row's
    source by id (``id_col``, default a column ``id``) or else by name (``name_col``,
    default the first of :data:`NAME_COLUMNS`), its class from ``class_col`` (default the
    first of :data:`CLASS_COLUMNS`), mapped through ``class_map`` when given (e.g.
    ``{0: "FR-I", 1: "FR-II"}``). Origin ``import``. A file none of whose rows matches a
    source raises :class:`LabellingError`."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    table = read_label_table(path, format)
    ids, names = _column(table, id_col, ID_COLUMNS, "id"), _column(table, name_col, NAME_COLUMNS, "name")
    classes = _column(table, class_col, CLASS_COLUMNS, "class")
    if classes is None or (ids is None and names is None):
        raise LabellingError(f"{Path(path).name}: need a class column ({', '.join(CLASS_COLUMNS)}) and an id or name "
                             f"column ({', '.join(ID_COLUMNS + NAME_COLUMNS)}); its columns: {_few(table.colnames, 12)}")  # fmt: skip
    mapping = {str(k): v for k, v in (class_map or {}).items()}
    summary, wanted = ImportSummary(rows=len(table)), []
    for row in table:
        key = _cell(row[ids]) if ids else None
        key = key or (_cell(row[names]) if names else None)
        label = _cell(row[classes])
        if key is None or label is None:
            summary.blank += 1
            continue
        wanted.append((key, check_class(mapping.get(label, label))))
    found, unknown, ambiguous = resolve_sources(store, [k for k, _ in wanted]) if store.has(SOURCES) else ({}, [k for k, _ in wanted], {})
    labels = {found[k]: c for k, c in wanted if k in found}
    summary.matched = sum(k in found for k, _ in wanted)
    summary.ambiguous = sum(k in ambiguous for k, _ in wanted)
    summary.unmatched, summary.examples = len(wanted) - summary.matched - summary.ambiguous, unknown[:5]
    if not labels:
        columns = " or ".join(f"{w} ({c})" for w, c in (("id", ids), ("name", names)) if c)
        raise LabellingError(f"no row of {Path(path).name} matches a source of the store by {columns}: "
                             f"e.g. {_few([k for k, _ in wanted], 3) or 'no rows with a key and a class'}")  # fmt: skip
    written = _write_labels(store, labels, _who(who), "import")
    summary.added, summary.replaced = written["added"], written["replaced"]
    return summary


# ------------------------------------------------------- store: the probe


def _vectors(batch) -> np.ndarray:
    return np.stack(batch.column("vector").to_numpy(zero_copy_only=False)).astype(np.float64)


def labelled_vectors(store: Store, labels: Mapping[str, str] | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """``(ids, X, y)``: the stored vectors and classes of the labelled sources (those still in the store)."""
    labels = user_labels(store) if labels is None else labels
    ids, vectors = [], []
    for chunk in _chunks(sorted(labels)):
        for r in store.rows_where(in_list("id", chunk), ["id", "vector"]):
            ids.append(r["id"])
            vectors.append(np.asarray(r["vector"], dtype=np.float64))
    X = np.stack(vectors) if vectors else np.zeros((0, 1))
    return ids, X, [labels[i] for i in ids]


def zero_shot_prior(store: Store | str | os.PathLike, prompts: str | os.PathLike = "fr", *, encoder=None, model=None,
                    adapter=None, device=None) -> Prior:  # fmt: skip
    """The :class:`Prior` of a prompt set (built in, or a YAML file) under the store's model
    (loaded unless ``encoder`` is given; it must match the store)."""
    from .encoder import encoder_for_store
    from .zeroshot import class_vectors, load_prompts

    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    name, prompt_set = load_prompts(prompts)
    encoder = encoder or encoder_for_store(store.meta(), model, adapter, device=device)
    store.check_model(encoder.fingerprint, "prior")
    classes, vectors = class_vectors(encoder, prompt_set)
    scale, bias = encoder.logit_scale_bias()
    return Prior(classes, vectors, scale, bias, name)


def train_probe(store: Store | str | os.PathLike, prior: Prior | None = None, *, model: str = "probe",
                **options) -> LabelProbe:  # fmt: skip
    """A :class:`LabelProbe` fitted on the store's user labels (``options``: its parameters)."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    _, X, y = labelled_vectors(store)
    return LabelProbe(prior, model=model, **options).fit(X, y)


@dataclass
class ProbeSummary:
    """A classification run: ``model`` (the one that predicted; ``requested`` the one asked
    for), ``labels`` used and their ``label_counts``, ``classes``, the chosen ``C``, the
    out-of-fold ``cv_macro_f1``, conformal ``coverage`` and ``mean_set_size`` measured on the
    labelled set at ``alpha``, ``sources`` predicted, ``predicted`` per class, ``open`` (sets
    of more than one class: left unlabelled when ``abstain``), and ``fallback`` / ``notes``."""

    model: str
    requested: str
    classes: list
    labels: int
    label_counts: dict
    C: float | None
    cv_macro_f1: float | None
    alpha: float
    coverage: float
    mean_set_size: float
    mondrian: bool
    abstain: bool
    sources: int = 0
    predicted: dict = field(default_factory=dict)
    open: int = 0
    fallback: str | None = None
    notes: list = field(default_factory=list)

    @classmethod
    def of(cls, probe: LabelProbe, alpha: float, abstain: bool) -> "ProbeSummary":
        report = probe.conformal_report(alpha)
        return cls(model=probe.model_, requested=probe.model, classes=[str(c) for c in probe.classes_],
                   labels=probe.n_labels_, label_counts=dict(probe.label_counts_), C=probe.C_,
                   cv_macro_f1=probe.cv_macro_f1_, alpha=alpha, coverage=report["coverage"],
                   mean_set_size=report["mean_set_size"], mondrian=report["mondrian"], abstain=abstain,
                   fallback=probe.fallback_, notes=list(probe.notes_))  # fmt: skip

    def line(self) -> str:
        f1 = "n/a" if self.cv_macro_f1 is None else f"{self.cv_macro_f1:.3f}"
        cov = "n/a" if math.isnan(self.coverage) else f"{self.coverage:.3f}"
        counts = ", ".join(f"{c}: {self.predicted.get(c, 0)}" for c in self.classes)
        head = f"{self.model}: {self.sources} sources ({counts})"
        if self.abstain:
            head += f", {self.open} left open"
        c = "" if self.C is None else f", C {self.C:g}"
        return (f"{head}; {self.labels} labels{c}, cross-validated macro F1 {f1}; at alpha {self.alpha:g} "
                f"coverage {cov}, mean set size {self.mean_set_size:.2f} (on the labelled set)")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)


def _prediction_rows(ids, proba, sets, classes, model, alpha, abstain, created) -> list[dict]:
    best = proba.argmax(axis=1)
    labels = set_labels(sets, classes)
    rows = []
    for i, p, b, s, n in zip(ids, proba, best, labels, sets.sum(axis=1)):
        predicted = classes[b] if not abstain else (s if n == 1 else None)
        rows.append({"id": i, "model": model, "predicted": predicted, "best": classes[b], "score": float(p[b]),
                     "probabilities": json.dumps({c: round(float(v), 6) for c, v in zip(classes, p)}),
                     "prediction_set": s, "alpha": alpha, "abstain": abstain, "created_at": created})  # fmt: skip
    return rows


def classify_probe(store: Store | str | os.PathLike, prior: Prior | None = None, *, model: str = "probe",
                   alpha: float = 0.1, abstain: bool = False, batch_size: int = 4096, write: bool = True,
                   probe: LabelProbe | None = None, **options) -> ProbeSummary:  # fmt: skip
    """Predict every source (streaming ``batch_size`` rows at a time) with the probe trained
    on the store's user labels (``model="probe"``) or calibrated zero-shot
    (``"zeroshot"``), with conformal sets at ``alpha``; with ``write`` replace that model's
    rows of ``probe_predictions``. ``abstain`` leaves ``predicted`` empty where the set is
    not a single class. A probe that falls back to zero-shot writes as ``zeroshot``
    (and removes stale ``probe`` rows); ``summary.fallback`` says why."""
    import pyarrow as pa

    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    probe = probe if probe is not None else train_probe(store, prior, model=model, **options)
    summary = ProbeSummary.of(probe, alpha, abstain)
    thresholds, _ = probe.thresholds(alpha)
    classes, created, counts = [str(c) for c in probe.classes_], now(), Counter()
    with store.writing() if write else contextlib.nullcontext():
        table = store._create(PREDICTIONS, predictions_schema()) if write else None
        if write:
            table.delete(" OR ".join(f"model = {quote(m)}" for m in {probe.model_, model}))
        for batch in store.scan(["id", "vector"], batch_size=batch_size):
            proba = probe.predict_proba(_vectors(batch))
            sets = conformal_sets(proba, thresholds)
            rows = _prediction_rows(batch.column("id").to_pylist(), proba, sets, classes, probe.model_, alpha, abstain, created)
            sizes = sets.sum(axis=1)
            summary.sources += len(rows)
            summary.open += int((sizes > 1).sum())
            counts.update(r["predicted"] for r in rows if r["predicted"] is not None)
            if write:
                table.add(pa.Table.from_pylist(rows, schema=predictions_schema()))
    summary.predicted = {c: counts.get(c, 0) for c in classes}
    return summary


def predictions_of(store: Store, ids: Sequence[str], model: str = "probe") -> dict[str, dict]:
    """The stored predictions of ``ids`` by ``model``: ``{id: {predicted, best, score,
    probabilities (dict), prediction_set, alpha, abstain}}``."""
    if not ids or not store.has(PREDICTIONS):
        return {}
    columns = ["id", "predicted", "best", "score", "probabilities", "prediction_set", "alpha", "abstain"]
    out = {}
    for chunk in _chunks(list(ids)):
        for r in store.rows_where(f"{in_list('id', chunk)} AND model = {quote(model)}", columns, PREDICTIONS):
            out[r["id"]] = {**{k: v for k, v in r.items() if k != "id"}, "probabilities": json.loads(r["probabilities"])}
    return out


# ------------------------------------------------------- store: suggestions


def _ranker(store: Store, prior: Prior | None, query_vector, kind: str, options: dict):
    """``(probe or None, by)``: what ranks the sources for :func:`suggest`."""
    labels = user_labels(store)
    if not labels and query_vector is not None:
        return None, "query"
    if len(set(labels.values())) >= 2 or prior is not None:
        return train_probe(store, prior, **options), kind
    if query_vector is not None:
        return None, "query"
    raise LabellingError("nothing to rank sources by yet: label sources of two classes, or give a prompt set "
                         "or a text query (e.g. 'bent-tail radio galaxy')")  # fmt: skip


def _keep_best(pool: dict | None, batch: dict, size: int) -> dict:
    if pool is not None:
        batch = {k: np.concatenate([pool[k], batch[k]]) for k in batch}
    keep = np.argsort(-batch["score"], kind="stable")[:size]
    return {k: v[keep] for k, v in batch.items()}


def suggest(store: Store | str | os.PathLike, n: int = 20, *, query_vector=None, prior: Prior | None = None,
            kind: str = "margin", pool: int | None = None, batch_size: int = 4096, **options) -> list[dict]:  # fmt: skip
    """The ``n`` unlabelled sources worth labelling next (:func:`suggest_indices`, streamed
    over the store keeping only the :func:`pool_size` best-ranked): by the uncertainty of the
    probe (or of zero-shot while a probe cannot be trained), or, with no labels yet, by
    closeness to ``query_vector`` (a text embedding, e.g. of "bent-tail radio galaxy").
    Each: ``{id, name, ra, dec, score, by, best, probabilities}`` (the last two None when
    ranked by the query)."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    probe, by = _ranker(store, prior, query_vector, kind, options)
    labelled, size, best = set(user_labels(store)), pool_size(n, pool), None
    for batch in store.scan(["id", "name", "ra", "dec", "vector"], batch_size=batch_size):
        keep = np.asarray([i not in labelled for i in batch.column("id").to_pylist()])
        if not keep.any():
            continue
        X = _vectors(batch)[keep]
        proba = probe.predict_proba(X) if probe is not None else np.full((len(X), 0), np.nan)
        score, _ = rank_scores(X, proba=proba if probe is not None else None, query=query_vector, kind=kind)
        rows = {k: np.asarray(batch.column(k).to_pylist(), dtype=object)[keep] for k in ("id", "name", "ra", "dec")}
        best = _keep_best(best, {**rows, "vector": X, "score": score, "proba": proba}, size)
    if best is None:
        return []
    order = diverse_order(best["vector"], n)
    classes = [str(c) for c in probe.classes_] if probe is not None else None
    return [{"id": best["id"][i], "name": best["name"][i], "ra": best["ra"][i], "dec": best["dec"][i],
             "score": float(best["score"][i]), "by": by, "best": classes[int(np.argmax(best["proba"][i]))] if classes else None,
             "probabilities": dict(zip(classes, map(float, best["proba"][i]))) if classes else None} for i in order]  # fmt: skip


def query_vector(store: Store | str | os.PathLike, text: str, *, encoder=None, model=None, adapter=None, device=None) -> np.ndarray:
    """The L2-normalised text embedding of ``text`` under the store's model, for :func:`suggest`."""
    from .encoder import encoder_for_store

    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    encoder = encoder or encoder_for_store(store.meta(), model, adapter, device=device)
    store.check_model(encoder.fingerprint, "query")
    return _unit(encoder.texts([text]))[0]

