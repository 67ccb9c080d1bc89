"""Notebook 11's experiment: a person labelling the training pool, simulated with the true labels.

Per model (a bundle: ``image_train`` the unlabelled pool, ``image_test`` held out, and the
FR prompts' embeddings, the zero-shot prior), per strategy and seed, the labeller's
budget grows through :data:`BUDGETS`; at each budget the library's probe
(``radioalign.survey.labelling.fit_probe``, with the zero-shot prior) is fitted on the
labels so far and scored on the test images (macro F1 over FR-I and FR-II). Strategies:

``random``       each new label a uniformly random unlabelled image;
``uncertainty``  the same first picks as ``random`` (same seed), then each batch up to the
                 next budget by the probe's margin uncertainty with diversity
                 (``suggest_indices``);
``zeroshot-seeded``  the first picks seeded by the prompts: for each class in turn, one image at
                 random among the :data:`SEED_TOP` most probable under zero-shot, then as
                 ``uncertainty``.

The probe at each budget is the one that picks the next batch. The all-labels point is
one fit per model, shared by every strategy and seed. Intervals are percentile
bootstraps of the mean over seeds (the seeds resampled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..data import CLASS_NAMES
from ..metrics import bootstrap_indices, percentile_interval
from ..provenance import write_stamp
from ..survey.labelling import Prior, clopper_pearson, conformal_sets, fit_probe, macro_f1, suggest_indices
from .layout import results_dir


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

BUDGETS = (2, 4, 10, 20, 50, 100, None)  # None: every image of the pool
STRATEGIES = ("random", "uncertainty", "zeroshot-seeded")
SEED_TOP = 10
ALPHAS = (0.1, 0.05)
STRATEGY_STYLE = {"random": ("0.45", "--"), "uncertainty": ("#D55E00", "-"), "zeroshot-seeded": ("#0072B2", "-.")}


def prior_of(bundle: Mapping[str, np.ndarray], classes: Sequence[str] = CLASS_NAMES) -> Prior:
    """The zero-shot prior a bundle holds (its FR prompts' embeddings, scale and bias)."""
    scale = float(np.exp(np.asarray(bundle["logit_scale"], dtype=np.float64).reshape(-1)[0]))
    bias = float(np.asarray(bundle["logit_bias"], dtype=np.float64).reshape(-1)[0])
    return Prior.from_prompts(list(classes), bundle["text_prompts"], bundle["prompt_classes"], scale, bias, "fr")


def split_arrays(bundle: Mapping[str, np.ndarray], classes: Sequence[str] = CLASS_NAMES) -> tuple:
    """``(X_pool, y_pool, X_test, y_test)``: image vectors and class names."""
    names = np.asarray(classes, dtype=object)
    return (np.asarray(bundle["image_train"], np.float64), names[np.asarray(bundle["labels_train"])],
            np.asarray(bundle["image_test"], np.float64), names[np.asarray(bundle["labels_test"])])  # fmt: skip


def budgets_for(n_pool: int, budgets: Sequence[int | None] = BUDGETS) -> list[int]:
    """The budgets below the pool's size, then the whole pool."""
    return sorted({min(int(b), n_pool) if b is not None else n_pool for b in budgets})


def score_f1(probe, X_test, y_test, classes: Sequence[str] = CLASS_NAMES) -> float:
    """Macro F1 over ``classes`` of the probe's predictions of the test images."""
    index = {c: i for i, c in enumerate(classes)}
    pred = np.asarray([index.get(str(c), -1) for c in probe.predict(X_test)])
    return macro_f1(np.asarray([index[str(c)] for c in y_test]), pred, len(classes))


def first_picks(strategy: str, X, prior: Prior, k: int, rng: np.random.Generator, top: int = SEED_TOP) -> np.ndarray:
    """The first ``k`` labels: random, or (``zeroshot-seeded``) for each class in turn one image at
    random among the ``top`` most probable under zero-shot, none twice."""
    if strategy != "zeroshot-seeded":
        return rng.choice(len(X), size=k, replace=False)
    proba = prior.probabilities(X)
    picks: list[int] = []
    while len(picks) < k:
        c = len(picks) % proba.shape[1]
        order = [i for i in np.argsort(-proba[:, c], kind="stable") if i not in picks][:top]
        picks.append(int(rng.choice(order)))
    return np.asarray(picks, dtype=np.int64)


def simulate(X, y, X_test, y_test, prior: Prior, *, strategy: str, seed: int, budgets: Sequence[int],
             full_f1: float | None = None) -> list[dict]:  # fmt: skip
    """One labeller's run: ``{strategy, seed, labels, macro_f1, model}`` at each budget
    (``full_f1``: the all-labels score, when already known)."""
    rng = np.random.default_rng(seed)
    labelled = first_picks(strategy, X, prior, budgets[0], rng)
    rows, probe = [], None
    for budget in budgets:
        more = budget - len(labelled)
        if more > 0 and strategy == "random":
            rest = np.setdiff1d(np.arange(len(X)), labelled)
            labelled = np.concatenate([labelled, rng.choice(rest, size=more, replace=False)])
        elif more > 0:
            picked = suggest_indices(X, more, proba=probe.predict_proba(X), exclude=labelled)
            labelled = np.concatenate([labelled, picked])
        if budget == len(X) and full_f1 is not None:
            rows.append({"strategy": strategy, "seed": seed, "labels": budget, "macro_f1": full_f1, "model": "probe"})
            continue
        probe = fit_probe(X[labelled], y[labelled], prior, random_state=seed)
        rows.append({"strategy": strategy, "seed": seed, "labels": budget, "macro_f1": score_f1(probe, X_test, y_test),
                     "model": probe.model_})  # fmt: skip
    return rows


def learning_curves(bundles: Mapping[str, Mapping], *, seeds: Sequence[int], budgets=BUDGETS,
                    strategies: Sequence[str] = STRATEGIES) -> pd.DataFrame:  # fmt: skip
    """Every model's, strategy's and seed's run: one row per budget (:func:`simulate`), with
    ``tag`` the model, and the zero-shot F1 (no label) of each model in ``zero_shot_f1``."""
    from ..metrics.classification import single_thread

    rows = []
    with single_thread():
        for tag_, bundle in bundles.items():
            X, y, X_test, y_test = split_arrays(bundle)
            prior, steps = prior_of(bundle), budgets_for(len(X), budgets)
            full = score_f1(fit_probe(X, y, prior), X_test, y_test)
            zero = score_f1(fit_probe(X[:0], y[:0], prior), X_test, y_test)
            for strategy in strategies:
                for seed in seeds:
                    run = simulate(X, y, X_test, y_test, prior, strategy=strategy, seed=int(seed), budgets=steps, full_f1=full)
                    rows += [{"tag": tag_, **r, "pool": len(X), "zero_shot_f1": zero} for r in run]
    return pd.DataFrame(rows)


def summarise_curves(curves: pd.DataFrame, *, B: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Mean macro F1 over seeds per model, strategy and budget, with the percentile
    bootstrap interval of that mean (``B`` resamples of the seeds)."""
    out = []
    for (tag_, strategy, labels), g in curves.groupby(["tag", "strategy", "labels"], sort=False):
        values = g.sort_values("seed")["macro_f1"].to_numpy()
        reps = values[bootstrap_indices(len(values), B, seed)].mean(axis=1)
        low, high = percentile_interval(reps, level)
        out.append({"tag": tag_, "strategy": strategy, "labels": int(labels), "macro_f1": float(values.mean()),
                    "low": low, "high": high, "seeds": len(values), "zero_shot_f1": float(g["zero_shot_f1"].iloc[0])})  # fmt: skip
    return pd.DataFrame(out)


def strategy_differences(curves: pd.DataFrame, *, baseline: str = "random", B: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each strategy's mean F1 minus ``baseline``'s, paired by seed, per model and budget,
    with a percentile bootstrap interval (seeds resampled); ``better``/``worse`` when the
    interval excludes 0."""
    out = []
    wide = curves.pivot_table(index=["tag", "labels", "seed"], columns="strategy", values="macro_f1", sort=False)
    for (tag_, labels), g in wide.groupby(level=["tag", "labels"], sort=False):
        for strategy in [s for s in g.columns if s != baseline]:
            diff = (g[strategy] - g[baseline]).to_numpy()
            reps = diff[bootstrap_indices(len(diff), B, seed)].mean(axis=1)
            low, high = percentile_interval(reps)
            verdict = "better" if low > 0 else "worse" if high < 0 else "no difference"
            out.append({"tag": tag_, "labels": int(labels), "strategy": strategy, "baseline": baseline,
                        "difference": float(diff.mean()), "low": low, "high": high, "verdict": verdict})  # fmt: skip
    return pd.DataFrame(out)


def conformal_rows(bundle: Mapping[str, np.ndarray], alphas: Sequence[float] = ALPHAS, level: float = 0.95) -> pd.DataFrame:
    """Conformal sets on the test images for calibrated zero-shot and for the probe, both
    fitted on every pool label: coverage with its Clopper-Pearson interval, mean set size,
    the same two measured on the pool by cross-validation, and ``holds`` (coverage at or
    above ``1 - alpha`` within the interval: the interval's upper end reaches it)."""
    X, y, X_test, y_test = split_arrays(bundle)
    prior, rows = prior_of(bundle), []
    for model in ("zeroshot", "probe"):
        probe = fit_probe(X, y, prior, model=model)
        proba = probe.predict_proba(X_test)
        truth = np.asarray([list(probe.classes_).index(c) for c in y_test])
        for alpha in alphas:
            thresholds, mondrian = probe.thresholds(alpha)
            sets = conformal_sets(proba, thresholds)
            k, n = int(sets[np.arange(len(truth)), truth].sum()), len(truth)
            low, high = clopper_pearson(k, n, level)
            pool = probe.conformal_report(alpha)
            rows.append({"predictor": model, "alpha": alpha, "coverage": k / n, "low": low, "high": high, "n": n,
                         "mean_set_size": float(sets.sum(axis=1).mean()), "singletons": float((sets.sum(axis=1) == 1).mean()),
                         "pool_coverage": pool["coverage"], "pool_set_size": pool["mean_set_size"], "mondrian": mondrian,
                         "holds": bool(high >= 1 - alpha)})  # fmt: skip
    return pd.DataFrame(rows)


def readme_line(summary: pd.DataFrame, tag_: str = "frozen", labels: int = 20) -> str:
    """"with N labels the probe reaches F1 X (all labels: Y)" for one model, from the
    random and uncertainty curves as measured."""
    sub = summary[summary["tag"] == tag_]
    at = sub[sub["labels"] == labels].set_index("strategy")
    full = sub[sub["labels"] == sub["labels"].max()]["macro_f1"].iloc[0]

    def cell(strategy):
        r = at.loc[strategy]
        return f"{r['macro_f1']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"

    return (f"with {labels} labels the probe reaches F1 {cell('random')} from random picks, {cell('uncertainty')} "
            f"by uncertainty sampling (all labels: {full:.2f})")  # fmt: skip


def curves_markdown(summary: pd.DataFrame, title: str = "") -> str:
    """The curves as a Markdown table: a row per model and strategy, a column per budget,
    each cell ``mean [low, high]``."""
    budgets = sorted(summary["labels"].unique())
    lines = ([title, ""] if title else []) + ["| model | strategy | " + " | ".join(str(b) for b in budgets) + " |",
                                              "|---|---|" + "---|" * len(budgets)]  # fmt: skip
    for (tag_, strategy), g in summary.groupby(["tag", "strategy"], sort=False):
        g = g.set_index("labels")
        cells = [f"{g.at[b, 'macro_f1']:.2f} [{g.at[b, 'low']:.2f}, {g.at[b, 'high']:.2f}]" if b in g.index else "–" for b in budgets]
        lines.append(f"| {tag_} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fig_labelling_curves(summary: pd.DataFrame):
    """Macro F1 on the test images against the number of labels (log scale), one panel
    per model, one line per strategy with its 95 % interval (seeds resampled); dotted:
    zero-shot with no label."""
    import matplotlib.pyplot as plt

    from .. import plots

    tags = list(dict.fromkeys(summary["tag"]))
    cols = min(4, max(1, len(tags)))
    rows = math.ceil(len(tags) / cols)
    with plots.style():
        fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.9 * rows), sharex=True, sharey=True, squeeze=False)
        for ax in axes.flat[len(tags):]:
            ax.axis("off")
        for ax, tag_ in zip(axes.flat, tags):
            sub = summary[summary["tag"] == tag_]
            for strategy, g in sub.groupby("strategy", sort=False):
                color, ls = STRATEGY_STYLE.get(strategy, ("0.3", "-"))
                g = g.sort_values("labels")
                ax.plot(g["labels"], g["macro_f1"], color=color, ls=ls, marker="o", ms=3, label=strategy)
                ax.fill_between(g["labels"], g["low"], g["high"], color=color, alpha=0.15, lw=0)
            ax.axhline(sub["zero_shot_f1"].iloc[0], color="0.2", ls=":", lw=1, label="zero-shot, no label")
            ax.set_xscale("log")
            ticks = sorted(sub["labels"].unique())
            ax.set_xticks(ticks, [str(t) for t in ticks[:-1]] + [f"all\n{ticks[-1]}"], fontsize=7)
            ax.minorticks_off()
            ax.set_title(tag_)
        for ax in axes[-1]:
            ax.set_xlabel("labels")
        for ax in axes[:, 0]:
            ax.set_ylabel("test macro F1")
        axes.flat[0].legend(loc="lower right", fontsize=7, frameon=False)
        fig.tight_layout()
    return fig


def write_labelling(tables: Mapping[str, pd.DataFrame], profile: Profile, **stamp) -> dict[str, object]:
    """Each table as ``results/<profile>/labelling/<name>.csv`` with a stamp beside it."""
    folder = results_dir(profile) / "labelling"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, frame in tables.items():
        path = folder / f"{key}.csv"
        frame.to_csv(path, index=False, float_format="%.6f")
        write_stamp(path, profile=profile, rows=len(frame), **stamp)
        out[key] = path
    return out
