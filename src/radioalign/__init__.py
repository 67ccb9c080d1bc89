"""radioalign: image-text alignment for radio galaxy morphologies.

A thin, tested package behind the numbered notebooks in ``notebooks/``.
Modules are named after what they hold: ``data``, ``captions``, ``model``,
``embed``, ``train``, ``metrics``, ``tables``, ``plots``, ``bench``, plus
``paths``, ``profiles`` and ``provenance`` for where things go and how they
are stamped.
"""

__version__ = "0.1.0"
