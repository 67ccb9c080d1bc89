"""Search a store: text -> image and image -> image, optionally within a cone on the sky.

The score is the cosine similarity between the query vector and a source's stored
(L2-normalised) image vector, computed exactly for every returned source, so it means
the same with or without the IVF-PQ index (whose candidates are re-ranked exactly
with ``refine_factor``).

A cone search first asks LanceDB for the rows in a Dec band and an RA window that
contain the cone (the window allows for RA wrapping at 0/360 and widens to all RA
when the cone holds a pole), then keeps those whose great-circle separation from the
centre (haversine) is within the radius.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .store import SOURCES, Store, quote

RESULT_FIELDS = ("id", "name", "ra", "dec", "score", "source")
FORMATS = ("json", "csv", "votable")


@dataclass(frozen=True)
class Cone:
    """A circle on the sky: centre ``ra``, ``dec`` (ICRS degrees) and ``radius_arcsec``.

    Checked here, before any of it reaches a SQL filter: RA in [0, 360], Dec in
    [-90, 90], a positive finite radius (``radioalign.survey.sky`` parses the forms
    people type: sexagesimal, galactic, radii with units)."""

    ra: float
    dec: float
    radius_arcsec: float

    def __post_init__(self):
        for name, value in (("RA", self.ra), ("Dec", self.dec), ("radius", self.radius_arcsec)):
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise ValueError(f"cone {name} must be a finite number, not {value!r}")
        if not 0.0 <= self.ra <= 360.0:
            raise ValueError(f"cone RA must lie in [0, 360] degrees, not {self.ra:g}")
        if not -90.0 <= self.dec <= 90.0:
            raise ValueError(f"cone Dec must lie in [-90, 90] degrees, not {self.dec:g}")
        if not self.radius_arcsec > 0:
            raise ValueError(f"cone radius must be positive, not {self.radius_arcsec:g} arcsec")


def separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation in arcsec between points given in degrees (haversine)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (ra1, dec1, ra2, dec2))
    hav = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))) * 3600.0


def cone_where(cone: Cone) -> str:
    """A SQL filter for a Dec band and RA window that contain ``cone`` (a superset)."""
    r = cone.radius_arcsec / 3600.0
    eps = 1e-9
    lo_dec, hi_dec = cone.dec - r - eps, cone.dec + r + eps
    band = f"dec >= {lo_dec!r} AND dec <= {hi_dec!r}"
    # Half-width in RA of a cone (exact): asin(sin r / cos dec); all RA when the cone holds a pole.
    s = math.sin(math.radians(min(r, 90.0)))
    c = math.cos(math.radians(cone.dec))
    if lo_dec <= -90.0 or hi_dec >= 90.0 or s >= c:
        return band
    half = math.degrees(math.asin(s / c)) + eps
    ra = cone.ra % 360.0
    lo, hi = ra - half, ra + half
    if lo < 0:
        window = f"(ra >= {lo + 360.0!r} OR ra <= {hi!r})"
    elif hi >= 360.0:
        window = f"(ra >= {lo!r} OR ra <= {hi - 360.0!r})"
    else:
        window = f"ra >= {lo!r} AND ra <= {hi!r}"
    return f"{band} AND {window}"


def in_cone(rows: list[dict], cone: Cone) -> list[dict]:
    if not rows:
        return rows
    ra = np.array([r["ra"] for r in rows], dtype=np.float64)
    dec = np.array([r["dec"] for r in rows], dtype=np.float64)
    keep = separation_arcsec(cone.ra, cone.dec, ra, dec) <= cone.radius_arcsec
    return [r for r, k in zip(rows, keep) if k]


def nearest(
    store: Store, vector: np.ndarray, k: int = 10, cone: Cone | None = None, *, nprobes: int = 10, refine_factor: int = 10
) -> list[dict]:
    """The ``k`` sources most similar to the normalised ``vector`` (within ``cone``).

    With the IVF-PQ index, ``nprobes`` partitions are scanned and ``refine_factor * k``
    candidates re-ranked on their full vectors, so ``score`` is the exact cosine
    (``1 - _distance``) of every source returned; see ``make bench-survey`` for the recall
    these defaults reach."""
    if k < 1:
        raise ValueError("k must be >= 1")
    table = store.table(SOURCES)
    indexed = store.has_vector_index()
    vector = np.asarray(vector, np.float32).ravel()
    limit = k if cone is None else max(4 * k, 32)
    while True:
        query = table.search(vector, vector_column_name="vector").distance_type("cosine")
        query = query.select(["id", "name", "ra", "dec", "source", "_distance"]).limit(limit)
        if cone is not None:
            query = query.where(cone_where(cone), prefilter=True)
        if indexed:
            query = query.nprobes(nprobes).refine_factor(refine_factor)
        rows = query.to_arrow().to_pylist()
        returned = len(rows)
        if cone is not None:
            rows = in_cone(rows, cone)  # the SQL window is a superset of the cone
        if len(rows) >= k or returned < limit:
            break
        limit *= 4
    for row in rows:  # exact: the index's candidates are re-ranked on their full vectors
        row["score"] = 1.0 - float(row.pop("_distance"))
    rows.sort(key=lambda r: -r["score"])
    return [{f: row[f] for f in RESULT_FIELDS} for row in rows[:k]]


# ---------------------------------------------------------------------------
# Queries


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


def search(
    store: str | os.PathLike | Store,
    *,
    text: str | None = None,
    like: str | os.PathLike | None = None,
    k: int = 10,
    cone: Cone | Sequence[float] | None = None,
    encoder=None,
    model=None,
    adapter=None,
    device=None,
    prompts: str = "fr",
) -> list[dict]:
    """The ``k`` nearest sources to a text (``text``) or to an image (``like``: a source
    id or name in the store, or an image file), as dicts with ``id, name, ra, dec,
    score, source`` (and ``label, probability, p_<class>`` once the store is classified
    with ``prompts``), best first. The query's model is the store's own unless given,
    and must match it (``ModelMismatchError``). The query source itself, when ``like``
    names one, comes first with score 1. This is :meth:`radioalign.survey.Survey.search`
    (a :class:`~radioalign.survey.api.Results`, a list)."""
    from .api import Survey

    if (text is None) == (like is None):
        raise ValueError("give exactly one of text= or like=")
    survey = Survey(store, encoder=encoder, model=model, adapter=adapter, device=device, prompts=prompts)
    return survey.search(text, like=like, k=k, cone=cone)


# ---------------------------------------------------------------------------
# Output


def format_results(results: list[dict], fmt: str = "json") -> str:
    """Results as JSON (a list of objects), CSV (a header row) or a VOTable (UCDs and
    units: :mod:`.votable`); the columns are the results' own keys, in order."""
    from .api import Results

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    results = results if isinstance(results, Results) else Results(results)
    if fmt == "json":
        return results.to_json()
    if fmt == "csv":
        return results.to_csv()
    return results.to_votable().decode("utf-8")


def write_results(results: list[dict], fmt: str = "json", stream=None) -> None:
    (stream or sys.stdout).write(format_results(results, fmt))
