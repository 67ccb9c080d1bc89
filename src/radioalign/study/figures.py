"""The study's figures: one registry (figure -> notebook -> function -> files) and their builders.

The builders assemble each figure from the embedding bundles.

:data:`FIGURES` is the one list of what the study draws, in the manner of showyourwork's
``\\script{}``: each :class:`Figure` names the notebook that makes it, the function that
draws it and the files it writes under ``results/<profile>/figures/``. Everything reads it:

* the notebooks save through :func:`save_figure`, so each stamp names its notebook and function;
* ``make paper`` publishes the report's figures (``radioalign.tools.pipeline.publish``);
* the report (``radioalign.tools.report``) requires them, fails naming the notebook
  of any that is missing, and takes each caption from its ``title``.

``kind`` says where a figure goes: ``"paper"`` (the five figures of the paper),
``"extra"`` (shown in the report beyond the paper) or ``"notebook"`` (a diagnostic that
stays in the results). ``function`` is None for a figure drawn in its notebook's own cell.

The builders take ``{tag: bundle}`` (:func:`radioalign.study.bundles.load_bundles`) and
return a matplotlib figure; the drawing primitives are the library's (``radioalign.plots``).
Every comparison is per item of one split (the test split unless told): bundles of
different models hold the same items in the same order, and each holds every caption
set's embeddings under that model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import plots
from ..metrics import bootstrap_indices, l2_normalize, pair_cosines, percentile_interval
from .bundles import FROZEN, stage_tags, tag
from .layout import figures_dir, results_dir


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

PAPER, EXTRA, NOTEBOOK = "paper", "extra", "notebook"


@dataclass(frozen=True)
class Figure:
    """One registered figure: ``key`` is its file stem; ``notebook`` the notebook (stem in
    ``notebooks/``) that makes it; ``function`` the dotted path of the function that draws
    it (None: drawn in the notebook's cell); ``kind`` one of paper / extra / notebook."""

    key: str
    title: str
    notebook: str
    function: str | None
    kind: str = PAPER
    formats: tuple[str, ...] = plots.FORMATS

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(f"{self.key}.{ext}" for ext in self.formats)

    @property
    def in_report(self) -> bool:
        return self.kind in (PAPER, EXTRA)

    def paths(self, results: Path) -> list[Path]:
        """The figure's files under ``results`` (a profile's results folder)."""
        return [figures_dir(results) / name for name in self.outputs]


_HERE = __name__
FIGURES: tuple[Figure, ...] = (
    Figure("fig1", "Cosine similarity of each image's curated and control caption embeddings under the frozen, "
           "text-LoRA and full-LoRA models, and across frozen and fine-tuned text towers (left); cosine similarity "
           "of each image's embeddings under the models trained on curated and on control captions (right).",
           "05_similarity", f"{_HERE}.fig1_caption_anchoring"),
    Figure("fig2", "Example FR-I and FR-II images with both captions.", "01_captioning", f"{_HERE}.fig2_caption_examples"),
    Figure("fig3", "Distribution of paired image--text cosine similarity per model.", "05_similarity",
           f"{_HERE}.fig3_pair_similarity"),
    Figure("fig4", "t-SNE of frozen image and text features; FR-I purple, FR-II yellow.", "06_tsne",
           f"{_HERE}.fig4_tsne_frozen"),
    Figure("fig5", "t-SNE after each LoRA variant, one modality per map: text-LoRA text, full-LoRA text and image, "
           "vision-LoRA image; curated row and control row; FR-I purple, FR-II yellow.", "06_tsne",
           f"{_HERE}.fig5_tsne_modalities"),
    Figure("fig1b", "Mean curated--control caption cosine (left) and curated-run--control-run image cosine (right) at "
           "each saved stage of fine-tuning, with 95% bootstrap intervals.", "05_similarity",
           f"{_HERE}.fig1b_stage_similarity", EXTRA),
    Figure("fig5b", "t-SNE after each LoRA variant with images (circles) and captions (triangles) in one map.",
           "06_tsne", f"{_HERE}.fig5b_tsne_joint", EXTRA),
    Figure("caption_lengths", "Caption lengths against the text tower's 64-token limit.", "01_captioning",
           "radioalign.plots.caption_lengths", NOTEBOOK),
    Figure("frozen_norms", "L2 norms of the frozen embeddings.", "02_frozen_embeddings", None, NOTEBOOK),
    Figure("frozen_neighbours", "Test images and their nearest training images under the frozen image tower.",
           "02_frozen_embeddings", None, NOTEBOOK),
    Figure("training_curves", "Training and validation loss of each LoRA run.", "03_lora_finetuning", None, NOTEBOOK),
    Figure("attribute_frequency", "Share of captions stating each morphology attribute, by class (FR-I purple, FR-II "
           "yellow), per caption set (hatch): curated, control and catalogue.", "07_text_controls",
           "radioalign.plots.plot_attribute_frequency", EXTRA),
    Figure("shuffled_pairs", "Recall@1 and class-level Recall@1 of full LoRA trained on true pairs, on captions shuffled "
           "within class and across classes, per caption set, with 95% bootstrap intervals; dashed: chance.",
           "08_pairs_and_seeds", "radioalign.study.pairs.fig_shuffled_pairs", EXTRA),
    Figure("rotation_drop", "Change of Recall@1, class-level Recall@1 and image probe F1 when the test images are "
           "rotated or flipped (each of the 7 non-identity D4 transforms minus identity), per model; curated solid, "
           "control dashed; bands: 95% paired bootstrap intervals.", "09_rotations",
           "radioalign.study.rotations.fig_rotation_drop", EXTRA),
    Figure("survey_search", "Text and image searches of the survey stores built from the test images.", "10_survey",
           None, NOTEBOOK),
    Figure("labelling_curves", "Test macro F1 of the labelling probe against the number of labels of a simulated "
           "labeller on the training images: random picks, uncertainty sampling and zero-shot-seeded sampling, per "
           "model, with 95% bootstrap intervals over seeds; dotted: zero-shot with no label.", "11_labelling",
           "radioalign.study.labelling_curves.fig_labelling_curves", EXTRA),
)
FIGURE: dict[str, Figure] = {f.key: f for f in FIGURES}


def get_figure(key: str) -> Figure:
    try:
        return FIGURE[key]
    except KeyError:
        raise KeyError(f"{key!r} is not a registered figure; registered: {', '.join(FIGURE)}") from None


def report_figures() -> list[Figure]:
    """The figures the report shows and ``make paper`` publishes: the paper's, then the extras."""
    return [f for f in FIGURES if f.in_report]


def resolve(figure: Figure):
    """The function a registry entry names (None for a figure drawn in its notebook)."""
    if figure.function is None:
        return None
    module, _, name = figure.function.rpartition(".")
    return getattr(importlib.import_module(module), name)


def save_figure(fig, key: str, profile: Profile, *, close: bool = False, **extra) -> list[Path]:
    """Write registered figure ``key`` to ``results/<profile>/figures/`` (its ``outputs``),
    each file stamped with the profile's settings, the notebook and function that make it,
    and ``extra`` fields."""
    entry = get_figure(key)
    return plots.savefig(fig, figures_dir(results_dir(profile)), entry.key, profile=profile, formats=entry.formats, close=close,
                         notebook=entry.notebook, function=entry.function, title=entry.title, **extra)


class FigureMissingError(FileNotFoundError):
    """A registered figure's file is absent; the message names the notebook that makes it."""


def missing_figures(results: Path, figures: Sequence[Figure] | None = None) -> list[tuple[Figure, Path]]:
    """``(figure, path)`` for every output of ``figures`` (default: the report's) not under
    ``results/figures/`` (``results``: a profile's results folder)."""
    figures = report_figures() if figures is None else figures
    return [(f, p) for f in figures for p in f.paths(results) if not p.is_file()]


def require_figures(results: Path, figures: Sequence[Figure] | None = None) -> None:
    """Raise :class:`FigureMissingError` naming each missing figure and its notebook."""
    missing = missing_figures(results, figures)
    profile = results.name  # the results folder is named after its profile
    if missing:
        lines = [
            f"  {f.key} ({p.name}): made by notebooks/{f.notebook}.ipynb" + (f" ({f.function})" if f.function else "")
            for f, p in missing
        ]
        notebooks = sorted({f.notebook for f, _ in missing})
        raise FigureMissingError(
            f"{len(missing)} registered figure file(s) missing under {figures_dir(results)}:\n" + "\n".join(lines)
            + f"\nrun {', '.join(notebooks)} for profile {profile} (or `make paper PROFILE={profile}`)"
        )


# ------------------------------------------------------------------------ helpers


def _split(bundle: Mapping[str, np.ndarray], key: str, split: str) -> np.ndarray:
    if split == "all":
        return np.concatenate([np.asarray(bundle[f"{key}_train"]), np.asarray(bundle[f"{key}_test"])])
    return np.asarray(bundle[f"{key}_{split}"])


def neighbour_agreement(x: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """The mean share of each point's ``k`` nearest other points (cosine) that have its
    class: 1 when the classes separate, about 0.5 for two mixed classes of equal size."""
    x, labels = l2_normalize(x), np.asarray(labels)
    k = min(k, len(x) - 1)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))


# ---------------------------------------------------------------------- Figure 1


@dataclass(frozen=True)
class Comparison:
    """One distribution of Figure 1: cos(``a``_i, ``b``_i) over items, each side a
    ``(tag, embedding key)`` such as ``("frozen", "text_control")``."""

    panel: str  # "text" | "image"
    label: str
    group: str  # "within" one model | "across" frozen and fine-tuned | "image"
    a: tuple[str, str]
    b: tuple[str, str]
    color: str


def caption_comparisons(pair=("curated", "control"), text_scopes=("text", "full"), image_scopes=("vision", "full")):
    """Figure 1's distributions, in drawing order (see :func:`fig1_caption_anchoring`)."""
    a, b = pair
    label = plots.MODEL_LABELS
    out = [Comparison("text", "frozen", "within", (FROZEN, f"text_{a}"), (FROZEN, f"text_{b}"), "0.55")]
    for s in text_scopes:
        for c in pair:
            out.append(Comparison("text", f"{label[s]} on {c}", "within", (tag(s, c), f"text_{a}"), (tag(s, c), f"text_{b}"),
                                  plots.SCOPE_COLORS[s]))
    for s in text_scopes:
        # a frozen caption of one set against the other set's caption after training on that other set
        out.append(Comparison("text", f"frozen {b} vs {label[s]} {a}", "across", (FROZEN, f"text_{b}"),
                              (tag(s, a), f"text_{a}"), plots.SCOPE_COLORS[s]))
        out.append(Comparison("text", f"frozen {a} vs {label[s]} {b}", "across", (FROZEN, f"text_{a}"),
                              (tag(s, b), f"text_{b}"), plots.SCOPE_COLORS[s]))
    for s in image_scopes:
        out.append(Comparison("image", f"{label[s]}: on {a} vs on {b}", "image", (tag(s, a), "image"), (tag(s, b), "image"),
                              plots.SCOPE_COLORS[s]))
    return out


def caption_anchoring(bundles, *, pair=("curated", "control"), text_scopes=("text", "full"),
                      image_scopes=("vision", "full"), split="test") -> list[tuple[Comparison, np.ndarray]]:
    """Figure 1's numbers: ``[(comparison, per-item cosines)]`` for the comparisons whose
    bundles (and caption sets) are present."""
    out = []
    for comp in caption_comparisons(pair, text_scopes, image_scopes):
        (ta, ka), (tb, kb) = comp.a, comp.b
        if ta in bundles and tb in bundles and f"{ka}_{split}" in bundles[ta] and f"{kb}_{split}" in bundles[tb]:
            out.append((comp, pair_cosines(_split(bundles[ta], ka, split), _split(bundles[tb], kb, split))))
    return out


def caption_anchoring_summary(bundles, **kwargs) -> pd.DataFrame:
    """Mean and median of each of Figure 1's distributions."""
    rows = [dict(panel=c.panel, comparison=c.label, mean=float(v.mean()), median=float(np.median(v)), n=len(v))
            for c, v in caption_anchoring(bundles, **kwargs)]
    return pd.DataFrame(rows, columns=["panel", "comparison", "mean", "median", "n"])


def fig1_caption_anchoring(bundles, *, pair=("curated", "control"), text_scopes=("text", "full"),
                           image_scopes=("vision", "full"), split="test"):
    """Figure 1 as published. Left: violins of cos(curated_i, control_i) under the frozen
    model and under each text-training run (its text tower on either caption set), then
    the cross-model comparisons: a frozen caption against the other set's caption from the
    run trained on that other set. Right: cos(image_i under the run trained on curated,
    image_i under the run trained on control), for the scopes that train the image tower
    (a text-only run leaves it frozen: cosine 1). Dots: medians; bars: means."""
    found = caption_anchoring(bundles, pair=pair, text_scopes=text_scopes, image_scopes=image_scopes, split=split)
    with plots.style():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
        titles = {"text": f"caption embeddings: cos({pair[0]}, {pair[1]})",
                  "image": f"image embeddings: runs on {pair[0]} vs {pair[1]}"}
        for ax, panel in zip(axes, ("text", "image")):
            mine = [(c, v) for c, v in found if c.panel == panel]
            ax.set_title(titles[panel])
            if not mine:
                plots.missing_panel(ax, f"no bundles for the {panel} panel")
                continue
            plots.violin_panel(ax, {c.label: v for c, v in mine}, colors=[c.color for c, _ in mine], width=14)
            within = sum(c.group == "within" for c, _ in mine)
            if 0 < within < len(mine) and panel == "text":
                ax.axvline(within - 0.5, color="0.7", ls=":", lw=1)  # within one model | across models
            ax.set_ylabel(f"cosine per {split} item")
        fig.tight_layout()
    return fig


def stage_similarity(bundles, *, scopes=("vision", "text", "full"), pair=("curated", "control"), split="test",
                     bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Figure 1b's numbers: per panel, run and stage, the mean item cosine with a 95 % interval.

    Panel ``text``: cos(text_<pair[0]>_i, text_<pair[1]>_i) at each stage of each run
    (``frozen`` as stage 0, each saved epoch, final). Panel ``image``: cos(image_i under
    the run on ``pair[0]``, image_i under the run on ``pair[1]``) at the same stage (1 at
    the frozen stage, where the two models are the same).
    """
    a, b = pair
    rows = []

    def add(panel, run, scope, trained_on, stage, order, values):
        idx = bootstrap_indices(len(values), bootstrap, seed)
        lo, hi = percentile_interval(values[idx].mean(axis=1)) if bootstrap else (np.nan, np.nan)
        rows.append(dict(panel=panel, run=run, scope=scope, trained_on=trained_on, stage=stage, order=order,
                         mean=float(values.mean()), low=lo, high=hi, n=len(values)))

    for scope in scopes:
        for trained_on in pair:
            for order, (stage, t) in enumerate(stage_tags(bundles, scope, trained_on)):
                if t in bundles and f"text_{a}_{split}" in bundles[t] and f"text_{b}_{split}" in bundles[t]:
                    values = pair_cosines(_split(bundles[t], f"text_{a}", split), _split(bundles[t], f"text_{b}", split))
                    add("text", tag(scope, trained_on), scope, trained_on, stage, order, values)
        stages_a = dict(stage_tags(bundles, scope, a))
        for order, (stage, tag_b) in enumerate(stage_tags(bundles, scope, b)):
            tag_a = stages_a.get(stage)
            if tag_a in bundles and tag_b in bundles:
                values = pair_cosines(_split(bundles[tag_a], "image", split), _split(bundles[tag_b], "image", split))
                add("image", scope, scope, None, stage, order, values)
    columns = ["panel", "run", "scope", "trained_on", "stage", "order", "mean", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns)


def _stage_axis(frame: pd.DataFrame) -> list[str]:
    def key(s):
        return (0, 0) if s == "frozen" else (2, 0) if s == "final" else (1, int(s.split()[-1]))

    return sorted(frame["stage"].unique(), key=key) if len(frame) else ["frozen", "final"]


def fig1b_stage_similarity(bundles, *, pair=("curated", "control"), split="test", bootstrap=1000, seed=0, data=None):
    """Figure 1b: Figure 1's two similarities as means across fine-tuning stages, per run."""
    df = data if data is not None else stage_similarity(bundles, pair=pair, split=split, bootstrap=bootstrap, seed=seed)
    stages = _stage_axis(df)
    pos = {s: i for i, s in enumerate(stages)}
    with plots.style():
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
        titles = {"text": f"caption embeddings: cos({pair[0]}, {pair[1]})",
                  "image": f"image embeddings: runs on {pair[0]} vs {pair[1]}"}
        for ax, panel in zip(axes, ("text", "image")):
            sub = df[df["panel"] == panel]
            ax.set_title(titles[panel])
            if sub.empty:
                plots.missing_panel(ax, f"no bundles for the {panel} panel")
                continue
            for (_, scope, trained_on), g in sub.groupby(["run", "scope", "trained_on"], dropna=False, sort=False):
                g = g.sort_values("order")
                x = [pos[s] for s in g["stage"]]
                trained = isinstance(trained_on, str)
                color = plots.SCOPE_COLORS.get(scope, "0.3")
                label = plots.MODEL_LABELS.get(scope, scope) + (f", trained on {trained_on}" if trained else "")
                ax.plot(x, g["mean"], ls=plots.CAPTION_STYLES.get(trained_on, "-") if trained else "-", marker="o", ms=3,
                        color=color, label=label)
                if g["low"].notna().all():
                    ax.fill_between(x, g["low"], g["high"], color=color, alpha=0.15, lw=0)
            ax.set_xticks(range(len(stages)), stages)
            ax.set_xlabel("fine-tuning stage")
            ax.set_ylabel(f"mean cosine over {split} items")
            ax.legend(loc="best")
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- Figure 2

PAPER_EXAMPLES = ("full-train-0010", "full-train-0061", "full-train-0108", "full-train-0202")


def example_picks(names: Sequence[str], labels: Sequence[int], *, source: str, per_class: int = 2) -> list[int]:
    """Figure 2's examples: the paper's own (train rows 10, 61, 108, 202 of MiraBest_full)
    with the published captions when present, else the first ``per_class`` of each class."""
    names = list(names)
    if source == "published" and all(a in names for a in PAPER_EXAMPLES):
        return [names.index(a) for a in PAPER_EXAMPLES]
    labels = np.asarray(labels)
    return [int(i) for c in (0, 1) for i in np.flatnonzero(labels == c)[:per_class]]


def fig2_caption_examples(images, labels, captions_by_prompt: Mapping[str, Sequence[str]], names=None):
    """Figure 2: example FR-I and FR-II images, each above its captions from every prompt."""
    return plots.caption_examples(images, labels, captions_by_prompt, titles=names)


# ---------------------------------------------------------------------- Figure 3


def _model_runs(bundles, captions: Sequence[str]) -> list[tuple[str, str, str]]:
    """[(model, captions, tag)] in MODEL_ORDER for the bundles present: frozen with each
    caption set, a LoRA run with the captions it was trained on."""
    runs = []
    for model in plots.MODEL_ORDER:
        for c in captions:
            t = tag(model) if model == FROZEN else tag(model, c)
            if t in bundles and f"text_{c}_test" in bundles[t]:
                runs.append((model, c, t))
    return runs


def pair_similarities(bundles, *, captions=("curated", "control"), split="test") -> dict[tuple[str, str], np.ndarray]:
    """Figure 3's numbers: {(model, captions): cos(image_i, caption_i) per item} for the runs present."""
    return {
        (m, c): pair_cosines(_split(bundles[t], "image", split), _split(bundles[t], f"text_{c}", split))
        for m, c, t in _model_runs(bundles, captions)
    }


def pair_similarity_summary(bundles, *, captions=("curated", "control"), split="test") -> pd.DataFrame:
    """Mean and median paired cosine per model and caption set (Figure 3 in numbers)."""
    rows = [
        dict(model=m, captions=c, mean=float(v.mean()), median=float(np.median(v)), n=len(v))
        for (m, c), v in pair_similarities(bundles, captions=captions, split=split).items()
    ]
    return pd.DataFrame(rows, columns=["model", "captions", "mean", "median", "n"])


def fig3_pair_similarity(bundles, *, captions=("curated", "control"), split="test", bins=20):
    """Figure 3: histograms of paired image–text cosine, one panel per model, one colour per caption set."""
    values = pair_similarities(bundles, captions=captions, split=split)
    with plots.style():
        fig, axes = plt.subplots(1, len(plots.MODEL_ORDER), figsize=(11, 2.8), sharey=True)
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins) if values else None
        for ax, model in zip(axes, plots.MODEL_ORDER):
            ax.set_title(plots.MODEL_LABELS[model])
            mine = {c: v for (m, c), v in values.items() if m == model}
            if not mine:
                plots.missing_panel(ax, "no bundle")
                continue
            plots.hist_panel(ax, mine, edges=edges)
            ax.set_xlabel("cos(image, caption)")
            ax.legend(loc="upper left", fontsize=7)
        axes[0].set_ylabel(f"{split} pairs")
        fig.tight_layout()
    return fig


# ------------------------------------------------------------------- Figures 4, 5

# Figure 5's columns as the paper arranges them: (scope, modality shown).
FIG5_COLUMNS = (("text", "text"), ("full", "text"), ("full", "image"), ("vision", "image"))


def _tsne_points(bundle, captions, features, split):
    """(embeddings, labels, markers) of one map; ``features``: image, text or both."""
    labels = _split(bundle, "labels", split)
    if features in ("image", "text"):
        x = _split(bundle, "image" if features == "image" else f"text_{captions}", split)
        return x, labels, np.full(len(x), "o")
    if features == "both":
        image, text = _split(bundle, "image", split), _split(bundle, f"text_{captions}", split)
        return np.concatenate([image, text]), np.concatenate([labels, labels]), np.repeat(["o", "^"], len(image))
    raise ValueError(f"features must be 'image', 'text' or 'both', got {features!r}")


def _tsne_panel(ax, bundle, captions, features, split, seed, perplexity):
    x, labels, markers = _tsne_points(bundle, captions, features, split)
    xy = plots.tsne_embed(x, perplexity=perplexity, seed=seed)
    for m in dict.fromkeys(markers.tolist()):
        plots.scatter_classes(ax, xy[markers == m], labels[markers == m], marker=m)


def tsne_summary(panels: Sequence[tuple[str, Mapping, str | None, str]], *, split="all", k=5) -> pd.DataFrame:
    """Per map ``(name, bundle, captions, features)``: the points drawn and the class
    agreement of their ``k`` nearest neighbours in the embedding space the map is drawn
    from (:func:`neighbour_agreement`), a number that does not depend on t-SNE's layout."""
    rows = []
    for name, bundle, captions, features in panels:
        x, labels, _ = _tsne_points(bundle, captions, features, split)
        rows.append(dict(map=name, features=features, points=len(x), agreement=neighbour_agreement(x, labels, k)))
    return pd.DataFrame(rows, columns=["map", "features", "points", "agreement"])


def fig4_panels(bundle, captions=("curated", "control")) -> list[tuple[str, Mapping, str | None, str]]:
    """Figure 4's maps: the frozen images, then each caption set present."""
    present = [c for c in captions if f"text_{c}_test" in bundle]
    return [("frozen image", bundle, None, "image")] + [(f"frozen {c} captions", bundle, c, "text") for c in present]


def fig4_tsne_frozen(bundle, *, captions=("curated", "control"), split="all", seed=0, perplexity=30.0):
    """Figure 4: t-SNE of the frozen image embeddings and of each caption set's embeddings."""
    panels = fig4_panels(bundle, captions)
    with plots.style():
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
        for ax, (name, b, c, features) in zip(axes[0], panels):
            _tsne_panel(ax, b, c, features, split, seed, perplexity)
            ax.set_title(f"{name} embeddings", color=plots.caption_color(c, "black") if c else "black")
        plots.class_legend(axes[0, 0])
        fig.tight_layout()
    return fig


def fig5_panels(captions=("curated", "control"), columns=FIG5_COLUMNS):
    """Figure 5's grid: ``[[(name, tag, captions, features)]]``, a row per caption set."""
    return [[(f"{plots.MODEL_LABELS[s]}, {c}: {f}", tag(s, c), c, f) for s, f in columns] for c in captions]


def fig5_tsne_modalities(bundles, *, captions=("curated", "control"), columns=FIG5_COLUMNS, split="all", seed=0,
                         perplexity=30.0):
    """Figure 5 as published: one single-modality map per panel, in the paper's columns
    (text-LoRA -> text, full-LoRA -> text and image, vision-LoRA -> image), a row for the
    runs on each caption set."""
    grid = fig5_panels(captions, columns)
    return _tsne_grid(bundles, grid, split, seed, perplexity, markers=())


def fig5b_tsne_joint(bundles, *, captions=("curated", "control"), scopes=("vision", "text", "full"), features="both",
                     split="all", seed=0, perplexity=30.0):
    """Figure 5b: a map per LoRA run (row: caption set, column: scope); with
    ``features="both"`` images (circles) and captions (triangles) share it, so the
    modality gap and the class structure show at once."""
    grid = [[(f"{plots.MODEL_LABELS[s]}, {c}", tag(s, c), c, features) for s in scopes] for c in captions]
    markers = (("o", "image"), ("^", "caption")) if features == "both" else ()
    return _tsne_grid(bundles, grid, split, seed, perplexity, markers=markers)


def _tsne_grid(bundles, grid, split, seed, perplexity, *, markers):
    rows, cols = len(grid), max((len(r) for r in grid), default=1)
    with plots.style():
        fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.0 * rows), squeeze=False)
        for i, row in enumerate(grid):
            for j, (name, t, c, features) in enumerate(row):
                ax = axes[i, j]
                if t not in bundles:
                    plots.missing_panel(ax, f"{t}: no bundle")
                else:
                    _tsne_panel(ax, bundles[t], c, features, split, seed, perplexity)
                ax.set_title(name, color=plots.caption_color(c, "black"), fontsize=9)
        plots.class_legend(axes[0, 0], markers=markers)
        fig.tight_layout()
    return fig


def fig5_summary(bundles, *, captions=("curated", "control"), columns=FIG5_COLUMNS, split="all", k=5) -> pd.DataFrame:
    """:func:`tsne_summary` of Figure 5's maps whose bundles are present."""
    panels = [(name, bundles[t], c, f) for row in fig5_panels(captions, columns) for name, t, c, f in row if t in bundles]
    return tsne_summary(panels, split=split, k=k)
