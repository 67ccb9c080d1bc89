"""Input checks shared by the metrics, and the package's one row normaliser.

Every public metric checks its arrays here first, so a wrong shape, a NaN or a label
vector of the wrong length fails with a message that names the argument, not deep in
numpy or scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_matrix(x: Any, name: str) -> np.ndarray:
    """``x`` as a finite, numeric, non-empty 2-D array (items, features)."""
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


def as_labels(y: Any, name: str, n: int) -> np.ndarray:
    """``y`` as a 1-D vector of ``n`` class labels; integer-valued floats become int64."""
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


def l2_normalize(x: Any, *, dtype=np.float64, zero_rows: str = "error") -> np.ndarray:
    """Rows scaled to unit Euclidean norm, computed and returned in ``dtype``: the one row
    normaliser of the package (the metrics, the plots and the survey tool all call it).

    ``zero_rows="error"`` (the metrics): ``x`` is checked first (:func:`as_matrix`) and a row
    of norm zero is an error, not a NaN, because cosine similarity is undefined there.
    ``zero_rows="keep"`` (the survey's stores and prompts): no checks, a 1-D vector is one
    row, and a zero row stays zero, so a blank vector ranks last instead of failing a search.
    """
    if zero_rows not in ("error", "keep"):
        raise ValueError(f"zero_rows must be 'error' or 'keep', not {zero_rows!r}")
    if zero_rows == "error":
        a = as_matrix(x, "x").astype(dtype)
    else:
        a = np.asarray(x, dtype=dtype)
        a = a[None] if a.ndim == 1 else a
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if zero_rows == "error" and np.any(norms == 0):
        raise ValueError(f"{int((norms == 0).sum())} row(s) have zero norm: cosine similarity is undefined")
    return a / np.where(norms > 0, norms, 1.0)
