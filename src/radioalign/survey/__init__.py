"""Survey tools: point SigLIP (base or a fine-tuned adapter) at anyone's radio cut-outs.

Ingest FITS/PNG/JPEG cut-outs, or catalogue positions cut from mosaics, into an
embedded LanceDB store (:func:`ingest`); label them zero-shot (:func:`classify`);
search them by text or image, within a cone on the sky, describe, export and prune
them (:class:`Survey`). The same functions are the ``radioalign`` command
(``radioalign.survey.cli``).

The Python API (``radioalign.survey.api``)::

    from radioalign.survey import Survey

    survey = Survey.open("first.lance")              # the store's own model, loaded at the first query
    hits = survey.search("a bent-tail radio galaxy with a bright core", k=10)
    hits = survey.search(like="J0003", cone=(194.2, 12.6, 600))           # a stored source; radius in arcsec
    hits = survey.search(image="my_cutout.fits", cone=("12:56:47", "+12:36:00", "10arcmin"))
    table = hits.to_table()                          # astropy Table with UCDs: SkyCoord(table["ra"], table["dec"])
    frame = hits.to_pandas()                         # hits is also a list of dicts (label, probability when classified)
    survey.info()["sources"], survey.errors()        # counts, model, index ...; the inputs that failed
    survey.export("first.parquet", vectors=True)     # every source once: votable, csv, parquet or fits
    survey.delete(["3f2a9c0d1e4b5a6c"])              # sources, with their labels

Modules: ``images`` (the MiraBest recipe and geometry), ``readers`` (FITS, pictures,
mosaics), ``store`` (LanceDB), ``encoder`` (model and fingerprint), ``ingest``,
``zeroshot``, ``search``, ``api``, ``votable``, ``cli``. Heavy imports (torch,
lancedb, astropy) are deferred until a function needs them: ``Survey``, ``Results``
and ``Cone`` are imported from here on first use.

Import the pipeline's functions from their modules (the package does not re-export
them, so that ``radioalign.survey.search`` stays the module)::

    from radioalign.survey.ingest import ingest
    from radioalign.survey.zeroshot import classify
    from radioalign.survey.search import search, Cone
"""

__all__ = ["Cone", "Results", "Survey"]


def __getattr__(name: str):
    """``Survey``, ``Results`` and ``Cone``, imported on first use (PEP 562), so that
    ``import radioalign.survey`` stays light. (Plain imports, which the notebook
    pipeline's step keys follow.)"""
    if name in ("Survey", "Results"):
        from . import api

        return getattr(api, name)
    if name == "Cone":
        from .search import Cone

        return Cone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
