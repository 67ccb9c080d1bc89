"""Active suggestions: the unlabelled sources worth labelling next, uncertain and diverse.

*Suggestions* (:func:`suggest_indices`, :func:`suggest`): uncertainty ``1 - (p_1 - p_2)``
(margin of the two most probable classes) or the entropy of the calibrated
probabilities (of the probe, :mod:`.probe`); without labels, the cosine to a text query
(:func:`query_vector`). Among the ``pool`` most uncertain unlabelled sources (default
``3 n``) a batch is chosen greedily by max-min cosine distance, starting from the most
uncertain: no near-duplicates in one batch. :func:`suggest` is ``radioalign suggest``.
"""

from __future__ import annotations

import os

import numpy as np

from .labels import LabellingError, user_labels
from .probe import Prior, _unit, _vectors, train_probe
from .store import Store, open_store


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


# ------------------------------------------------------------- store: suggestions


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
