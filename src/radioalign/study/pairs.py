"""The shuffled-pairs control: did fine-tuning learn instance alignment, or class words?

Two halves (``radioalign.captions.shuffle`` defines the shuffles and their chance levels):

* **Shuffled evaluation** (:func:`permuted_evaluation`). For every final model of Table 1,
  the test captions are permuted among the test images by a fixed derangement (drawn from
  the profile's seed; ``evaluation`` = the shuffle mode) and the retrieval metrics are
  recomputed, so the pairs the metric scores are wrong ones. Each caption keeps its own
  class (``text_labels``: the class of the item it was written for), so class-level
  Recall@1 judges a retrieved caption by what it says, not by where it sits. What this
  shows: Recall@k falls to chance, k/n, or below (a derangement leaves no true pair), while
  class-level Recall@1 cannot change under any permutation (the same captions are
  retrieved, with the same classes): it is a check that Recall@1 measures pairing and that
  class-level Recall@1 does not, not a measurement of class words. The ``chance`` rows give
  the expectation without any information: k/n and the class balance sum_c p_c^2.
* **Shuffled training** (:func:`shuffled_training`). Full LoRA trained on the training
  captions shuffled within class (the class signal kept, the instance signal destroyed)
  and across classes (both destroyed), tags ``full-<captions>+<mode>``
  (``radioalign.study.runs.run_one``), each trained for as many epochs as the run on the
  true pairs (column ``epochs``, from each run's ``config.json``) and evaluated on the
  *true* test pairs with every metric, beside that run (``variant`` = ``paired``). Rows
  with variant ``paired-minus-<mode>`` hold the paired-bootstrap difference (true-pair run
  minus shuffled run; same test items, same resamples). A Recall@1 that survives
  within-class shuffling was learned from class words; what the true pairs add over
  within-class shuffling is instance alignment.

Rows: ``ROW_COLUMNS`` plus ``seed`` (the training seed), ``variant`` (the training
captions: ``paired`` or a shuffle mode), ``evaluation`` (the test pairs: ``paired`` or a
shuffle mode) and ``epochs`` (the epochs the run trained; empty for the frozen model and
the chance rows), written to ``results/<profile>/controls/shuffled.csv``. Resamples and
probes use the profile's seed, as Table 1, so the true-pair rows equal ``metrics.csv``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Sequence
from pathlib import Path

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import plots
from ..captions.shuffle import chance_levels, shuffle_permutation
from ..metrics import difference_row, evaluate_retrieval
from .bundles import FROZEN, available_bundles, caption_sets, load_bundle, parse_tag, tag
from .evaluation import ROW_COLUMNS, evaluate_bundle
from .layout import results_dir, run_dir


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

PAIRED = "paired"
CONTROL_COLUMNS = ROW_COLUMNS + ["seed", "variant", "evaluation", "epochs"]
SHUFFLE_SCOPE = "full"  # the scope of the shuffled-training runs (both towers adapt)
CHANCE = "chance"
VARIANT_COLORS = {PAIRED: "#000000", "withinclass": "#0072B2", "across": "#D55E00"}
VARIANT_LABELS = {PAIRED: "true pairs", "withinclass": "shuffled within class", "across": "shuffled across classes"}


def _frame(rows: Sequence[dict], **columns) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    for key, value in columns.items():
        frame[key] = value
    return frame


def run_epochs(results: Path, tag_: str) -> float:
    """The epochs a run under ``results`` (a profile's results folder) trained (its
    ``config.json``'s ``epochs_run``); NaN for the frozen model or a run without a finished record."""
    info = parse_tag(tag_)
    path = run_dir(results, info.run) / "config.json" if info is not None and info.scope != FROZEN else None
    if path is None or not path.is_file():
        return np.nan
    return float(json.loads(path.read_text()).get("epochs_run", np.nan))


def permuted_test_rows(bundle, captions: str, mode: str, *, perm_seed: int, bootstrap: int, seed: int) -> list[dict]:
    """Retrieval rows (``evaluate_retrieval``) of the test images against their captions
    permuted by shuffle mode ``mode`` (a derangement drawn from ``perm_seed``): image i is
    paired with caption ``perm[i]``, which keeps its own class (``text_labels``)."""
    labels = np.asarray(bundle["labels_test"])
    perm = shuffle_permutation(mode, labels, np.random.default_rng(perm_seed))
    txt = np.asarray(bundle[f"text_{captions}_test"])[perm]
    return evaluate_retrieval(bundle["image_test"], txt, labels, text_labels=labels[perm], bootstrap=bootstrap, seed=seed)


def chance_rows(labels: Sequence[int], ks: Sequence[int] = (1, 5)) -> list[dict]:
    """The expected retrieval without pairing information (``chance_levels``) as rows
    (modality ``image-text``; an expectation, so low = high = value and B = 0)."""
    n = len(labels)
    return [dict(metric=m, modality="image-text", value=v, low=v, high=v, n=n, B=0)
            for m, v in chance_levels(labels, ks).items()]  # fmt: skip


def permuted_evaluation(profile: Profile, *, bootstrap: int, seed: int, modes: Sequence[str] = ("across", "withinclass")) -> pd.DataFrame:
    """Retrieval of every plain final model (frozen with each caption set, each run with its
    own) on the true test pairs and on the test pairs permuted by each of ``modes``, with
    the chance rows; columns :data:`CONTROL_COLUMNS`."""
    frames, labels = [], None
    for tag_, path in available_bundles(results_dir(profile)).items():
        info, bundle = parse_tag(tag_), load_bundle(path)
        labels = bundle["labels_test"]
        for captions in caption_sets(bundle) if info.scope == FROZEN else [info.captions]:
            ids = dict(model=info.scope, tag=tag_, captions=captions, seed=profile.seed, variant=PAIRED,
                       epochs=run_epochs(results_dir(profile), tag_))  # fmt: skip
            rows = evaluate_retrieval(bundle["image_test"], bundle[f"text_{captions}_test"], labels, bootstrap=bootstrap, seed=seed)
            frames.append(_frame(rows, evaluation=PAIRED, **ids))
            for mode in modes:
                rows = permuted_test_rows(bundle, captions, mode, perm_seed=profile.seed, bootstrap=bootstrap, seed=seed)
                frames.append(_frame(rows, evaluation=mode, **ids))
    if labels is None:
        return pd.DataFrame(columns=CONTROL_COLUMNS)
    frames.append(_frame(chance_rows(labels), model=CHANCE, tag=CHANCE, captions="", seed=profile.seed, variant="",
                         evaluation="across", epochs=np.nan))  # fmt: skip
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
                                   seed=r["seed"], variant=f"{PAIRED}-minus-{mode}", evaluation=PAIRED,
                                   epochs=s["epochs"]))  # fmt: skip
    return pd.DataFrame(rows)


def shuffled_training(profile: Profile, *, bootstrap: int, seed: int, protocols: Sequence[str] = ("paper",)) -> pd.DataFrame:
    """Every metric of the full-LoRA run on true pairs and of each shuffled-caption run
    (``profile.shuffled``) per caption set, on the true test pairs, with the epochs each
    trained, and the paired differences true − shuffled; columns :data:`CONTROL_COLUMNS`.
    Missing runs are skipped."""
    have = available_bundles(results_dir(profile), controls=True)
    frames = []
    for captions in profile.prompts:
        evaluated = {}
        for variant in (PAIRED, *profile.shuffled):
            t = tag(SHUFFLE_SCOPE, captions, variant=None if variant == PAIRED else variant)
            if t not in have:
                continue
            rows = evaluate_bundle(have[t], captions, tag=t, bootstrap=bootstrap, seed=seed, protocols=protocols,
                                   return_replicates=True)  # fmt: skip
            evaluated[variant] = rows.assign(seed=profile.seed, variant=variant, evaluation=PAIRED,
                                             epochs=run_epochs(results_dir(profile), t))  # fmt: skip
        frames += list(evaluated.values())
        if PAIRED in evaluated:
            frames += [_differences(evaluated[PAIRED], evaluated[m], m) for m in profile.shuffled if m in evaluated]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=CONTROL_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CONTROL_COLUMNS]


def shuffled_metrics(profile: Profile, *, bootstrap: int | None = None, seed: int | None = None,
                     protocols: Sequence[str] = ("paper",)) -> pd.DataFrame:  # fmt: skip
    """The control's rows: :func:`permuted_evaluation` (the profile's shuffle modes) then
    :func:`shuffled_training`. ``bootstrap``: the profile's when None; ``seed`` the resamples'
    and probes' seed, the profile's when None (Table 1's, so the true-pair rows equal
    metrics.csv's)."""
    bootstrap = profile.bootstrap if bootstrap is None else bootstrap
    seed = profile.seed if seed is None else seed
    frames = [permuted_evaluation(profile, bootstrap=bootstrap, seed=seed, modes=profile.shuffled),
              shuffled_training(profile, bootstrap=bootstrap, seed=seed, protocols=protocols)]  # fmt: skip
    frame = pd.concat([f for f in frames if len(f)] or [pd.DataFrame(columns=CONTROL_COLUMNS)], ignore_index=True)
    # the true-pair full run's retrieval rows come from both halves, identical: keep one
    return frame.drop_duplicates(subset=[c for c in CONTROL_COLUMNS if c not in ("value", "low", "high", "n", "B", "epochs")],
                                 ignore_index=True)  # fmt: skip


# ------------------------------------------------------------------------ summary and figure


def training_summary(frame: pd.DataFrame, metrics: Sequence[str] = ("recall@1", "class_recall@1")) -> pd.DataFrame:
    """Recall@1 and class-level Recall@1 (image-text) of the shuffled-training rows, one row per
    caption set and training variant, with the epochs each run trained and the chance
    levels: what the notebook prints."""
    rows = frame[(frame["model"] == SHUFFLE_SCOPE) & (frame["evaluation"] == PAIRED) & frame["metric"].isin(metrics)
                 & (frame["modality"] == "image-text") & ~frame["variant"].str.contains("-minus-")]  # fmt: skip
    table = rows.pivot_table(index=["captions", "variant"], columns="metric", values="value").reset_index()
    epochs = rows.groupby(["captions", "variant"])["epochs"].first()
    table.insert(2, "epochs", [epochs.get((c, v), np.nan) for c, v in zip(table["captions"], table["variant"])])
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
                # the interval as drawn from low to high: a bias-corrected interval need not straddle the value
                ax.vlines(x, v["low"], v["high"], color=VARIANT_COLORS[variant], lw=1.2)
                ax.plot(x, v["value"], "o", color=VARIANT_COLORS[variant], label=VARIANT_LABELS[variant])
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
