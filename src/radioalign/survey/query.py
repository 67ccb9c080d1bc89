"""Queries of a store: the vector of a stored source or of an image file, and the sources
nearest to a vector (through the store's index, :mod:`.ann`).

The score is the cosine similarity between the query vector and a source's stored
(L2-normalised) image vector, computed exactly for every returned source on every path
(exact, HNSW, cone); equal scores are ordered by id.
"""

from __future__ import annotations

import os

import numpy as np

from .cone import Cone
from .store import Store, quote

RESULT_FIELDS = ("id", "name", "ra", "dec", "score", "source")


def nearest(store: Store, vector: np.ndarray, k: int = 10, cone: Cone | None = None, *, ef: int | None = None) -> list[dict]:
    """The ``k`` sources most similar to ``vector`` (within ``cone``), best first, as
    ``{id, name, ra, dec, score, source}``: ``score`` is the exact cosine.

    Through the store's index (:func:`.ann.query`): exact below ``ann.EXACT_BELOW``
    sources; above, an HNSW graph walk with ``ef`` candidates (default ``ann.EF_SEARCH``;
    see ``make bench-survey`` for the recall it reaches), re-ranked on the full vectors."""
    from . import ann

    if k < 1:
        raise ValueError("k must be >= 1")
    return ann.query(store, vector, k, cone, ef)


def stored_vector(store: Store, key: str) -> np.ndarray | None:
    """The stored vector of the source whose id, else name, is ``key`` (None if absent)."""
    for column in ("id", "name"):
        rows = store.rows_where(f"{column} = {quote(key)}", ["vector"], limit=1)
        if rows:
            return np.asarray(rows[0]["vector"], np.float32)
    return None


def file_image(path: str | os.PathLike) -> np.ndarray:
    """The model input of a FITS/PNG/JPEG file, preprocessed as at ingest; a file that
    cannot be read or preprocessed raises ``ValueError`` saying why, in one line."""
    from .images import model_image
    from .readers import read_file

    try:
        image, _ = model_image(read_file(path))
    except Exception as err:  # noqa: BLE001 - astropy and PIL fail in many ways on a bad file
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ValueError(f"{path} cannot be read as an image (FITS, PNG, JPEG): {reason}") from err
    return image


def file_vector(encoder, path: str | os.PathLike, image: np.ndarray | None = None) -> np.ndarray:
    """The image vector of a FITS/PNG/JPEG file (or of its ``image`` from :func:`file_image`)."""
    image = file_image(path) if image is None else image
    return encoder.images(image[None])[0]
