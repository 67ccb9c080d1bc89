"""The study's figures in one style, FR-I and FR-II in the same colours everywhere.

Figure functions take loaded embedding bundles (``{tag: bundle}``, see
``radioalign.study.bundles.load_bundles``) and return a matplotlib ``Figure``; ``savefig``
writes it as PNG and PDF with a provenance stamp beside each file.

* ``fig1_stage_similarity``: cos(curated caption_i, control caption_i) across
  fine-tuning stages (frozen, ``_epoch<k>`` bundles, final), and cos(image_i under the
  model trained on curated captions, image_i under the one trained on control captions);
* ``plot_examples`` (Figure 2): example images with their captions;
* ``fig3_pair_similarity``: the distribution of paired image–text cosine per model;
* ``fig4_tsne_frozen``: t-SNE of frozen image and caption embeddings;
* ``fig5_tsne_variants``: t-SNE after each LoRA variant, curated row and control row.

All use the test split unless told otherwise; t-SNE uses L2-normalised rows
(Euclidean distance on the sphere ranks like cosine) and a fixed seed.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .metrics import bootstrap_indices, l2_normalize, pair_cosines, percentile_interval
from .provenance import write_stamp

# Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
FR_COLORS = {0: "#0072B2", 1: "#D55E00"}
FR_LABELS = {0: "FR-I", 1: "FR-II"}
CAPTION_COLORS = {"curated": "#009E73", "control": "#CC79A7", "catalog": "#E69F00"}
SCOPE_COLORS = {"frozen": "#000000", "vision": "#56B4E9", "text": "#E69F00", "full": "#009E73"}
MODEL_ORDER = ("frozen", "vision", "text", "full")
MODEL_LABELS = {"frozen": "Frozen", "vision": "Vision LoRA", "text": "Text LoRA", "full": "Full LoRA"}
CAPTION_STYLES = {"curated": "-", "control": "--", "catalog": ":"}

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.5,
    "pdf.fonttype": 42,  # embed TrueType: text stays text in the PDF
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Every figure of the study is drawn inside this context."""
    with plt.rc_context(STYLE):
        yield


def class_legend(ax, labels: Sequence[int] = (0, 1), **kwargs) -> None:
    """A legend with the FR-I / FR-II colours."""
    handles = [plt.Line2D([], [], ls="", marker="o", color=FR_COLORS[c], label=FR_LABELS[c]) for c in labels]
    ax.legend(handles=handles, **kwargs)


def savefig(fig, name: str, profile: str, *, folder: str | Path | None = None, close: bool = False) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.pdf`` (``results/<profile>/figures/`` by default),
    each with a ``.stamp.json`` beside it; return the two paths."""
    from .study.layout import figures_dir  # TODO(registry): the study passes the folder

    folder = Path(folder) if folder else figures_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with style():
        for ext in ("png", "pdf"):
            path = folder / f"{name}.{ext}"
            fig.savefig(path)
            write_stamp(path, profile=profile, figure=name)
            out.append(path)
    if close:
        plt.close(fig)
    return out


def _missing_panel(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4", wrap=True)
    ax.axis("off")


def _split(bundle: Mapping[str, np.ndarray], key: str, split: str) -> np.ndarray:
    if split == "all":
        return np.concatenate([np.asarray(bundle[f"{key}_train"]), np.asarray(bundle[f"{key}_test"])])
    return np.asarray(bundle[f"{key}_{split}"])


# ---------------------------------------------------------------------------- Figure 1


def _stage_tags(bundles: Mapping, scope: str, captions: str) -> list[tuple[str, str | None]]:
    """[(stage label, tag or None)] for one run: frozen, each saved epoch, final."""
    prefix = f"{scope}-{captions}_epoch"
    epochs = sorted(int(t[len(prefix) :]) for t in bundles if t.startswith(prefix) and t[len(prefix) :].isdigit())
    stages = [("frozen", "frozen" if "frozen" in bundles else None)]
    stages += [(f"epoch {k}", f"{prefix}{k}") for k in epochs]
    stages.append(("final", f"{scope}-{captions}" if f"{scope}-{captions}" in bundles else None))
    return stages


def stage_similarity(
    bundles: Mapping[str, Mapping[str, np.ndarray]],
    *,
    scopes: Sequence[str] = ("vision", "text", "full"),
    pair: tuple[str, str] = ("curated", "control"),
    split: str = "test",
    bootstrap: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Figure 1's numbers: per panel, run and stage, the mean item cosine with a 95 % interval.

    Panel ``text``: cos(text_<pair[0]>_i, text_<pair[1]>_i) under each stage of each run
    (``<scope>-<captions>``, ``frozen`` as stage 0). Panel ``image``: cos(image_i under
    ``<scope>-<pair[0]>``, image_i under ``<scope>-<pair[1]>``) at the same stage
    (1 at the frozen stage, where the two models are the same).
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
            for order, (stage, tag) in enumerate(_stage_tags(bundles, scope, trained_on)):
                if tag is None or tag not in bundles:
                    continue
                bundle = bundles[tag]
                if f"text_{a}_{split}" in bundle and f"text_{b}_{split}" in bundle:
                    values = pair_cosines(bundle[f"text_{a}_{split}"], bundle[f"text_{b}_{split}"])
                    add("text", f"{scope}-{trained_on}", scope, trained_on, stage, order, values)
        stages_a = dict(_stage_tags(bundles, scope, a))
        for order, (stage, tag_b) in enumerate(_stage_tags(bundles, scope, b)):
            tag_a = stages_a.get(stage)
            if tag_a is None or tag_b is None or tag_a not in bundles or tag_b not in bundles:
                continue
            values = pair_cosines(bundles[tag_a][f"image_{split}"], bundles[tag_b][f"image_{split}"])
            add("image", scope, scope, None, stage, order, values)
    columns = ["panel", "run", "scope", "trained_on", "stage", "order", "mean", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns)


def _stage_axis(frame: pd.DataFrame) -> list[str]:
    def key(s):
        return (0, 0) if s == "frozen" else (2, 0) if s == "final" else (1, int(s.split()[-1]))

    return sorted(frame["stage"].unique(), key=key) if len(frame) else ["frozen", "final"]


def fig1_stage_similarity(bundles, *, pair=("curated", "control"), split="test", bootstrap=1000, seed=0, data=None):
    """Figure 1: text (left) and image (right) similarity across fine-tuning stages."""
    df = data if data is not None else stage_similarity(bundles, pair=pair, split=split, bootstrap=bootstrap, seed=seed)
    stages = _stage_axis(df)
    pos = {s: i for i, s in enumerate(stages)}
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
        titles = {
            "text": f"caption embeddings: cos({pair[0]}, {pair[1]})",
            "image": f"image embeddings: models trained on {pair[0]} vs {pair[1]}",
        }
        for ax, panel in zip(axes, ("text", "image")):
            sub = df[df["panel"] == panel]
            ax.set_title(titles[panel])
            if sub.empty:
                _missing_panel(ax, f"no bundles for the {panel} panel")
                continue
            for (run, scope, trained_on), g in sub.groupby(["run", "scope", "trained_on"], dropna=False, sort=False):
                g = g.sort_values("order")
                x = [pos[s] for s in g["stage"]]
                ls = CAPTION_STYLES.get(trained_on, "-") if isinstance(trained_on, str) else "-"
                label = f"{MODEL_LABELS.get(scope, scope)}" + (f", trained on {trained_on}" if isinstance(trained_on, str) else "")
                ax.plot(x, g["mean"], ls=ls, marker="o", ms=3, color=SCOPE_COLORS.get(scope, "0.3"), label=label)
                if g["low"].notna().all():
                    ax.fill_between(x, g["low"], g["high"], color=SCOPE_COLORS.get(scope, "0.3"), alpha=0.15, lw=0)
            ax.set_xticks(range(len(stages)), stages)
            ax.set_xlabel("fine-tuning stage")
            ax.set_ylabel(f"mean cosine over {split} items")
            ax.legend(loc="best")
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- Figure 2


def plot_examples(
    images: np.ndarray,
    captions_by_prompt: Mapping[str, Sequence[str]],
    labels: Sequence[int],
    *,
    names: Sequence[str] | None = None,
    width: int = 48,
    cmap: str = "gray",
):
    """Figure 2: one row per example, the image (titled with its class in the class colour)
    then one panel of wrapped caption text per prompt."""
    images = np.asarray(images)
    prompts = list(captions_by_prompt)
    for p in prompts:
        if len(captions_by_prompt[p]) != len(images):
            raise ValueError(f"{len(captions_by_prompt[p])} {p} captions for {len(images)} images")
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    n = len(images)
    with style():
        fig, axes = plt.subplots(n, 1 + len(prompts), figsize=(2.2 + 3.2 * len(prompts), 2.2 * n), squeeze=False,
                                 gridspec_kw={"width_ratios": [1] + [1.6] * len(prompts)})
        for i in range(n):
            ax = axes[i, 0]
            ax.imshow(images[i], cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            label = int(labels[i])
            title = FR_LABELS.get(label, str(label)) + (f"\n{names[i]}" if names is not None else "")
            ax.set_title(title, color=FR_COLORS.get(label, "black"), fontsize=8)
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(FR_COLORS.get(label, "black"))
            for j, p in enumerate(prompts, start=1):
                ax = axes[i, j]
                ax.axis("off")
                ax.text(0, 1, textwrap.fill(str(captions_by_prompt[p][i]), width), va="top", ha="left", fontsize=7,
                        transform=ax.transAxes)
                if i == 0:
                    ax.set_title(p, color=CAPTION_COLORS.get(p, "black"))
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- Figure 3


def _model_runs(bundles, captions: Sequence[str]) -> list[tuple[str, str, str]]:
    """[(model, captions, tag)] in MODEL_ORDER for the tags present: frozen with each caption
    set, ``<scope>-<c>`` with its own captions."""
    runs = []
    for model in MODEL_ORDER:
        for c in captions:
            tag = "frozen" if model == "frozen" else f"{model}-{c}"
            if tag in bundles and f"text_{c}_test" in bundles[tag]:
                runs.append((model, c, tag))
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
    with style():
        fig, axes = plt.subplots(1, len(MODEL_ORDER), figsize=(11, 2.8), sharey=True)
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins) if values else None
        for ax, model in zip(axes, MODEL_ORDER):
            ax.set_title(MODEL_LABELS[model])
            mine = {c: v for (m, c), v in values.items() if m == model}
            if not mine:
                _missing_panel(ax, "no bundle")
                continue
            for c, v in mine.items():
                color = CAPTION_COLORS.get(c, "0.3")
                ax.hist(v, bins=edges, histtype="step", color=color, lw=1.5, label=f"{c} (mean {v.mean():.2f})")
                ax.axvline(v.mean(), color=color, ls=CAPTION_STYLES.get(c, "-"), lw=1)
            ax.set_xlabel("cos(image, caption)")
            ax.legend(loc="upper left", fontsize=7)
        axes[0].set_ylabel(f"{split} pairs")
        fig.tight_layout()
    return fig


# ------------------------------------------------------------------------ Figures 4, 5


def tsne_embed(x: np.ndarray, *, perplexity: float = 30.0, seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    """2-D t-SNE of L2-normalised rows with a fixed seed.

    The perplexity is clipped to (n - 1) / 3 (at least 1) for small sets: scikit-learn
    needs it below n, and t-SNE's neighbourhoods need about 3 x perplexity points.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = l2_normalize(x)
    if len(x) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(x)}")
    perplexity = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter)
    # Small sets run faster on one thread: hand-offs dominate (20x on a shared 2-core machine).
    with threadpool_limits(limits=1 if len(x) < 1000 else None):
        return tsne.fit_transform(x)


def _scatter(ax, xy, labels, marker="o", size=8, alpha=0.7):
    for c in (0, 1):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=size, c=FR_COLORS[c], marker=marker, alpha=alpha, lw=0)
    ax.set_xticks([])
    ax.set_yticks([])


def _tsne_panel(ax, bundle, captions, features, split, seed, perplexity):
    labels = _split(bundle, "labels", split)
    image = _split(bundle, "image", split)
    text = None if features == "image" else _split(bundle, f"text_{captions}", split)
    if features == "image":
        _scatter(ax, tsne_embed(image, perplexity=perplexity, seed=seed), labels)
    elif features == "text":
        _scatter(ax, tsne_embed(text, perplexity=perplexity, seed=seed), labels)
    elif features == "both":
        xy = tsne_embed(np.concatenate([image, text]), perplexity=perplexity, seed=seed)
        _scatter(ax, xy[: len(image)], labels, marker="o")
        _scatter(ax, xy[len(image) :], labels, marker="^")
    else:
        raise ValueError(f"features must be 'image', 'text' or 'both', got {features!r}")


def _modality_legend(ax, features):
    handles = [plt.Line2D([], [], ls="", marker="o", color=FR_COLORS[c], label=FR_LABELS[c]) for c in (0, 1)]
    if features == "both":
        handles += [plt.Line2D([], [], ls="", marker=m, color="0.4", label=k) for m, k in (("o", "image"), ("^", "caption"))]
    ax.legend(handles=handles, loc="best", fontsize=7)


def fig4_tsne_frozen(bundle, *, captions=("curated", "control"), split="all", seed=0, perplexity=30.0):
    """Figure 4: t-SNE of the frozen image embeddings and of each caption set's embeddings."""
    present = [c for c in captions if f"text_{c}_test" in bundle]
    with style():
        fig, axes = plt.subplots(1, 1 + len(present), figsize=(3.2 * (1 + len(present)), 3.2), squeeze=False)
        axes = axes[0]
        _tsne_panel(axes[0], bundle, present[0] if present else None, "image", split, seed, perplexity)
        axes[0].set_title("frozen image embeddings")
        for ax, c in zip(axes[1:], present):
            _tsne_panel(ax, bundle, c, "text", split, seed, perplexity)
            ax.set_title(f"frozen {c} caption embeddings", color=CAPTION_COLORS.get(c, "black"))
        _modality_legend(axes[0], "image")
        fig.tight_layout()
    return fig


def fig5_tsne_variants(
    bundles,
    *,
    captions=("curated", "control"),
    scopes=("vision", "text", "full"),
    features="both",
    split="all",
    seed=0,
    perplexity=30.0,
):
    """Figure 5: t-SNE after each LoRA variant; a row per caption set, a column per scope.

    ``features="both"`` embeds images (circles) and captions (triangles) together, so the
    modality gap and the class structure show at once; ``"image"`` or ``"text"`` alone.
    """
    with style():
        fig, axes = plt.subplots(len(captions), len(scopes), figsize=(3.2 * len(scopes), 3.1 * len(captions)), squeeze=False)
        for i, c in enumerate(captions):
            for j, s in enumerate(scopes):
                ax, tag = axes[i, j], f"{s}-{c}"
                if tag not in bundles:
                    _missing_panel(ax, f"{tag}: no bundle")
                else:
                    _tsne_panel(ax, bundles[tag], c, features, split, seed, perplexity)
                ax.set_title(f"{MODEL_LABELS.get(s, s)}, {c} captions", color=CAPTION_COLORS.get(c, "black"))
        _modality_legend(axes[0, 0], features)
        fig.tight_layout()
    return fig
