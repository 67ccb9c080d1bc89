"""The study: the paper reproduced with the library.

Profiles (``profiles``), where results go (``layout``), the inputs every notebook loads
(``inputs``), bundles and their tags (``bundles``), the LoRA runs (``runs``), the
evaluation of a bundle (``evaluation``) and Table 1 (``tables``), the figure registry and
the figures (``figures``), the controls (``text_controls``, ``pairs``, ``seeds``,
``rotations``, rendered by ``controls``), the deviation registry (``deviation_registry``,
read through :func:`deviations`) and the measurements behind its rows (``precision``,
``validation_mask``, ``published_controls``), and notebook 11's experiment
(``labelling_curves``). The library (``radioalign.data``, ``captions``, ``model``,
``embed``, ``train``, ``metrics``, ``plots``, ``text_baselines``, ``survey``) knows nothing
of these; the repository's tools (``radioalign.tools``: the notebook pipeline, the
indexes, the report, the benchmark, prefetching) sit on top and nothing here imports them.
"""


def deviations():
    """Every known difference between the paper, the authors' code and radioalign, as a
    DataFrame (``topic, paper, authors_code, radioalign, effect``); see
    ``radioalign.study.deviation_registry``. Imported on call, so that ``import
    radioalign.study`` stays light (no pandas)."""
    from .deviation_registry import deviations as _deviations

    return _deviations()
