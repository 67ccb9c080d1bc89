"""radioalign: image-text alignment for radio galaxy morphologies.

Two layers, as open_clip keeps ``open_clip`` apart from ``open_clip_train``:

- the **library**, which works on anyone's images: ``data`` (MiraBest and a synthetic
  set), ``captions``, ``model`` (SigLIP loading, LoRA, model input), ``embed``,
  ``train`` (the LoRA loop), ``metrics`` (numpy/scikit-learn only), ``plots``,
  ``text_baselines`` (encoders that never saw an image), ``survey`` (the ``radioalign``
  command: FITS cut-outs in, zero-shot labels and search out), plus ``paths`` and
  ``provenance``;
- the **study** (``radioalign.study``), which uses the library to reproduce the paper:
  profiles, the results layout, bundles and tags, runs, tables, controls, figures, the
  deviation registry and the measurements behind it;
- the **tools** (``radioalign.tools``) around the study: the notebook pipeline, the
  generated indexes, the report, the benchmark and prefetching.

``radioalign.text_only_features(...)`` is importable from here without loading torch; the
deviation registry is the study's: ``radioalign.study.deviations()``. Nothing here imports
the study: the arrows run from the study to the library only.
"""

__version__ = "0.1.0"


def text_only_features(texts, encoder="tfidf", fit_texts=None):
    """``(N, D)`` features of ``texts`` from an encoder that never saw an image: ``"tfidf"``
    (fitted on ``fit_texts``, or on ``texts`` when none), ``"minilm"`` or a local folder
    of a sentence-transformers model; see ``radioalign.text_baselines``."""
    from .text_baselines import text_only_features as _features

    return _features(texts, encoder=encoder, fit_texts=fit_texts)
