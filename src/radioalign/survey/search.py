"""Search a store: text -> image and image -> image, optionally within a cone on the sky.

Queries are answered by the store's vector index (:mod:`.ann`): exact below
``ann.EXACT_BELOW`` sources, an HNSW graph over 8-bit codes above, built or loaded at the
first query and checked against the store's version before each one. The score is the
cosine similarity between the query vector and a source's stored (L2-normalised) image
vector, computed exactly for every returned source on every path; equal scores are
ordered by id.

A cone search keeps the sources in a Dec band and an RA window that contain the cone (the
window allows for RA wrapping at 0/360 and widens to all RA when the cone holds a pole),
then those whose great-circle separation from the centre (haversine) is within the
radius; it ranks them exactly when the cone holds at most ``ann.CONE_EXACT`` sources.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from .cone import Cone, cone_where, dec_band, in_cone, ra_window, separation_arcsec
from .query import RESULT_FIELDS, file_image, file_vector, nearest, stored_vector
from .store import Store

FORMATS = ("json", "csv", "votable")
__all__ = ["Cone", "FORMATS", "RESULT_FIELDS", "cone_where", "dec_band", "file_image", "file_vector", "format_results", "in_cone",
           "nearest", "ra_window", "search", "separation_arcsec", "stored_vector", "write_results"]  # the search API, in one place


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
