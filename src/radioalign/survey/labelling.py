"""Labelling a store: people's labels, a probe on the stored vectors, sets that abstain, suggestions.

One import for the labelling modules' public names (the command line, the API, the page
and notebook 11 import from here); each is defined, with its definitions, in its module:

``labels``        the ``user_labels`` table: add, import, remove, list, forget; :class:`LabellingError`
``calibration``   temperature/Platt scaling, conformal thresholds and sets, their coverage
``probe``         the zero-shot :class:`Prior`, :class:`LabelProbe`, and the ``probe_predictions`` table
``suggestions``   the sources worth labelling next: uncertain, diverse, or close to a text query
``annotations``   the labels and predictions per source that search results and exports carry
``retraining``    :class:`BackgroundProbe`, the probe retrained in a thread for the search page

The command line: ``radioalign label``, ``classify --probe [--abstain] [--alpha]`` and
``suggest``.
"""

from __future__ import annotations

from .annotations import AnnotationIndex, Annotations, prediction_model
from .calibration import (FOLDS, LogitCalibrator, clopper_pearson, conformal_quantile, conformal_sets, conformal_thresholds,
                          cross_validated_coverage, log_loss, mondrian_minimum, set_labels, softmax)  # fmt: skip
from .labels import (CLASS_COLUMNS, ID_COLUMNS, NAME_COLUMNS, ORIGINS, PREDICTIONS, SEPARATOR, USER_LABELS, ImportSummary,
                     LabellingError, add_labels, check_class, forget, import_labels, labelled_sources, read_label_table,
                     remove_labels, resolve_sources, user_labels, user_labels_of, user_labels_schema)  # fmt: skip
from .probe import (C_FEW, C_GRID, MIN_CV_LABELS, MODELS, LabelProbe, Prior, ProbeSummary, classify_probe, fit_probe,
                    labelled_vectors, macro_f1, predictions_of, predictions_schema, train_probe, zero_shot_prior)  # fmt: skip
from .retraining import BackgroundProbe
from .suggestions import diverse_order, pool_size, query_vector, rank_scores, suggest, suggest_indices, uncertainty

__all__ = [
    "USER_LABELS", "PREDICTIONS", "ORIGINS", "MODELS", "C_GRID", "C_FEW", "MIN_CV_LABELS", "FOLDS", "SEPARATOR",
    "ID_COLUMNS", "NAME_COLUMNS", "CLASS_COLUMNS", "LabellingError", "user_labels_schema", "predictions_schema", "Prior",
    "softmax", "log_loss", "LogitCalibrator", "conformal_quantile", "mondrian_minimum", "conformal_thresholds",
    "conformal_sets", "set_labels", "cross_validated_coverage", "clopper_pearson", "macro_f1", "LabelProbe", "fit_probe",
    "uncertainty", "diverse_order", "pool_size", "rank_scores", "suggest_indices", "resolve_sources", "check_class",
    "add_labels", "remove_labels", "user_labels", "user_labels_of", "forget", "read_label_table", "ImportSummary",
    "import_labels", "labelled_vectors", "zero_shot_prior", "train_probe", "ProbeSummary", "classify_probe",
    "predictions_of", "suggest", "query_vector", "prediction_model", "Annotations", "AnnotationIndex", "labelled_sources",
    "BackgroundProbe",
]  # fmt: skip
