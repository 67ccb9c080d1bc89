"""Repository tools around the study: running it, indexing it, benchmarking, prefetching, the report.

They sit on top of the study, as PythonDataScienceHandbook keeps its ``tools/`` apart
from the book: ``pipeline`` (``make paper``, ``make references``: the numbered notebooks
run headless), ``notebooks_index`` (``make notebooks-index``: the generated parts of the
notebooks and the README), ``report`` (``make pdf``), ``bench`` (``make bench``) and
``download`` (``make download``). Tools may import the study and the library; neither
imports a tool, so editing one reruns no notebook.
"""
