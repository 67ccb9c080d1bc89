"""Survey tools: point SigLIP (base or a fine-tuned adapter) at anyone's radio cut-outs.

Ingest FITS/PNG/JPEG cut-outs, or catalogue positions cut from mosaics, into an
embedded LanceDB store (:func:`ingest`); label them zero-shot (:func:`classify`);
search them by text or image, within a cone on the sky, describe, export and prune
them (:class:`Survey`); teach the store with a person's labels: a probe on the stored
vectors, calibrated predictions with conformal sets that abstain, and the sources worth
labelling next (``labelling``). The same functions are the ``radioalign`` command
(``radioalign.survey.cli``) and the search page (``serve``).

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
    survey.delete(["3f2a9c0d1e4b5a6c"])              # sources, with their labels and predictions

    survey.label({"J0003": "FR-I", "3f2a9c0d1e4b5a6c": "FR-II"})   # by name or id; import_labels(FILE) too
    survey.suggest(20, text="a bent-tail radio galaxy")             # what to label next (by text before any label)
    summary = survey.classify_probe(alpha=0.1, abstain=True)       # a probe with the prompts as prior
    summary.cv_macro_f1, summary.coverage                           # measured on the labelled set
    survey.search(like="J0003")[0]["prediction_set"]                # e.g. "FR-I|FR-II": not sure

Modules, one job each (heavy imports: torch, lancedb, astropy, scikit-learn, deferred
until a function needs them; ``Survey``, ``Results`` and ``Cone`` are imported from here
on first use)::

    images        the MiraBest recipe and geometry: survey images to model input, thumbnails
    readers       reading inputs: FITS cut-outs, PNG/JPEG pictures, cut-outs from mosaics
    catalogs      catalogue tables: positions and names by column name or UCD
    sky           positions and radii as typed: sexagesimal, units, galactic
    cone          a cone on the sky and the filters that find the sources inside it
    store         the store: an embedded LanceDB database on disk
    ann           the store's vector index, in memory and persisted beside the store
    encoder       a SigLIP model (optionally with an adapter) and its fingerprint
    ingest        inputs -> model input -> image vectors -> the store
    ray_ingest    the same ingest across machines on a Ray cluster
    zeroshot      zero-shot labels for every source, from prompt sets
    query         the vector of a stored source or an image file; the sources nearest a vector
    search        text -> image and image -> image search, optionally within a cone
    neighbours    the k nearest sources of every source, in batches
    labels        people's labels: the user_labels table, added, imported, removed, listed
    calibration   temperature/Platt scaling, conformal prediction sets and their coverage
    probe         the zero-shot prior, the labelling probe and the probe_predictions table
    suggestions   the unlabelled sources worth labelling next: uncertain and diverse
    annotations   the labels and predictions each search result and export carries
    retraining    the probe retrained in a background thread for the search page
    labelling     one import for labels, calibration, probe, suggestions, annotations, retraining
    api           the Python API (:class:`Survey`)
    votable       UCDs, units and descriptions; VOTables
    serve         the search and labelling page, Simple Cone Search, SAMP (``static/``: the page)
    uploads       images uploaded to the page, read under caps against hostile input
    cli           the ``radioalign`` command
    bench         the survey benchmark (``make bench-survey``)
    bench_ann     search side by side against FAISS, hnswlib and exact numpy

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
