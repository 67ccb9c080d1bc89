"""The study: the paper reproduced with the library.

Profiles (``profiles``), where results go (``layout``), the inputs every notebook loads
(``inputs``), bundles and their tags (``bundles``), the LoRA runs (``runs``), the
evaluation of a bundle (``evaluation``) and Table 1 (``tables``), the figure registry and
the figures (``figures``), the controls (``text_controls``, ``pairs``, ``seeds``,
``rotations``, rendered by ``controls``), the deviation registry (``deviations``) and the
bf16 measurement behind one of its rows (``precision``), the notebook pipeline
(``pipeline``), the generated parts of the notebooks and README (``notebooks_index``), the
report (``report``), the benchmark (``bench``) and prefetching for offline nodes
(``download``). The library (``radioalign.data``, ``captions``, ``model``, ``embed``,
``train``, ``metrics``, ``plots``, ``text_baselines``, ``survey``) knows nothing of these.
"""
