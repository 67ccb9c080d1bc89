"""Drawing primitives in one style and one palette, and one ``savefig``.

Library code: it knows embeddings, labels and captions, not profiles, result folders or
bundle tags. The study assembles its figures from these pieces
(``radioalign.study.figures``).

Palette. FR-I and FR-II take the ends of viridis, as in the paper: FR-I purple
(``#440154``) and FR-II yellow (``#FDE725``). Yellow on white is hard to see, so every
mark also has an *ink* colour (:data:`FR_INK`) for edges, text and lines: FR-I's purple
itself, and for FR-II a dark olive-gold of the same hue (``#7A6A00``, contrast 5.4:1 on
white, where the yellow has 1.3:1). Scatter points are yellow filled with that edge.
Caption sets and LoRA scopes use Okabe–Ito colours, distinct under the common
colour-vision deficiencies.

* :func:`style`: the rc settings every figure is drawn in;
* :func:`savefig`: PNG and PDF at one resolution, each with a provenance stamp beside it;
* panels: :func:`violin_panel`, :func:`hist_panel`, :func:`scatter_classes`,
  :func:`missing_panel`, :func:`class_legend`;
* :func:`tsne_embed`: t-SNE of L2-normalised rows with a fixed seed;
* captions: :func:`caption_lengths` (lengths against the text tower's limit) and
  :func:`caption_examples` (images above their captions).
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .data import CLASS_NAMES
from .metrics import l2_normalize
from .provenance import write_stamp

FR_COLORS = {0: "#440154", 1: "#FDE725"}  # fills: viridis ends, the paper's colours
FR_INK = {0: "#440154", 1: "#7A6A00"}  # edges, text, lines: readable on white
FR_LABELS = dict(enumerate(CLASS_NAMES))
CAPTION_COLORS = {"curated": "#009E73", "control": "#CC79A7", "catalog": "#E69F00"}
CAPTION_STYLES = {"curated": "-", "control": "--", "catalog": ":"}
SCOPE_COLORS = {"frozen": "#000000", "vision": "#56B4E9", "text": "#E69F00", "full": "#009E73"}
MODEL_ORDER = ("frozen", "vision", "text", "full")
MODEL_LABELS = {"frozen": "Frozen", "vision": "Vision LoRA", "text": "Text LoRA", "full": "Full LoRA"}
FORMATS = ("png", "pdf")

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
    """Every figure is drawn inside this context."""
    with plt.rc_context(STYLE):
        yield


def caption_color(name: str, default: str = "0.3") -> str:
    """The colour of a caption set; a label such as ``"curated (catalog)"`` takes its first word's."""
    return CAPTION_COLORS.get(name, CAPTION_COLORS.get(str(name).split()[0] if str(name).split() else name, default))


def savefig(
    fig,
    folder: str | Path,
    name: str,
    *,
    profile: Any = None,
    formats: Sequence[str] = FORMATS,
    close: bool = False,
    **stamp: Any,
) -> list[Path]:
    """Write ``folder/<name>.<fmt>`` for each format (PNG and PDF by default), at
    ``STYLE["savefig.dpi"]`` with a tight bounding box, each with a ``.stamp.json`` beside
    it recording ``profile`` (a name, or an object with ``to_dict()``), ``figure=name`` and
    the ``stamp`` fields; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with style():
        for ext in formats:
            path = folder / f"{name}.{ext}"
            fig.savefig(path, dpi=STYLE["savefig.dpi"], bbox_inches="tight")
            write_stamp(path, profile=profile, figure=name, **stamp)
            out.append(path)
    if close:
        plt.close(fig)
    return out


# ------------------------------------------------------------------------ panels


def missing_panel(ax, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4", wrap=True)
    ax.axis("off")


def class_handles(labels: Sequence[int] = (0, 1), markers: Sequence[tuple[str, str]] = ()) -> list:
    """Legend handles: one per class in its colours, then ``(marker, label)`` in grey."""
    handles = [
        plt.Line2D([], [], ls="", marker="o", markerfacecolor=FR_COLORS[c], markeredgecolor=FR_INK[c], label=FR_LABELS[c])
        for c in labels
    ]
    handles += [plt.Line2D([], [], ls="", marker=m, color="0.4", label=k) for m, k in markers]
    return handles


def class_legend(ax, labels: Sequence[int] = (0, 1), markers: Sequence[tuple[str, str]] = (), **kwargs) -> None:
    """A legend with the FR-I / FR-II colours (and optional marker meanings)."""
    kwargs.setdefault("loc", "best")
    kwargs.setdefault("fontsize", 7)
    ax.legend(handles=class_handles(labels, markers), **kwargs)


def scatter_classes(ax, xy: np.ndarray, labels: np.ndarray, *, marker: str = "o", size: float = 9, alpha: float = 0.85) -> None:
    """Points coloured by class: filled with :data:`FR_COLORS`, edged with :data:`FR_INK`."""
    labels = np.asarray(labels)
    for c in (0, 1):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=size, marker=marker, alpha=alpha, facecolors=FR_COLORS[c],
                   edgecolors=FR_INK[c], linewidths=0.3)
    ax.set_xticks([])
    ax.set_yticks([])


def violin_panel(ax, distributions: Mapping[str, np.ndarray], *, colors: Sequence[str] | None = None, width: int = 16) -> None:
    """One violin per named distribution, left to right, with its median (white dot) and mean
    (black bar). A distribution without spread (e.g. a model compared with itself) is drawn
    as a bar at its value: a kernel density needs spread."""
    names = list(distributions)
    colors = list(colors) if colors is not None else ["0.6"] * len(names)
    for i, (name, color) in enumerate(zip(names, colors)):
        v = np.asarray(distributions[name], dtype=float)
        if len(v) > 1 and np.ptp(v) > 1e-9:
            body = ax.violinplot([v], positions=[i], widths=0.8, showextrema=False)["bodies"][0]
            body.set_facecolor(color)
            body.set_edgecolor("0.2")
            body.set_alpha(0.6)
        ax.hlines(v.mean(), i - 0.25, i + 0.25, color="k", lw=1.2)
        ax.scatter([i], [np.median(v)], s=12, color="white", edgecolors="k", linewidths=0.6, zorder=3)
    ax.set_xticks(range(len(names)), [textwrap.fill(n, width) for n in names], fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)


def hist_panel(ax, values: Mapping[str, np.ndarray], *, edges, colors: Mapping[str, str] | None = None,
               styles: Mapping[str, str] | None = None) -> None:
    """Step histograms, one per named set, each with a vertical line at its mean."""
    for name, v in values.items():
        color = (colors or {}).get(name, caption_color(name))
        ax.hist(v, bins=edges, histtype="step", color=color, lw=1.5, label=f"{name} (mean {np.mean(v):.2f})")
        ax.axvline(np.mean(v), color=color, ls=(styles or CAPTION_STYLES).get(name, "-"), lw=1)


# ------------------------------------------------------------------------- t-SNE


def tsne_embed(x: np.ndarray, *, perplexity: float = 30.0, seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    """2-D t-SNE of L2-normalised rows (Euclidean distance on the sphere ranks like cosine)
    with a fixed seed.

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


# ---------------------------------------------------------------------- captions


def caption_lengths(lengths: Mapping[str, Sequence[int]], *, limit: int | None = 64, unit: str = "tokens", ax=None):
    """Overlaid histograms of caption lengths (one per label, coloured by its caption set)
    with the truncation line at ``limit``; return the axes."""
    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 3.5))
        values = [np.asarray(v) for v in lengths.values()]
        top = max([int(v.max()) for v in values if len(v)] + [(limit or 0) + 12]) + 2
        bins = np.arange(0, top + 2, 2 if top < 150 else 5)
        for label, v in lengths.items():
            v = np.asarray(v)
            share = f", {np.mean(v > limit):.0%} > {limit}" if limit and len(v) else ""
            mean = f"{v.mean():.1f}" if len(v) else "–"
            ax.hist(v, bins=bins, alpha=0.55, color=caption_color(label), label=f"{label} (mean {mean}{share})")
        if limit:
            ax.axvline(limit, color="k", ls="--", lw=1)
            ax.text(limit, ax.get_ylim()[1] * 0.95, f" {limit}-token limit", va="top", fontsize=8)
        ax.set_xlabel(f"caption length ({unit})")
        ax.set_ylabel("captions")
        ax.legend(loc="upper left")
    return ax


def caption_examples(
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    captions_by_prompt: Mapping[str, Sequence[str]],
    *,
    titles: Sequence[str] | None = None,
    width: int = 46,
    cmap: str = "inferno",
):
    """Example images (top row; class in the title, in its ink colour) above their captions
    (one colour per caption set, one below the other); return the figure."""
    n = len(images)
    for prompt, texts in captions_by_prompt.items():
        if len(texts) != n:
            raise ValueError(f"{len(texts)} {prompt} captions for {n} images")
    if len(labels) != n or (titles is not None and len(titles) != n):
        raise ValueError(f"{len(labels)} labels and {len(titles or [])} titles for {n} images")
    with style():
        fig, axes = plt.subplots(2, n, figsize=(3.1 * n, 5.4), squeeze=False)
        for k in range(n):
            ax, image, label = axes[0, k], np.asarray(images[k]), int(labels[k])
            scale = dict(vmin=0, vmax=255) if image.dtype == np.uint8 else {}
            ax.imshow(image, cmap=cmap, origin="upper", **scale)
            ax.set_xticks([])
            ax.set_yticks([])
            name = FR_LABELS.get(label, str(label))
            ax.set_title(f"{name}\n{titles[k]}" if titles is not None else name, fontsize=8, color=FR_INK.get(label, "k"))
            axes[1, k].axis("off")
        fig.tight_layout()  # before the texts, so that measuring them below stays valid
        renderer = fig.canvas.get_renderer()
        for k in range(n):
            tx, y = axes[1, k], 1.0
            for prompt, texts in captions_by_prompt.items():
                body = textwrap.fill(str(texts[k]), width=width)
                t = tx.text(0, y, f"{prompt}:\n{body}", va="top", ha="left", fontsize=6.5, color=caption_color(prompt, "k"),
                            transform=tx.transAxes)
                y = t.get_window_extent(renderer).transformed(tx.transAxes.inverted()).y0 - 0.05  # the next one below
    return fig


# -------------------------------------------------------------------- caption audit

ATTRIBUTE_COLORS = {FR_LABELS[0]: FR_COLORS[0], FR_LABELS[1]: FR_COLORS[1], "all": "#7f7f7f"}  # "all": sets without labels
ATTRIBUTE_HATCHES = ("", "//", "..", "xx", "\\\\", "oo")  # one per caption set


def plot_attribute_frequency(table, ax=None):
    """Horizontal bars: the share of captions stating each attribute, by class (colour:
    FR-I purple, FR-II yellow; sets without labels in grey) and caption set (hatch), from
    ``radioalign.captions.audit.audit_table`` (columns ``caption_set``, ``attribute``,
    ``label``, ``FR-I``, ``FR-II``, ``all``). Returns the axes."""
    from matplotlib.patches import Patch

    with style():
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.9 + 0.55 * table["attribute"].nunique()))
        sets = list(dict.fromkeys(table["caption_set"]))
        attributes = list(dict.fromkeys(table["attribute"]))
        bars = [(s, c) for s in sets for c in ("FR-I", "FR-II", "all") if _has_class(table, s, c)]
        height = 0.8 / max(len(bars), 1)
        labels = dict(zip(table["attribute"], table["label"] if "label" in table else table["attribute"]))
        for k, (s, cls) in enumerate(bars):
            rows = table[table["caption_set"] == s].set_index("attribute").reindex(attributes)
            y = np.arange(len(attributes)) - 0.4 + height * (k + 0.5)
            hatch = ATTRIBUTE_HATCHES[sets.index(s) % len(ATTRIBUTE_HATCHES)]
            # grey edges: the hatches show on both purple and yellow
            ax.barh(y, rows[cls].to_numpy(dtype=float), height=height, color=ATTRIBUTE_COLORS[cls], hatch=hatch,
                    edgecolor="0.55", linewidth=0.4)
        ax.set_yticks(np.arange(len(attributes)), [labels[a] for a in attributes])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of captions stating the attribute")
        handles = [Patch(facecolor=ATTRIBUTE_COLORS[c], edgecolor="0.55", label=c) for c in ("FR-I", "FR-II", "all")
                   if any(b[1] == c for b in bars)]
        handles += [Patch(facecolor="white", edgecolor="0.3", hatch=ATTRIBUTE_HATCHES[i % len(ATTRIBUTE_HATCHES)], label=s)
                    for i, s in enumerate(sets)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return ax


def _has_class(table, caption_set: str, cls: str) -> bool:
    """Whether a set has frequencies for ``cls``; "all" is drawn only for sets without class columns."""
    rows = table[table["caption_set"] == caption_set]
    if cls == "all":
        return "FR-I" not in rows.columns or rows["FR-I"].isna().all()
    return cls in rows.columns and not rows[cls].isna().all()
