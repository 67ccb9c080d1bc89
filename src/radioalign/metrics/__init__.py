"""The study's metrics on embeddings, each with a bootstrap interval.

numpy, scipy and scikit-learn only: importing this package does not import torch. Arrays
in, numbers and rows out; nothing here knows of bundles, profiles or the results layout
(the study's ``radioalign.study.evaluation`` applies these to its embedding bundles).

* :mod:`.classification`: linear probes (the authors' protocol, ported from torch, and a
  scikit-learn probe), KNN, F1, concatenated features; ``evaluate_classification``.
* :mod:`.retrieval`: paired cosines, similarity, ranks (ties against the pair),
  Recall@k, class-level Recall@1; ``evaluate_retrieval`` with intervals that resample
  queries and gallery together.
* :mod:`.bootstrap`: shared resamples of the test items, percentile intervals, rows.

Each module's docstring states its definitions. The ``evaluate_*`` functions return
rows ``dict(metric, modality, value, low, high, n, B)`` (plus ``replicates`` on request),
with the same resamples for every metric and model evaluated with the same
``(n, B, seed)``, so differences can be bootstrapped pairwise.
"""

from .arrays import as_labels, as_matrix, l2_normalize
from .bootstrap import batches, bootstrap_indices, difference_row, interval_row, mean_replicates, percentile_interval
from .classification import (
    PAPER_PROBE,
    check_probe_inputs,
    concat_features,
    evaluate_classification,
    f1_replicates,
    f1_scores,
    knn_f1,
    knn_f1_replicates,
    knn_predictions,
    linear_probe_f1,
    probe_f1_replicates,
    probe_predictions,
    single_thread,
    torch_linear_init,
)
from .retrieval import (
    DIRECTIONS,
    TIE_TOL,
    check_pairs,
    class_hits,
    class_recall_at_1,
    evaluate_retrieval,
    gallery_replicates,
    mean_cosine,
    pair_cosines,
    pair_ranks,
    recall_at_k,
    recentred,
    retrieval_hits,
    similarity_matrix,
)

__all__ = [
    "DIRECTIONS",
    "PAPER_PROBE",
    "TIE_TOL",
    "as_labels",
    "as_matrix",
    "batches",
    "bootstrap_indices",
    "check_pairs",
    "check_probe_inputs",
    "class_hits",
    "class_recall_at_1",
    "concat_features",
    "evaluate_classification",
    "evaluate_retrieval",
    "f1_replicates",
    "f1_scores",
    "gallery_replicates",
    "difference_row",
    "interval_row",
    "knn_f1",
    "knn_f1_replicates",
    "knn_predictions",
    "l2_normalize",
    "linear_probe_f1",
    "mean_cosine",
    "mean_replicates",
    "pair_cosines",
    "pair_ranks",
    "percentile_interval",
    "probe_f1_replicates",
    "probe_predictions",
    "recall_at_k",
    "recentred",
    "retrieval_hits",
    "similarity_matrix",
    "single_thread",
    "torch_linear_init",
]
