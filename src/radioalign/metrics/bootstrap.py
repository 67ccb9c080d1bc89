"""Bootstrap resamples of the test items, percentile intervals, and the result rows.

* **Resamples**: :func:`bootstrap_indices` draws ``B`` resamples of ``n`` test items with
  replacement from ``(n, B, seed)`` alone, so every metric of every model evaluated with
  the same arguments sees the same resamples, and the difference between two models
  (or two caption sets) can be bootstrapped pairwise: subtract their replicates.
* **Replicate**: the statistic recomputed on one resample. How a metric is recomputed is
  part of its definition (see ``classification`` and ``retrieval``); a per-item mean
  such as the mean paired cosine is :func:`mean_replicates`.
* **Interval**: the percentile interval, the ``(1 - level)/2`` and ``(1 + level)/2``
  quantiles of the replicates (numpy's default linear interpolation).
* **Row**: :func:`interval_row`, one metric's ``dict(metric, modality, value, low, high,
  n, B)``, the format every ``evaluate_*`` returns.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


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


def mean_replicates(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Replicates of a per-item mean: ``values[idx].mean(axis=1)``, shape (B,)."""
    return np.asarray(values)[idx].mean(axis=1)


def batches(idx: np.ndarray, items_per_batch: int = 2_000_000) -> Iterator[np.ndarray]:
    """``idx`` (B, n) in consecutive slices of whole resamples, each about
    ``items_per_batch`` / n**2 resamples, so (batch, n, n) work arrays stay a few MB."""
    B, n = idx.shape
    step = max(1, items_per_batch // max(1, n * n))
    for start in range(0, B, step):
        yield idx[start : start + step]


def interval_row(metric: str, modality: str, value: float, replicates, n: int, keep: bool = False) -> dict:
    """One result row: value, percentile interval of ``replicates``, n test items, B
    resamples, and with ``keep`` the replicates themselves (for paired differences)."""
    replicates = np.asarray(replicates, dtype=float)
    lo, hi = percentile_interval(replicates)
    row = dict(metric=metric, modality=modality, value=float(value), low=lo, high=hi, n=int(n), B=len(replicates))
    if keep:
        row["replicates"] = replicates
    return row


def difference_row(a, b, *, keep: bool = False, **fields) -> dict:
    """``a − b`` of two result rows (dicts or Series with ``metric, modality, value, n,
    replicates``) scored on the same resamples: the paired bootstrap difference, as a row
    of :func:`interval_row` with ``a``'s metric and modality; ``fields`` are added or override."""
    reps = np.asarray(a["replicates"], dtype=float) - np.asarray(b["replicates"], dtype=float)
    row = interval_row(a["metric"], a["modality"], a["value"] - b["value"], reps, a["n"], keep)
    return {**row, **fields}
