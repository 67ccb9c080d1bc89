"""Notebook 09's rows: the study's metrics under the 8 rotations and flips of the test images.

A radio source has no preferred orientation, but the curated prompt asks for positions
(left, right, top), so a rotated image no longer matches its caption. For one model:

* :func:`transform_views` embeds the 8 D4 transforms of the test images
  (``radioalign.embed.d4_transform``, names in ``D4_NAMES``; ``identity`` first), shape
  ``(8, n, D)``.
* :func:`transform_rows`: per transform, retrieval against the true test captions
  (``recall@1``, ``recall@5``, ``class_recall@1``, modality ``image-text``: the mean of
  both directions, as Table 1) and the image probes (``linear_probe_f1``, the paper's
  probe, and ``knn_f1``) **trained once on the untransformed training images** and applied
  to each transform. Then per metric, rows of the change against ``identity``: each
  transform minus identity (``transform = <name>-identity``) and the mean of the 7 others
  minus identity (``transform = rotated-identity``), with paired intervals: every row uses
  ``bootstrap_indices(n_test, B, seed)``, the study's resamples.
* :func:`tta_rows` (a control of its own, ``tta.csv``): the image probe and KNN on
  test-time D4-averaged features (``embed_images(..., tta="d4")`` for train and test)
  against the plain ones, and the paired difference (column ``tta``: ``none``, ``d4``,
  ``d4-none``).

Columns besides ``ROW_COLUMNS``: ``transform`` (:func:`transform_rows`), ``tta``
(:func:`tta_rows`).

The notebook's loop is :func:`rotation_controls` (every chosen model: its views, its rows,
its D4 averaging), with :func:`rotation_models` choosing the models and
:func:`write_rotation_controls` writing the two CSVs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..embed import D4_NAMES, d4_transform, embed_images
from ..metrics import (
    bootstrap_indices,
    check_probe_inputs,
    difference_row,
    evaluate_classification,
    evaluate_retrieval,
    f1_replicates,
    f1_scores,
    interval_row,
    knn_predictions,
    probe_predictions,
)
from .evaluation import ROW_COLUMNS


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

RETRIEVAL = ("recall@1", "recall@5", "class_recall@1")
ROTATED = "rotated"  # the mean over the 7 transforms other than identity
EXTRA_COLUMNS = ["transform"]


def transform_views(model, images: np.ndarray, **embed_options) -> np.ndarray:
    """Image embeddings of the 8 D4 transforms of ``images``: ``(8, n, D)``, in ``D4_NAMES`` order.
    ``embed_options`` go to ``embed_images`` (preprocessing, dtype, cache_dir, progress, ...)."""
    return np.stack([embed_images(model, d4_transform(images, k), **embed_options) for k in range(len(D4_NAMES))])


def _probe_replicates(train_x, train_y, views, test_y, idx, seed: int) -> dict[str, list[tuple[float, np.ndarray]]]:
    """Per probe, ``[(F1, replicates)]`` per view: each probe is trained once and predicts
    every view (all views stacked in one call: a probe's prediction of a row does not
    depend on the other rows)."""
    n = len(test_y)
    stacked = np.concatenate(list(views))
    train_x, train_y, _, _, classes = check_probe_inputs(train_x, train_y, stacked, np.tile(test_y, len(views)), "binary")
    out = {}
    for metric, average, preds in (
        ("linear_probe_f1", "binary", probe_predictions(train_x, train_y, stacked, protocol="paper", seed=seed)),
        ("knn_f1", "macro", knn_predictions(train_x, train_y, stacked)[None, :]),
    ):
        per_view = [preds[:, k * n : (k + 1) * n] for k in range(len(views))]
        out[metric] = [(float(f1_scores(test_y, p, classes, average).mean()), f1_replicates(test_y, p, classes, average, idx))
                       for p in per_view]  # fmt: skip
    return out


def _difference_row(metric, modality, value, reps, n, transform) -> dict:
    return {**interval_row(metric, modality, value, reps, n), "transform": transform}


def transform_rows(
    views: np.ndarray, test_text, train_x, train_y, test_y, *, bootstrap: int = 1000, seed: int = 0,
    names: Sequence[str] = D4_NAMES,
) -> pd.DataFrame:
    """Retrieval and image-probe rows per transform, and the changes against identity (module
    docstring). ``views``: ``(8, n, D)`` from :func:`transform_views` (identity first);
    ``test_text``: the true test captions' embeddings under the same model."""
    views = np.asarray(views)
    test_y = np.asarray(test_y)
    if views.ndim != 3 or len(views) != len(names) or views.shape[1] != len(test_y):
        raise ValueError(f"views must be ({len(names)}, n_test={len(test_y)}, D), got {views.shape}")
    n = len(test_y)
    idx = bootstrap_indices(n, bootstrap, seed)
    found: dict[tuple[str, str], list[tuple[float, np.ndarray]]] = {}
    for view in views:
        for row in evaluate_retrieval(view, test_text, test_y, bootstrap=bootstrap, seed=seed, return_replicates=True):
            if row["metric"] in RETRIEVAL and row["modality"] == "image-text":
                found.setdefault((row["metric"], "image-text"), []).append((row["value"], row["replicates"]))
    for metric, per_view in _probe_replicates(train_x, train_y, views, test_y, idx, seed).items():
        found[metric, "image"] = per_view
    rows = []
    for (metric, modality), per_view in found.items():
        for name, (value, reps) in zip(names, per_view):
            rows.append({**interval_row(metric, modality, value, reps, n), "transform": name})
        (v0, r0), others = per_view[0], per_view[1:]
        for name, (value, reps) in zip(names[1:], others):
            rows.append(_difference_row(metric, modality, value - v0, reps - r0, n, f"{name}-{names[0]}"))
        mean_value = np.mean([v for v, _ in others])
        mean_reps = np.mean([r for _, r in others], axis=0)
        rows.append(_difference_row(metric, modality, mean_value - v0, mean_reps - r0, n, f"{ROTATED}-{names[0]}"))
    frame = pd.DataFrame(rows)
    return frame[[c for c in ROW_COLUMNS if c in frame.columns] + EXTRA_COLUMNS]


def tta_rows(plain: tuple, averaged: tuple, train_y, test_y, *, bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The image probe (paper protocol) and KNN F1 on plain ``(train_x, test_x)`` and on
    D4-averaged ``averaged`` features, and their paired difference (column ``tta``)."""
    options = dict(protocols=("paper",), bootstrap=bootstrap, seed=seed, return_replicates=True)
    plain_rows = evaluate_classification({"image": plain}, train_y, test_y, **options)
    tta = evaluate_classification({"image": averaged}, train_y, test_y, **options)
    rows = [{**r, "tta": "none"} for r in plain_rows] + [{**r, "tta": "d4"} for r in tta]
    for p, a in zip(plain_rows, tta):
        rows.append(difference_row(a, p, tta="d4-none"))
    frame = pd.DataFrame(rows)
    return frame[[c for c in ROW_COLUMNS if c in frame.columns] + ["tta"]]


def label_rows(frame: pd.DataFrame, *, model: str, tag: str, captions: str) -> pd.DataFrame:
    """``frame`` with the model's ``model``/``tag``/``captions`` columns, in ``ROW_COLUMNS`` order."""
    out = frame.assign(model=model, tag=tag, captions=captions)
    return out[ROW_COLUMNS + [c for c in out.columns if c not in ROW_COLUMNS]]


# ---------------------------------------------------------------------------- the notebook's loop


def rotation_models(present: Sequence[str], models=None, tta: bool = True, tta_models=None) -> tuple[list, list, list]:
    """``(models, absent, tta_models)``: the bundles to transform (``models``, a comma list or
    a sequence; ``None``: the frozen model and every both-towers run present), the ones asked
    for that have no bundle, and those to D4-average (``tta_models``, default the same;
    none unless ``tta``)."""
    from .bundles import FROZEN, parse_tag

    def tags_of(value, default):
        return [t.strip() for t in value.split(",")] if isinstance(value, str) else list(value or default)

    chosen = tags_of(models, [t for t in present if t == FROZEN or parse_tag(t).scope == "full"])
    absent = [t for t in chosen if t not in present]
    chosen = [t for t in chosen if t in present]
    return chosen, absent, [t for t in tags_of(tta_models, chosen) if t in chosen] if tta else []


def adapted_model(tag_: str, base, results: Path):
    """The model of bundle ``tag_``: ``base`` itself for the frozen model, else a copy of it
    with the run's adapter (``layout.run_dir(results, <run>) / "adapter"``; ``results``: the
    profile's results folder)."""
    from ..model import load_adapter
    from .bundles import FROZEN, parse_tag
    from .layout import run_dir

    if tag_ == FROZEN:
        return base
    return load_adapter(copy.deepcopy(base), run_dir(results, parse_tag(tag_).run) / "adapter")


def rotation_controls(bundles: Mapping[str, dict], load_model: Callable, train_images: np.ndarray,
                      test_images: np.ndarray, *, tta_models: Sequence[str] = (), bootstrap: int, seed: int,
                      **embed_options) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:  # fmt: skip
    """Notebook 09's loop over ``bundles`` (``{tag: bundle}``, each model's upright arrays):
    per model the 8 views of ``test_images`` (:func:`transform_views`), its rows against each
    caption set it is evaluated with in Table 1 (the frozen model: every set; a run: its
    own), and for ``tta_models`` the D4 averaging with ``train_images`` (:func:`tta_rows`).

    Returns ``(rotations, tta or None, checks)``; ``checks`` has, per model, the least cosine
    between the recomputed identity view and the bundle's test embeddings (about 1)."""
    from ..metrics import pair_cosines
    from .bundles import FROZEN, caption_sets, parse_tag

    frames, averaging, checks = [], [], []
    for t, b in bundles.items():
        info, net = parse_tag(t), load_model(t)
        views = transform_views(net, test_images, **embed_options)
        checks.append({"model": t, "min cos(identity view, bundle)": float(pair_cosines(views[0], b["image_test"]).min())})
        for c in caption_sets(b) if t == FROZEN else [info.captions]:
            frame = transform_rows(views, b[f"text_{c}_test"], b["image_train"], b["labels_train"], b["labels_test"],
                                   bootstrap=bootstrap, seed=seed)  # fmt: skip
            frames.append(label_rows(frame, model=info.scope, tag=t, captions=c))
        if t in tta_models:
            train_d4 = embed_images(net, train_images, tta="d4", **embed_options)
            frame = tta_rows((b["image_train"], b["image_test"]), (train_d4, views.mean(axis=0)), b["labels_train"],
                             b["labels_test"], bootstrap=bootstrap, seed=seed)  # fmt: skip
            averaging.append(label_rows(frame, model=info.scope, tag=t, captions=""))  # image features only
        del net
    tta = pd.concat(averaging, ignore_index=True) if averaging else None
    return pd.concat(frames, ignore_index=True), tta, pd.DataFrame(checks)


def write_rotation_controls(rotations: pd.DataFrame, tta: pd.DataFrame | None, profile: Profile) -> list[str]:
    """Write ``controls/rotations.csv`` and, when the D4 averaging ran, ``controls/tta.csv``;
    when it did not, remove an earlier run's ``tta.csv`` (it would otherwise enter the
    controls table). One line per file written or removed."""
    from .controls import write_control

    path = write_control(rotations, profile, "rotations", notebook="09_rotations")
    lines = [f"{len(rotations)} rows -> {path}"]
    stale = path.with_name("tta.csv")
    if tta is not None:
        path = write_control(tta, profile, "tta", notebook="09_rotations")
        lines.append(f"{len(tta)} rows -> {path}")
    elif stale.is_file():
        stale.unlink()
        lines.append(f"D4 averaging not run: removed the earlier {stale.name}")
    return lines


# ---------------------------------------------------------------------------- figure

FIGURE_METRICS = (("recall@1", "image-text", "Recall@1"), ("class_recall@1", "image-text", "class-level Recall@1"),
                  ("linear_probe_f1", "image", "image probe F1"))  # fmt: skip


def fig_rotation_drop(frame: pd.DataFrame, *, metrics=FIGURE_METRICS):
    """Per metric (panel), each transform's change against identity (x: the 7 transforms),
    one line per model and caption set: colour by model (``plots.SCOPE_COLORS``), line style
    by caption set (curated solid, control dashed), 95 % paired intervals as bands."""
    import matplotlib.pyplot as plt

    from .. import plots
    from .bundles import parse_tag

    others = [f"{name}-{D4_NAMES[0]}" for name in D4_NAMES[1:]]
    x = np.arange(len(others))
    with plots.style():
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), sharex=True, squeeze=False)
        for ax, (metric, modality, title) in zip(axes[0], metrics):
            sub = frame[(frame["metric"] == metric) & (frame["modality"] == modality) & frame["transform"].isin(others)]
            ax.axhline(0, color="0.6", lw=0.8)
            ax.set_title(f"{title}: transform − identity")
            if sub.empty:
                plots.missing_panel(ax, f"no {metric} rows")
                continue
            for (tag_, captions), g in sub.groupby(["tag", "captions"], sort=False):
                g = g.set_index("transform").reindex(others)
                parsed = parse_tag(str(tag_))
                scope = parsed.scope if parsed is not None else str(tag_)
                color = plots.SCOPE_COLORS.get(scope, "0.3")
                label = f"{plots.MODEL_LABELS.get(scope, scope)}, {captions}"
                ax.plot(x, g["value"], marker="o", ms=3, color=color, ls=plots.CAPTION_STYLES.get(captions, "-"), label=label)
                ax.fill_between(x, g["low"], g["high"], color=color, alpha=0.1, lw=0)
            ax.set_xticks(x, [o.removesuffix(f"-{D4_NAMES[0]}") for o in others], rotation=45, ha="right")
        axes[0, 0].set_ylabel("change against the upright images")
        axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
    return fig
