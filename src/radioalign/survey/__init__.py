"""Survey tools: point SigLIP (base or a fine-tuned adapter) at anyone's radio cut-outs.

Ingest FITS/PNG/JPEG cut-outs, or catalogue positions cut from mosaics, into an
embedded LanceDB store (:func:`ingest`); label them zero-shot (:func:`classify`);
search them by text or image, within a cone on the sky (:func:`search`). The same
functions are the ``radioalign`` command (``radioalign.survey.cli``).

Modules: ``images`` (the MiraBest recipe and geometry), ``readers`` (FITS, pictures,
mosaics), ``store`` (LanceDB), ``encoder`` (model and fingerprint), ``ingest``,
``zeroshot``, ``search``, ``cli``. Heavy imports (torch, lancedb, astropy) are deferred
until a function needs them.

Import the functions from their modules (the package does not re-export them, so that
``radioalign.survey.search`` stays the module)::

    from radioalign.survey.ingest import ingest
    from radioalign.survey.zeroshot import classify
    from radioalign.survey.search import search, Cone
"""

