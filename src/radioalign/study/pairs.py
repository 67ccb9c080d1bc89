"""The shuffled-pairs control: did fine-tuning learn instance alignment, or class words?

Two halves (``radioalign.captions.shuffle`` defines the shuffles and their chance levels):

* **Shuffled evaluation** (:func:`permuted_evaluation`). For every final model of Table 1,
  the test captions are permuted among the test images by a fixed derangement (drawn from
  the profile's seed; ``evaluation`` = the shuffle mode) and the retrieval metrics are
  recomputed with the image labels, so the pairs the metric scores are wrong ones.
  Permuted *across* the test set, Recall@k must fall to chance, k/n, and class-level
  Recall@1 to the class balance, sum_c p_c^2 (rows of model ``chance``). Permuted *within
  class*, Recall@1 must fall to chance while class-level Recall@1 keeps its value.
  If a metric does not fall, it measures something other than pairing.
* **Shuffled training** (:func:`shuffled_training`). Full LoRA trained on the training
  captions shuffled within class (the class signal kept, the instance signal destroyed)
  and across classes (both destroyed), tags ``full-<captions>+<mode>``
  (``radioalign.study.runs.run_one``), each evaluated on the *true* test pairs with every
  metric, beside the run on the true pairs (``variant`` = ``paired``). Rows with variant
  ``paired-minus-<mode>`` hold the paired-bootstrap difference (true-pair run minus
  shuffled run; same test items, same resamples). A Recall@1 that survives within-class
  shuffling was learned from class words; what the true pairs add over within-class
  shuffling is instance alignment.

Rows: ``ROW_COLUMNS`` plus ``seed`` (the training seed), ``variant`` (the training
captions: ``paired`` or a shuffle mode) and ``evaluation`` (the test pairs: ``paired`` or
a shuffle mode), written to ``results/<profile>/controls/shuffled.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import plots
from ..captions.shuffle import chance_levels, shuffle_permutation
from ..metrics import difference_row, evaluate_retrieval
from .bundles import FROZEN, available_bundles, caption_sets, load_bundle, parse_tag, tag
from .evaluation import ROW_COLUMNS, evaluate_bundle

PAIRED = "paired"
CONTROL_COLUMNS = ROW_COLUMNS + ["seed", "variant", "evaluation"]
SHUFFLE_SCOPE = "full"  # the scope of the shuffled-training runs (both towers adapt)
CHANCE = "chance"
VARIANT_COLORS = {PAIRED: "#000000", "withinclass": "#0072B2", "across": "#D55E00"}
VARIANT_LABELS = {PAIRED: "true pairs", "withinclass": "shuffled within class", "across": "shuffled across classes"}


def _frame(rows: Sequence[dict], **columns) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    for key, value in columns.items():
        frame[key] = value
    return frame


def permuted_test_rows(bundle, captions: str, mode: str, *, perm_seed: int, bootstrap: int, seed: int) -> list[dict]:
    """Retrieval rows (``evaluate_retrieval``) of the test images against their captions
    permuted by shuffle mode ``mode`` (a derangement drawn from ``perm_seed``); the labels
    stay with the positions, i.e. with the images."""
    labels = np.asarray(bundle["labels_test"])
    perm = shuffle_permutation(mode, labels, np.random.default_rng(perm_seed))
    txt = np.asarray(bundle[f"text_{captions}_test"])[perm]
    return evaluate_retrieval(bundle["image_test"], txt, labels, bootstrap=bootstrap, seed=seed)


def chance_rows(labels: Sequence[int], ks: Sequence[int] = (1, 5)) -> list[dict]:
    """The expected retrieval without pairing information (``chance_levels``) as rows
    (modality ``image-text``; an expectation, so low = high = value and B = 0)."""
    n = len(labels)
    return [dict(metric=m, modality="image-text", value=v, low=v, high=v, n=n, B=0)
            for m, v in chance_levels(labels, ks).items()]  # fmt: skip


def permuted_evaluation(profile, *, bootstrap: int, seed: int, modes: Sequence[str] = ("across", "withinclass")) -> pd.DataFrame:
    """Retrieval of every plain final model (frozen with each caption set, each run with its
    own) on the true test pairs and on the test pairs permuted by each of ``modes``, with
    the chance rows; columns :data:`CONTROL_COLUMNS`."""
    frames, labels = [], None
    for tag_, path in available_bundles(profile.name).items():
        info, bundle = parse_tag(tag_), load_bundle(path)
        labels = bundle["labels_test"]
        for captions in caption_sets(bundle) if info.scope == FROZEN else [info.captions]:
            ids = dict(model=info.scope, tag=tag_, captions=captions, seed=profile.seed, variant=PAIRED)
            rows = evaluate_retrieval(bundle["image_test"], bundle[f"text_{captions}_test"], labels, bootstrap=bootstrap, seed=seed)
            frames.append(_frame(rows, evaluation=PAIRED, **ids))
            for mode in modes:
                rows = permuted_test_rows(bundle, captions, mode, perm_seed=profile.seed, bootstrap=bootstrap, seed=seed)
                frames.append(_frame(rows, evaluation=mode, **ids))
    if labels is None:
        return pd.DataFrame(columns=CONTROL_COLUMNS)
    frames.append(_frame(chance_rows(labels), model=CHANCE, tag=CHANCE, captions="", seed=profile.seed, variant="",
                         evaluation="across"))  # fmt: skip
    return pd.concat(frames, ignore_index=True)[CONTROL_COLUMNS]


def _differences(reference: pd.DataFrame, shuffled: pd.DataFrame, mode: str) -> pd.DataFrame:
    """reference − shuffled per metric and modality, paired over the shared resamples."""
    rows = []
    mine = shuffled.set_index(["metric", "modality"])
    for _, r in reference.iterrows():
        if (r["metric"], r["modality"]) not in mine.index:
            continue
        s = mine.loc[(r["metric"], r["modality"])]
        rows.append(difference_row(r, s, model=r["model"], tag=f"{r['tag']}|{s['tag']}", captions=r["captions"],
                                   seed=r["seed"], variant=f"{PAIRED}-minus-{mode}", evaluation=PAIRED))  # fmt: skip
    return pd.DataFrame(rows)


def shuffled_training(profile, *, bootstrap: int, seed: int, protocols: Sequence[str] = ("paper",)) -> pd.DataFrame:
    """Every metric of the full-LoRA run on true pairs and of each shuffled-caption run
    (``profile.shuffled``) per caption set, on the true test pairs, and the paired
    differences true − shuffled; columns :data:`CONTROL_COLUMNS`. Missing runs are skipped."""
    have = available_bundles(profile.name, controls=True)
    frames = []
    for captions in profile.prompts:
        evaluated = {}
        for variant in (PAIRED, *profile.shuffled):
            t = tag(SHUFFLE_SCOPE, captions, variant=None if variant == PAIRED else variant)
            if t not in have:
                continue
            rows = evaluate_bundle(have[t], captions, tag=t, bootstrap=bootstrap, seed=seed, protocols=protocols,
                                   return_replicates=True)  # fmt: skip
            evaluated[variant] = rows.assign(seed=profile.seed, variant=variant, evaluation=PAIRED)
        frames += list(evaluated.values())
        if PAIRED in evaluated:
            frames += [_differences(evaluated[PAIRED], evaluated[m], m) for m in profile.shuffled if m in evaluated]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CONTROL_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CONTROL_COLUMNS]


def shuffled_metrics(profile, *, bootstrap: int | None = None, seed: int = 0, protocols: Sequence[str] = ("paper",)) -> pd.DataFrame:
    """The control's rows: :func:`permuted_evaluation` (the profile's shuffle modes) then
    :func:`shuffled_training`. ``bootstrap``: the profile's when None; ``seed`` the resamples'
    and probes' seed (Table 1's, 0, so the true-pair rows equal metrics.csv's)."""
    bootstrap = profile.bootstrap if bootstrap is None else bootstrap
    frames = [permuted_evaluation(profile, bootstrap=bootstrap, seed=seed, modes=profile.shuffled),
              shuffled_training(profile, bootstrap=bootstrap, seed=seed, protocols=protocols)]  # fmt: skip
    frame = pd.concat([f for f in frames if len(f)] or [pd.DataFrame(columns=CONTROL_COLUMNS)], ignore_index=True)
    # the true-pair full run's retrieval rows come from both halves, identical: keep one
    return frame.drop_duplicates(subset=[c for c in CONTROL_COLUMNS if c not in ("value", "low", "high", "n", "B")],
                                 ignore_index=True)  # fmt: skip


# ------------------------------------------------------------------------ summary and figure


def training_summary(frame: pd.DataFrame, metrics: Sequence[str] = ("recall@1", "class_recall@1")) -> pd.DataFrame:
    """Recall@1 and class-level Recall@1 (image-text) of the shuffled-training rows, one row per
    caption set and training variant, with the chance levels: what the notebook prints."""
    rows = frame[(frame["model"] == SHUFFLE_SCOPE) & (frame["evaluation"] == PAIRED) & frame["metric"].isin(metrics)
                 & (frame["modality"] == "image-text") & ~frame["variant"].str.contains("-minus-")]  # fmt: skip
    table = rows.pivot_table(index=["captions", "variant"], columns="metric", values="value").reset_index()
    chance = frame[frame["model"] == CHANCE].set_index("metric")["value"]
    for m in metrics:
        if m in chance.index:
            table[f"chance {m}"] = chance[m]
    return table


def fig_shuffled_pairs(frame: pd.DataFrame, *, metrics: Sequence[str] = ("recall@1", "class_recall@1")):
    """Recall@1 and class-level Recall@1 (image-text, 95 % intervals) of full LoRA trained on
    true pairs, on captions shuffled within class and across classes, per caption set, with
    the chance levels as dashed lines."""
    rows = frame[(frame["model"] == SHUFFLE_SCOPE) & (frame["evaluation"] == PAIRED) & (frame["modality"] == "image-text")
                 & ~frame["variant"].str.contains("-minus-")]  # fmt: skip
    chance = frame[frame["model"] == CHANCE].set_index("metric")["value"]
    captions = list(dict.fromkeys(rows["captions"]))
    variants = [v for v in VARIANT_COLORS if v in set(rows["variant"])]
    with plots.style():
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            for k, variant in enumerate(variants):
                sel = rows[(rows["metric"] == metric) & (rows["variant"] == variant)].set_index("captions")
                x = [i + (k - (len(variants) - 1) / 2) * 0.22 for i, c in enumerate(captions) if c in sel.index]
                v = sel.reindex([c for c in captions if c in sel.index])
                ax.errorbar(x, v["value"], yerr=[v["value"] - v["low"], v["high"] - v["value"]], fmt="o", capsize=3,
                            color=VARIANT_COLORS[variant], label=VARIANT_LABELS[variant])  # fmt: skip
            if metric in chance.index:
                ax.axhline(chance[metric], color="0.5", ls="--", lw=1, label="chance")
            ax.set_xticks(range(len(captions)), [f"{c} captions" for c in captions])
            ax.set_xlim(-0.6, len(captions) - 0.4)
            ax.set_title({"recall@1": "Recall@1", "class_recall@1": "Class-level Recall@1"}.get(metric, metric))
        if not len(rows):
            for ax in axes[0]:
                plots.missing_panel(ax, "no shuffled-caption runs")
        axes[0, -1].legend(fontsize=7, loc="best")
        fig.tight_layout()
    return fig


# ------------------------------------------------------------------------ the controls table

CELL_COLUMNS = {("recall@1", "image-text"): "Recall@1", ("class_recall@1", "image-text"): "class R@1",
                ("linear_probe_f1", "image"): "probe F1, images"}  # fmt: skip


def shuffled_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """This control's group of the controls table (``radioalign.study.controls``; columns
    row, column, value, low, high): per caption set full LoRA trained on true pairs, within
    class and across classes and the true − shuffled differences; each Table 1 full model
    on test captions permuted across and within class; the chance levels."""
    names = {PAIRED: "true pairs", "withinclass": "captions shuffled within class", "across": "captions shuffled across classes"}
    out = []
    for _, r in frame.iterrows():
        column = CELL_COLUMNS.get((r["metric"], r["modality"]))
        if column is None:
            continue
        variant, evaluation = str(r["variant"]), str(r["evaluation"])
        if r["model"] == CHANCE:
            row = "chance (no pairing information)"
        elif r["model"] != SHUFFLE_SCOPE:
            continue
        elif evaluation == PAIRED and variant.startswith(f"{PAIRED}-minus-"):
            row = f"full LoRA, {r['captions']}: true pairs − {names[variant.removeprefix(f'{PAIRED}-minus-')].removeprefix('captions ')}"
        elif evaluation == PAIRED:
            row = f"full LoRA, {r['captions']}: trained on {names.get(variant, variant)}"
        else:
            row = f"full LoRA, {r['captions']}: test {names.get(evaluation, evaluation)}"
        out.append(dict(row=row, column=column, value=r["value"], low=r["low"], high=r["high"]))
    cells = pd.DataFrame(out, columns=["row", "column", "value", "low", "high"])
    return cells.drop_duplicates(["row", "column"], keep="first")
