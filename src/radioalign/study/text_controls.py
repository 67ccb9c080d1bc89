"""Notebook 07's rows: do the captions carry the morphology by themselves?

Two controls, each as rows in the controls' format (``evaluation.ROW_COLUMNS`` plus
columns of their own), written to ``results/<profile>/controls/`` by
:func:`radioalign.study.controls.write_control`:

* **Text-only baselines** (:func:`text_baseline_rows`, ``text_baselines.csv``): Table 1's
  probes (the paper's linear probe, the scikit-learn probe, KNN; ``radioalign.metrics``)
  on caption features from encoders that never saw an image (``radioalign.text_baselines``:
  TF-IDF fitted on the training captions, MiniLM), trained on the training captions and
  scored on the test captions. Intervals: the study's resamples of the test items
  (``bootstrap_indices(n_test, B, seed)``, as Table 1), so ``<set>-control`` differences
  are paired. :func:`cv_rows` adds stratified k-fold cross-validation on one labelled set
  (the published test captions, whose training labels need ``MiraBest_full``): value the
  mean over folds, ``low``/``high`` the lowest and highest fold, ``B`` = 0.
* **Caption audit** (:func:`audit_rows`, ``audit.csv``): per caption set
  (``radioalign.captions.audit``), each attribute's share by class (``share``, group
  ``FR-I``/``FR-II``), its FR-II odds ratio (``odds_ratio``, Wald interval, B = 0), the
  contradiction rate, the share of captions the text tower's token limit cuts
  (``truncated``) and, per attribute, the share of captions losing it in the cut part
  (``lost_in_cut``); with hand-edit flags, ``share``, ``contradiction`` and ``truncated``
  for the edited and the unedited captions (groups ``edited``/``unedited``). Shares carry
  percentile intervals over resamples of the group's captions.

Columns besides ``ROW_COLUMNS``: ``source`` (caption source), ``split``, ``evaluation``
(``train-test`` or ``cv<k>``), ``encoder``, ``dim`` (baselines); ``attribute`` and
``group`` (audit). ``model`` and ``tag`` name the encoder (baselines) or ``captions``
(audit: no model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..captions.audit import ATTRIBUTES, CLASS_NAMES, contradictions
from ..metrics import bootstrap_indices, evaluate_classification, interval_row, mean_replicates
from ..text_baselines import PROBES, cross_validated_text_f1, text_only_features
from .evaluation import ROW_COLUMNS
from .tables import paired_differences

# The probe -> Table 1's metric name and the F1 it reports (linear probes: binary, FR-II positive; KNN: macro).
PROBE_METRICS = {"paper": ("linear_probe_f1", "f1_binary"), "sklearn": ("linear_probe_f1_sklearn", "f1_binary"),
                 "knn": ("knn_f1", "f1_macro")}
TRAIN_TEST = "train-test"
AUDIT_MODEL = "captions"


def _frame(rows: list[dict], extra: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return frame[[c for c in [*ROW_COLUMNS, *extra] if c in frame.columns]] if len(frame) else pd.DataFrame(columns=[*ROW_COLUMNS, *extra])


# ------------------------------------------------------------------ text baselines


def text_baseline_rows(
    texts: Mapping[str, Mapping[str, Sequence[str]]],
    train_labels,
    test_labels,
    encoders: Sequence[str] = ("tfidf", "minilm"),
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    baseline: str = "control",
    sources: Mapping[str, str] | str = "",
) -> pd.DataFrame:
    """Table 1's probes on text-only features of each caption set, train -> test.

    ``texts[set]["train" | "test"]``: the captions in dataset order. Rows per (encoder,
    set): ``linear_probe_f1``, ``linear_probe_f1_sklearn``, ``knn_f1`` (modality ``text``),
    then, per other set, the paired difference ``<set>-<baseline>`` when ``baseline`` is
    among the sets. TF-IDF is fitted on the training captions only. ``sources``: the
    caption source of every set, or ``{set: source}`` (a difference takes its first set's).
    """
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    frames = []
    for encoder in encoders:
        for captions, split in texts.items():
            train_x = text_only_features(split["train"], encoder, fit_texts=split["train"])
            test_x = text_only_features(split["test"], encoder, fit_texts=split["train"])
            rows = evaluate_classification({"text": (train_x, test_x)}, ytr, yte, protocols=("paper", "sklearn"),
                                           bootstrap=bootstrap, seed=seed, return_replicates=True)  # fmt: skip
            frame = pd.DataFrame(rows).assign(model=str(encoder), tag=str(encoder), captions=captions, dim=train_x.shape[1])
            frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    if baseline in texts and len(texts) > 1:
        diffs = paired_differences(df, baseline=baseline)
        df = pd.concat([df, diffs.assign(dim=np.nan)], ignore_index=True)
    source = df["captions"].str.split("-").str[0].map(lambda c: sources if isinstance(sources, str) else sources.get(c, ""))
    df = df.drop(columns="replicates").assign(source=source, split="test", evaluation=TRAIN_TEST, encoder=df["model"])
    return _frame(df.to_dict("records"), ["source", "split", "evaluation", "encoder", "dim"])


def cv_rows(
    texts: Mapping[str, Sequence[str]],
    labels,
    encoders: Sequence[str] = ("tfidf", "minilm"),
    *,
    folds: int = 5,
    seed: int = 0,
    source: str = "published",
    split: str = "test",
) -> pd.DataFrame:
    """Stratified ``folds``-fold cross-validated F1 of each probe on each caption set of one
    labelled split (``texts[set]`` in the order of ``labels``), TF-IDF refitted per training
    fold (``text_baselines.cross_validated_text_f1``). Value: the mean over folds;
    ``low``/``high``: the lowest and highest fold; ``sd``: their standard deviation."""
    y = np.asarray(labels)
    rows = []
    for encoder in encoders:
        for captions, captions_texts in texts.items():
            for probe in PROBES:
                metric, f1 = PROBE_METRICS[probe]
                cv = cross_validated_text_f1(list(captions_texts), y, encoder=encoder, folds=folds, seed=seed, probe=probe)
                per_fold = cv["folds"][f1]
                rows.append(dict(model=str(encoder), tag=str(encoder), captions=captions, metric=metric, modality="text",
                                 value=float(per_fold.mean()), low=float(per_fold.min()), high=float(per_fold.max()),
                                 n=len(y), B=0, source=source, split=split, evaluation=f"cv{folds}", encoder=str(encoder),
                                 sd=float(per_fold.std(ddof=1))))  # fmt: skip
    return _frame(rows, ["source", "split", "evaluation", "encoder", "sd"])


PUBLISHED_PROMPTS = ("curated", "control")


def published_test_captions(folders: Sequence) -> tuple[dict[str, pd.DataFrame] | None, str]:
    """The labelled published test captions, ``({prompt: records}, where)`` from the first of
    ``folders`` (None entries skipped) holding both prompts' test files, or ``(None, why not)``.

    Records as ``captions.published.load_published_records`` gives them (sha256-checked);
    the control file has no labels of its own: row i is item i of the same Confident test
    split, so it takes the curated file's ``label`` (and ``edited`` stays the curated file's
    flag only there)."""
    from pathlib import Path

    from ..captions.published import FILES, load_published_records

    names = [FILES[prompt, "test"][0] for prompt in PUBLISHED_PROMPTS]
    for folder in (Path(f) for f in folders if f is not None):
        if all((folder / name).is_file() for name in names):
            records = {prompt: load_published_records(prompt, "test", folder) for prompt in PUBLISHED_PROMPTS}
            records["control"] = records["control"].assign(label=records["curated"]["label"].to_numpy())
            return records, str(folder)
    return None, f"none of the folders holds {' and '.join(names)}"


# ----------------------------------------------------------------------- the audit


def _share_row(metric: str, flags, *, bootstrap: int, seed: int, **columns) -> dict:
    """The share of True in ``flags`` with a percentile interval over resamples of its items."""
    flags = np.asarray(flags, dtype=float)
    if len(flags) == 0:
        return dict(metric=metric, value=np.nan, low=np.nan, high=np.nan, n=0, B=0, **columns)
    reps = mean_replicates(flags, bootstrap_indices(len(flags), bootstrap, seed)) if bootstrap else np.zeros(0)
    return {**interval_row(metric, columns.pop("modality"), flags.mean(), reps, len(flags)), **columns}


def audit_rows(
    audit: Mapping, labels=None, *, captions: str, edited=None, bootstrap: int = 1000, seed: int = 0,
    source: str = "", split: str = "all",
) -> pd.DataFrame:
    """One caption set's audit (``radioalign.captions.audit.audit_captions``) as rows (module
    docstring). ``labels`` and ``edited`` as given to ``audit_captions``."""
    attrs, table, truncation = audit["attributes"], audit["table"], audit["truncation"]
    base = dict(model=AUDIT_MODEL, tag=AUDIT_MODEL, captions=captions, source=source, split=split)
    opts = dict(bootstrap=bootstrap, seed=seed)
    y = None if labels is None else np.asarray(labels)
    groups = {"all": np.ones(len(attrs), dtype=bool)}
    if y is not None:
        groups.update({name: y == cls for cls, name in CLASS_NAMES.items()})
    if edited is not None:
        flags = np.asarray(edited, dtype=bool)
        groups.update(edited=flags, unedited=~flags)
    contradiction = None if y is None else contradictions(attrs, y).to_numpy()
    rows = []
    for group, mask in groups.items():
        for name in ATTRIBUTES:
            rows.append(_share_row("share", attrs[name].to_numpy()[mask], modality=name, attribute=name, group=group, **base, **opts))
        if contradiction is not None:
            rows.append(_share_row("contradiction", contradiction[mask], modality="caption", attribute="", group=group, **base, **opts))
        if truncation is not None:
            rows.append(_share_row("truncated", truncation["truncated"].to_numpy()[mask], modality="caption", attribute="",
                                   group=group, **base, **opts))  # fmt: skip
    if truncation is not None:
        for name in ATTRIBUTES:
            lost = truncation["lost"].map(lambda lost, a=name: a in lost).to_numpy()
            rows.append(_share_row("lost_in_cut", lost, modality=name, attribute=name, group="all", **base, **opts))
    if "odds_ratio" in table.columns:
        for name in ATTRIBUTES:
            r = table.loc[name]
            rows.append(dict(metric="odds_ratio", modality=name, value=r["odds_ratio"], low=r["or_low"], high=r["or_high"],
                             n=len(attrs), B=0, attribute=name, group="FR-II vs FR-I", **base))  # fmt: skip
    return _frame(rows, ["source", "split", "attribute", "group"])
