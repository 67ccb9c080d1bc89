"""Shuffled image-caption pairs: the controls that tell instance alignment from class words.

Two ways to break the pairing of N images and their N captions (position i holds image i
and, after shuffling, the caption of image ``perm[i]``):

* **within class** (:func:`within_class_derangement`, :func:`shuffle_within_class`): each
  caption moves to another image *of the same class*. What a caption says about the
  class still matches its image; what it says about that one source does not. A model
  fine-tuned on these pairs can learn class words, never the instance.
* **across** (:func:`derangement`, :func:`shuffle_across`): each caption moves to another
  image, of whatever class. Both the instance and, up to the class balance, the class
  signal are gone.

Both are *derangements*: no caption stays with its own image, so not one true pair is
left. Within a class of one item that is impossible, and the item keeps its caption
(the only pair left). Permutations are drawn uniformly among the derangements (by
rejection: a uniform permutation has no fixed point with probability about 1/e).

Expected retrieval on pairs shuffled *across* (a model's rankings independent of the
pairing, or random embeddings): Recall@k = k/n and class-level Recall@1 = sum_c p_c^2,
where p_c is the share of class c among the n items (:func:`chance_levels`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Mode name -> what it does; run tags carry the mode as their variant.
SHUFFLE_MODES = {
    "withinclass": "captions permuted among images of the same class (class signal kept, instance signal gone)",
    "across": "captions permuted across all images (instance and class signal gone)",
}
MAX_TRIES = 10_000


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def derangement(n: int, rng=None) -> np.ndarray:
    """A uniformly drawn permutation of ``range(n)`` with no fixed point (``perm[i] != i``
    for every i); the identity for n < 2, where none exists. ``rng``: a Generator or a seed."""
    rng = _rng(rng)
    if n < 2:
        return np.arange(n)
    for _ in range(MAX_TRIES):
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm
    raise RuntimeError(f"no derangement of {n} items in {MAX_TRIES} draws")  # probability ~ (1 - 1/e)^10000


def within_class_derangement(labels: Sequence[int], rng=None) -> np.ndarray:
    """A permutation that maps each position to another position of the same class (a
    derangement within every class of at least two items; a class of one keeps its item)."""
    rng = _rng(rng)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("labels must be one-dimensional")
    perm = np.arange(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        perm[members] = members[derangement(len(members), rng)]
    return perm


def shuffle_across(texts: Sequence[str], rng=None) -> list[str]:
    """``texts`` permuted by :func:`derangement`: no text stays at its position."""
    perm = derangement(len(texts), rng)
    return [texts[j] for j in perm]


def shuffle_within_class(texts: Sequence[str], labels: Sequence[int], rng=None) -> list[str]:
    """``texts`` permuted by :func:`within_class_derangement` of ``labels``: each text moves
    to another position of its own class."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts for {len(labels)} labels")
    perm = within_class_derangement(labels, rng)
    return [texts[j] for j in perm]


def shuffle_permutation(mode: str, labels: Sequence[int], rng=None) -> np.ndarray:
    """The permutation of ``mode`` (a key of :data:`SHUFFLE_MODES`) for items with ``labels``."""
    if mode == "withinclass":
        return within_class_derangement(labels, rng)
    if mode == "across":
        return derangement(len(labels), rng)
    raise ValueError(f"unknown shuffle mode {mode!r}; choose one of {sorted(SHUFFLE_MODES)}")


def chance_levels(labels: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Expected retrieval when the rankings carry no pairing information:
    ``recall@k`` = k/n (the paired item's rank is uniform over n) and ``class_recall@1`` =
    sum_c p_c^2 (the top item is a uniform draw of the n items, whose class matches the
    query's with probability p_c for a query of class c)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise ValueError("no items")
    out = {f"recall@{k}": min(k, n) / n for k in ks}
    shares = np.unique(labels, return_counts=True)[1] / n
    out["class_recall@1"] = float(np.sum(shares**2))
    return out
