"""Paired image-text retrieval metrics on embeddings, with gallery-resampling intervals.

Row *i* of ``img`` pairs with row *i* of ``txt``; similarities are cosines of the
L2-normalised rows, S[i, j] = cos(img_i, txt_j).

* **Mean cosine**: the mean over test pairs of S[i, i].
* **Recall@k**: image→text, the fraction of images whose paired text ranks in the top k
  texts; text→image likewise; ``"both"`` is the mean of the two (as the study reports).
  **Ties count against the pair**: the rank of the paired item is the number of
  candidates scoring at least its score (itself included, within ``TIE_TOL``), so a
  caption shared verbatim by several images never counts as retrieved by luck. The
  authors' ``argmax``/``topk`` gave ties to the lowest index instead.
* **Class-level Recall@1**: a hit when the top retrieved item has the query's class; when
  several items tie for the top score (within ``TIE_TOL``), a hit only if all of them
  have that class.

Intervals (:func:`evaluate_retrieval`): a retrieval score depends on the gallery as much
as on the queries, so a bootstrap replicate resamples both together. For a resample
``idx = (i_1, ..., i_n)`` of the test items (:func:`~.bootstrap.bootstrap_indices`) the
replicate is the metric recomputed on the resampled test set: queries ``img[i_a]``,
gallery ``txt[i_b]`` (and the other way round), similarities S*[a, b] = S[i_a, i_b], the
pair of query position a at gallery position a, re-ranked within the resample
(:func:`gallery_replicates`):

* rank*_i2t[a] = 1 + #{b : i_b != i_a and S*[a, b] >= S*[a, a] - tol}, and
  rank*_t2i[b] = 1 + #{a : i_a != i_b and S*[a, b] >= S*[b, b] - tol};
  Recall@k replicate = the fraction of positions with rank* <= k (per direction; ``both``
  the mean of the two).
* **Copies of the pair.** An item drawn m times appears m times among queries and
  gallery. Gallery positions holding another copy of the query's *own* item are not
  competitors: they are the pair itself, with exactly the pair's score, so they are left
  out of the rank. Counting them as ties against the pair (the tie rule) would punish
  the resampling, not the model: a perfectly aligned model would score about
  (1 - 1/n)^(n-1) ≈ 0.37 at R@1 instead of 1. Copies of *other* items each count, as
  in a gallery that holds an item twice. Real ties between different items (a caption
  shared verbatim by two images) still count against the pair.
* Class-level Recall@1: the top set of query a is {b : S*[a, b] >= max_b' S*[a, b'] -
  tol} over all gallery positions, a hit when every label there equals the query's.
  A copy of the pair has the pair's score and class, so keeping it changes nothing.
* With ``idx`` the identity (no resampling) these are exactly the point values.

All models evaluated with the same ``(n, B, seed)`` see the same resamples, so replicate
differences give paired intervals.

What this changes, against resampling the per-query hits on the fixed full gallery
(:func:`retrieval_hits`): the gallery's own variability enters, which widens the
intervals most where alignment is weak (the study's regime). But a resample holds about
63 % of the distinct items, so a query's competitors are thinned and repeated at random;
at k = 1 a query can only gain (a near miss whose rivals above were all left out becomes a
hit, a hit stays a hit), so Recall@1 replicates lean above the point value.

**Bias correction** (:func:`recentred`): each metric's replicates are shifted so that their
mean is the point value, ``r*_b - (mean_b r*_b - value)``, and kept in [0, 1]; the interval
is the percentile interval of these (a bias-corrected percentile interval; paired
differences subtract recentred replicates). In a simulation with known truth (n = 104,
Gaussian pairs, 200 data sets, B = 300; truth = the mean over 2000 data sets; the test
``test_retrieval_interval_covers_the_truth`` repeats it) the 95 % intervals of Recall@1
covered the truth 0.965 / 0.96 / 0.93 / 0.90 of the time at Recall@1 ≈ 0.05 / 0.21 /
0.45 / 0.84, against 0.91 / 0.75 / 0.75 / 0.77 for the plain percentile interval of the
same replicates; class-level Recall@1: 0.97 / 0.97 / 0.945 / 0.935 (plain: 1.0 / 0.975 /
0.94 / 0.89).

**Labels of a permuted gallery.** ``text_labels`` (default: ``labels``) gives each caption
its own class. When the captions are permuted among the images, caption j's class is the
class of the item it was written for, not of the image at its position, and class-level
Recall@1 judges a retrieved caption by its own class: a permutation of the captions then
leaves class-level Recall@1 unchanged (the same captions, the same top one), while
Recall@1 falls to chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .arrays import as_labels, as_matrix, l2_normalize
from .bootstrap import batches, bootstrap_indices, interval_row, mean_replicates

TIE_TOL = 1e-6  # cosine scores closer than this to the paired score count as ties
DIRECTIONS = ("both", "i2t", "t2i")


def check_pairs(img, txt) -> tuple[np.ndarray, np.ndarray]:
    """``img`` and ``txt`` checked as paired rows in one embedding space."""
    img = as_matrix(img, "img")
    txt = as_matrix(txt, "txt")
    if img.shape[0] != txt.shape[0]:
        raise ValueError(f"img has {img.shape[0]} rows but txt has {txt.shape[0]}: row i must pair with row i")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"img has {img.shape[1]} features but txt has {txt.shape[1]}: a shared embedding space is needed")
    return img, txt


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def pair_cosines(a, b) -> np.ndarray:
    """cos(a_i, b_i) for every row pair, shape (n,)."""
    a, b = check_pairs(a, b)
    return np.sum(l2_normalize(a) * l2_normalize(b), axis=1)


def mean_cosine(a, b) -> float:
    """The mean cosine similarity of paired rows ``a_i``, ``b_i``."""
    return float(pair_cosines(a, b).mean())


def similarity_matrix(img, txt) -> np.ndarray:
    """Cosine similarities S[i, j] = cos(img_i, txt_j) in float64."""
    img, txt = check_pairs(img, txt)
    return l2_normalize(img) @ l2_normalize(txt).T


def pair_ranks(sim: np.ndarray, tol: float = TIE_TOL) -> tuple[np.ndarray, np.ndarray]:
    """Rank of the paired item for each query, ties counted against it.

    rank_i2t[i] = #{j : S[i, j] >= S[i, i] - tol} (so 1 is a clean first place);
    rank_t2i[j] = #{i : S[i, j] >= S[j, j] - tol}.
    """
    diag = np.diag(sim)
    return (sim >= diag[:, None] - tol).sum(axis=1), (sim >= diag[None, :] - tol).sum(axis=0)


def _check_k(k: int, n: int) -> None:
    if not 1 <= int(k) <= n:
        raise ValueError(f"k={k} must be between 1 and the {n} items")


def retrieval_hits(img, txt, k: int = 1) -> dict[str, np.ndarray]:
    """Per-query Recall@k hit indicators, {"i2t": (n,), "t2i": (n,)} (floats 0/1)."""
    sim = similarity_matrix(img, txt)
    _check_k(k, len(sim))
    r_i2t, r_t2i = pair_ranks(sim)
    return {"i2t": (r_i2t <= k).astype(float), "t2i": (r_t2i <= k).astype(float)}


def class_hits(img, txt, labels, tol: float = TIE_TOL, text_labels=None) -> dict[str, np.ndarray]:
    """Per-query class-level Recall@1 hits: every top-scoring item shares the query's class.
    ``labels``: the images' classes; ``text_labels``: the captions' (default ``labels``)."""
    sim = similarity_matrix(img, txt)
    labels = as_labels(labels, "labels", len(sim))
    text_labels = labels if text_labels is None else as_labels(text_labels, "text_labels", len(sim))
    other = labels[:, None] != text_labels[None, :]  # other[i, j]: image i and caption j differ in class
    top_i2t = sim >= sim.max(axis=1, keepdims=True) - tol
    top_t2i = sim >= sim.max(axis=0, keepdims=True) - tol
    return {
        "i2t": (~np.any(top_i2t & other, axis=1)).astype(float),
        "t2i": (~np.any(top_t2i & other, axis=0)).astype(float),
    }


def _combine(hits: Mapping[str, np.ndarray], direction: str) -> float:
    check_direction(direction)
    if direction == "both":
        return float((hits["i2t"].mean() + hits["t2i"].mean()) / 2)
    return float(hits[direction].mean())


def recall_at_k(img, txt, k: int = 1, direction: str = "both") -> float:
    """Recall@k of paired retrieval (row i of ``img`` pairs with row i of ``txt``).

    ``"i2t"``: images query texts; ``"t2i"``: texts query images; ``"both"``: their mean.
    Ties count against the pair (module docstring).
    """
    check_direction(direction)
    return _combine(retrieval_hits(img, txt, k), direction)


def class_recall_at_1(img, txt, labels, direction: str = "both", text_labels=None) -> float:
    """Class-level Recall@1: the top retrieved item has the query's class (ties: all must);
    ``text_labels``: the captions' own classes when they differ from the images' positions."""
    check_direction(direction)
    return _combine(class_hits(img, txt, labels, text_labels=text_labels), direction)


def recentred(replicates, value: float) -> np.ndarray:
    """Replicates shifted so that their mean is ``value``, clipped to [0, 1] (the bias
    correction of the module docstring); empty stays empty."""
    reps = np.asarray(replicates, dtype=float)
    if reps.size == 0:
        return reps
    return np.clip(reps - (reps.mean() - value), 0.0, 1.0)


# ------------------------------------------------------------------ gallery bootstrap


def gallery_replicates(
    sim: np.ndarray, idx: np.ndarray, ks: Sequence[int] = (1, 5), labels=None, tol: float = TIE_TOL, text_labels=None
) -> dict[str, dict[str, np.ndarray]]:
    """Gallery-resampling replicates of Recall@k and class-level Recall@1 (module docstring).

    ``sim`` is the (n, n) similarity matrix of the test pairs, ``idx`` the (B, n)
    resamples. Returns ``{"recall@<k>": {"i2t": (B,), "t2i": (B,)}, ...}`` and, with
    ``labels`` (the images'; ``text_labels`` the captions', default the same),
    ``"class_recall@1"``. Raw replicates, before :func:`recentred`. Vectorised over
    resamples in batches that keep the (batch, n, n) work arrays small.
    """
    sim = np.asarray(sim, dtype=np.float64)
    idx = np.asarray(idx)
    for k in ks:
        _check_k(k, sim.shape[0])
    if labels is not None:
        labels = as_labels(labels, "labels", sim.shape[0])
        text_labels = labels if text_labels is None else as_labels(text_labels, "text_labels", sim.shape[0])
    metrics = [f"recall@{k}" for k in ks] + (["class_recall@1"] if labels is not None else [])
    parts: dict[str, dict[str, list]] = {m: {"i2t": [], "t2i": []} for m in metrics}

    def add(metric, i2t, t2i):
        parts[metric]["i2t"].append(i2t.mean(axis=1))
        parts[metric]["t2i"].append(t2i.mean(axis=1))

    for batch in batches(idx):
        s = sim[batch[:, :, None], batch[:, None, :]]  # s[r, a, b] = S[i_a, i_b] in resample r
        diag = np.diagonal(s, axis1=1, axis2=2)
        competitor = batch[:, :, None] != batch[:, None, :]  # not a copy of the pair's item
        rank_i2t = 1 + np.sum((s >= diag[:, :, None] - tol) & competitor, axis=2)
        rank_t2i = 1 + np.sum((s >= diag[:, None, :] - tol) & competitor, axis=1)
        for k in ks:
            add(f"recall@{k}", rank_i2t <= k, rank_t2i <= k)
        if labels is not None:
            other = labels[batch][:, :, None] != text_labels[batch][:, None, :]
            top_i2t = s >= s.max(axis=2, keepdims=True) - tol
            top_t2i = s >= s.max(axis=1, keepdims=True) - tol
            add("class_recall@1", ~np.any(top_i2t & other, axis=2), ~np.any(top_t2i & other, axis=1))
    return {m: {d: np.concatenate(lists) if lists else np.zeros(0) for d, lists in v.items()} for m, v in parts.items()}


def evaluate_retrieval(
    img,
    txt,
    labels=None,
    *,
    ks: Sequence[int] = (1, 5),
    bootstrap: int = 1000,
    seed: int = 0,
    return_replicates: bool = False,
    text_labels=None,
) -> list[dict]:
    """Mean paired cosine, Recall@k and (with ``labels``) class-level Recall@1 of the
    test pairs ``img``/``txt``, with percentile bootstrap intervals.

    Rows, in order: ``mean_cosine`` (modality ``image-text``; replicates resample the
    pairs), then per metric ``recall@<k>`` (for each k <= n) and ``class_recall@1`` the
    modalities ``image-text`` (the mean of both directions, as the study reports),
    ``i2t`` and ``t2i``, whose replicates resample queries and gallery together and
    re-rank (:func:`gallery_replicates`), bias-corrected (:func:`recentred`). Resamples:
    ``bootstrap_indices(n, bootstrap, seed)``, shared by every metric, so models evaluated
    alike are paired. ``labels`` are the images' classes; ``text_labels`` the captions'
    (default ``labels``; give them when the captions were permuted among the images).
    """
    img, txt = check_pairs(img, txt)
    n = len(img)
    idx = bootstrap_indices(n, bootstrap, seed)
    cos = pair_cosines(img, txt)
    rows = [interval_row("mean_cosine", "image-text", cos.mean(), mean_replicates(cos, idx), n, return_replicates)]
    ks = [k for k in ks if k <= n]
    sim = similarity_matrix(img, txt)
    values = {f"recall@{k}": retrieval_hits(img, txt, k) for k in ks}
    if labels is not None:
        values["class_recall@1"] = class_hits(img, txt, labels, text_labels=text_labels)
    reps = gallery_replicates(sim, idx, ks, labels, text_labels=text_labels)
    for metric, hits in values.items():
        r = reps[metric]
        both = ((hits["i2t"] + hits["t2i"]) / 2).mean()  # the mean of per-item averages, as before
        rows.append(interval_row(metric, "image-text", both, recentred((r["i2t"] + r["t2i"]) / 2, both), n, return_replicates))
        for direction in ("i2t", "t2i"):
            value = hits[direction].mean()
            rows.append(interval_row(metric, direction, value, recentred(r[direction], value), n, return_replicates))
    return rows
