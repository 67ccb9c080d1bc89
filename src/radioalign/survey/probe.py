"""The probe: a calibrated, conformal linear probe on a store's vectors, with the zero-shot prior.

Trained on the user labels (:mod:`.labels`), it predicts every source of the store into
the ``probe_predictions`` table (created on first write):

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
zero-shot; without a prior these raise :class:`~.labels.LabellingError`.

Its probabilities are calibrated and its sets conformal (:mod:`.calibration`): the probe
on its out-of-fold logits (temperature only), zero-shot with per-class biases too. The
out-of-fold probabilities ``oof_proba_`` are cross-fitted: each fold's calibrator never
saw the fold; :meth:`LabelProbe.conformal_report` measures coverage and set size on the
labelled set. ``abstain`` labels a source only when its set holds one class.
:func:`classify_probe` is ``radioalign classify --probe [--abstain] [--alpha]``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..metrics.arrays import l2_normalize
from .calibration import (FOLDS, LogitCalibrator, _splits, conformal_sets, conformal_thresholds, cross_validated_coverage,
                          log_loss, set_labels, softmax)  # fmt: skip
from .labels import PREDICTIONS, LabellingError, _chunks, user_labels
from .store import Store, in_list, now, open_store, quote

MODELS = ("probe", "zeroshot")
C_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
C_FEW = 10.0  # the probe's C when some class has fewer than MIN_CV_LABELS labels
MIN_CV_LABELS = 5


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
    return l2_normalize(x, zero_rows="keep")


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
    from .zeroshot import class_prototypes

    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    name, classes, vectors, scale, bias = class_prototypes(store, prompts, encoder, model, adapter, device, "prior")
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
