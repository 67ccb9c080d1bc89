"""The study: the paper reproduced with the library.

Profiles (``profiles``), where results go (``layout``), the inputs every notebook loads
(``inputs``), bundles and their tags (``bundles``), the LoRA runs (``runs``), Table 1
(``tables``), the figure registry and the figures (``figures``), the notebook pipeline
(``pipeline``), the report (``report``), the benchmark (``bench``) and prefetching for
offline nodes (``download``). The library (``radioalign.data``, ``captions``, ``model``,
``embed``, ``train``, ``metrics``, ``plots``) knows nothing of these.
"""
