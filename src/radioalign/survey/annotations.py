"""Labels and predictions per source: the columns search results and store exports carry.

*Per source* (:class:`Annotations`, :class:`AnnotationIndex`): search results and store
exports carry ``user_label``, ``predicted``, ``prediction_set``, ``predicted_by`` and a
``cal_p_<class>`` per class (UCDs in :mod:`.votable`), from the probe's predictions once it
has run, else calibrated zero-shot's (:func:`prediction_model`). They are read from the
``user_labels`` (:mod:`.labels`) and ``probe_predictions`` (:mod:`.probe`) tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .labels import PREDICTIONS, SEPARATOR, USER_LABELS, user_labels_of
from .probe import MODELS, predictions_of
from .store import Store, quote


def prediction_model(store: Store) -> str | None:
    """The model whose stored predictions results carry: the probe's once it has run, else
    calibrated zero-shot (``classify --alpha/--abstain``, or a probe that fell back); None."""
    if not store.has(PREDICTIONS):
        return None
    for model in MODELS:
        if store.rows_where(f"model = {quote(model)}", ["id"], PREDICTIONS, limit=1):
            return model
    return None


@dataclass
class Annotations:
    """The columns a store's people and probe add to each source, in this order:

    ``user_label`` (once the store has a ``user_labels`` table; null where unlabelled),
    ``predicted`` (the class, null where the run abstained), ``prediction_set`` (the
    conformal set, e.g. ``FR-I|FR-II``), ``predicted_by`` (``probe`` | ``zeroshot``) and a
    ``cal_p_<class>`` calibrated probability per class (once predictions are stored).
    Search results look them up per row (:meth:`annotate`); an export joins them from
    sorted arrays (:class:`AnnotationIndex`)."""

    user: bool = False
    model: str | None = None
    classes: list = field(default_factory=list)
    alpha: float | None = None
    abstain: bool = False

    @classmethod
    def of(cls, store: Store) -> "Annotations":
        model = prediction_model(store)
        if model is None:
            return cls(user=store.has(USER_LABELS))
        row = store.rows_where(f"model = {quote(model)}", ["probabilities", "alpha", "abstain"], PREDICTIONS, limit=1)[0]
        return cls(store.has(USER_LABELS), model, list(json.loads(row["probabilities"])), float(row["alpha"]), bool(row["abstain"]))

    def names(self) -> list[str]:
        from .votable import calibrated_column

        user = ["user_label"] if self.user else []
        if self.model is None:
            return user
        return user + ["predicted", "prediction_set", "predicted_by"] + [calibrated_column(c) for c in self.classes]

    def fields(self) -> list:
        import pyarrow as pa

        return [pa.field(n, pa.float64() if n.startswith("cal_p_") else pa.string()) for n in self.names()]

    def infos(self) -> dict[str, str]:
        """What the prediction columns mean, for a VOTable ``INFO`` or a file's metadata."""
        if self.model is None:
            return {}
        how = f"{self.model}, conformal sets at alpha {self.alpha:g}" + (", abstaining on open sets" if self.abstain else "")
        return {"predictions": how}

    def annotate(self, store: Store, rows: list[dict]) -> list[dict]:
        """Add the columns of :meth:`names` to ``rows`` (a few, e.g. search results), in place."""
        ids = [r["id"] for r in rows]
        users = user_labels_of(store, ids) if self.user else {}
        found = predictions_of(store, ids, self.model) if self.model else {}
        names = self.names()[1 if self.user else 0 :]
        for row in rows:
            if self.user:
                row["user_label"] = users.get(row["id"])
            if self.model is None:
                continue
            got = found.get(row["id"])
            values = [got["predicted"], got["prediction_set"], self.model] if got else [None, None, None]
            row.update(zip(names, values + [got["probabilities"].get(c) if got else None for c in self.classes]))
        return rows

    def widths(self, user_classes: Sequence[str] = ()) -> dict[str, int]:
        """The longest value of each text column (ASCII bytes), for a FITS table."""
        widths = {"user_label": max([1, *(len(str(c).encode("ascii", "backslashreplace")) for c in user_classes)])}
        longest = max([1, *(len(str(c).encode("ascii", "backslashreplace")) for c in self.classes)])
        widths.update(predicted=longest, prediction_set=max(1, len(SEPARATOR.join(self.classes).encode("ascii", "backslashreplace"))),
                      predicted_by=max(len(m) for m in MODELS))  # fmt: skip
        return {k: v for k, v in widths.items() if k in self.names()}


def _sorted_ids(ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The ids (bytes) of every page, sorted, and the order that sorts them."""
    joined = np.concatenate(ids) if ids else np.array([], "S1")
    order = np.argsort(joined, kind="stable")
    return joined[order], order


def _id_bytes(ids: Sequence[str]) -> np.ndarray:
    return np.array([i.encode("utf-8") for i in ids], dtype="S") if len(ids) else np.array([], "S1")


class AnnotationIndex:
    """:class:`Annotations` for a whole store, in numpy arrays sorted by id (looked up by
    binary search): some 20 bytes per user label and 26 + 8 K bytes per prediction, so
    an export's memory stays bounded by the store's size, not its vectors'. ``user_pages``
    and ``prediction_pages`` are record batches of the two tables (one committed version)."""

    def __init__(self, notes: Annotations, user_pages: Iterable = (), prediction_pages: Iterable = ()):
        import pyarrow.compute as pc

        self.notes, self.user_classes = notes, []
        ids, codes = [], []
        for batch in user_pages:
            ids.append(_id_bytes(batch.column("id").to_pylist()))
            codes.append(np.array([self._code(c) for c in batch.column("class").to_pylist()], np.int32))
        self.user_ids, order = _sorted_ids(ids)
        self.user_codes = np.concatenate(codes)[order] if codes else np.zeros(0, np.int32)
        k = len(notes.classes)
        ids, predicted, masks, probs = [], [], [], []
        for batch in prediction_pages:
            batch = batch.filter(pc.equal(batch.column("model"), notes.model))
            ids.append(_id_bytes(batch.column("id").to_pylist()))
            predicted.append(np.array([self._class(c) for c in batch.column("predicted").to_pylist()], np.int16))
            masks.append(np.array([self._mask(s) for s in batch.column("prediction_set").to_pylist()], np.int64))
            p = [json.loads(v) for v in batch.column("probabilities").to_pylist()]
            probs.append(np.array([[row.get(c, np.nan) for c in notes.classes] for row in p], np.float64).reshape(-1, k))
        self.ids, order = _sorted_ids(ids)
        self.predicted, self.masks, self.probs = (
            (np.concatenate(x)[order] for x in (predicted, masks, probs)) if ids else
            (np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros((0, k), np.float64)))  # fmt: skip

    def _code(self, cls) -> int:
        if cls not in self.user_classes:
            self.user_classes.append(cls)
        return self.user_classes.index(cls)

    def _class(self, cls) -> int:
        return self.notes.classes.index(cls) if cls in self.notes.classes else -1

    def _mask(self, members) -> int:
        return sum(1 << self._class(c) for c in (members or "").split(SEPARATOR) if c in self.notes.classes)

    def _set(self, mask: int) -> str | None:
        return SEPARATOR.join(c for i, c in enumerate(self.notes.classes) if mask >> i & 1) or None

    def widths(self) -> dict[str, int]:
        return self.notes.widths(self.user_classes)

    def columns(self, ids: list[str]) -> list:
        """The arrays of :meth:`Annotations.names` for ``ids`` (null where a source has none)."""
        import pyarrow as pa

        wanted, out = _id_bytes(ids), []
        if self.notes.user:
            hit, pos = _lookup(self.user_ids, wanted)
            names = np.array([*self.user_classes, None], dtype=object)  # code -1: no label
            codes = np.where(hit, self.user_codes[pos], -1) if len(self.user_ids) else np.full(len(ids), -1)
            out.append(pa.array(names[codes], pa.string()))
        if self.notes.model is None:
            return out
        hit, pos = _lookup(self.ids, wanted)
        names = np.array([*self.notes.classes, None], dtype=object)
        predicted = self.predicted[pos] if len(self.ids) else np.full(len(ids), -1, np.int16)
        out.append(pa.array(np.where(hit, names[predicted], None), pa.string()))
        masks = self.masks[pos] if len(self.ids) else np.zeros(len(ids), np.int64)
        out.append(pa.array([self._set(int(m)) if h else None for h, m in zip(hit, masks)], pa.string()))
        out.append(pa.array(np.where(hit, self.notes.model, None), pa.string()))
        for c in range(len(self.notes.classes)):
            values = self.probs[pos, c].astype(np.float64) if len(self.ids) else np.full(len(ids), np.nan)
            out.append(pa.array(values, mask=~hit | np.isnan(values)))
        return out


def _lookup(sorted_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hit, pos)``: whether each of ``wanted`` is among ``sorted_ids``, and where."""
    if not len(sorted_ids):
        return np.zeros(len(wanted), bool), np.zeros(len(wanted), np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
    return sorted_ids[pos] == wanted, pos
