"""Two small pictures for notebook 01: caption lengths against the 64-token limit, and the Figure-2 panel."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

CLASS_NAMES = ("FR-I", "FR-II")
PROMPT_COLOURS = {"curated": "#1f5fa8", "control": "#b5561b", "catalog": "#3a7d3a"}


def plot_lengths(lengths: Mapping[str, Sequence[int]], *, limit: int | None = 64, unit: str = "tokens", ax=None):
    """Overlaid histograms of caption lengths (one per label) with the truncation line at ``limit``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    values = [np.asarray(v) for v in lengths.values()]
    top = max([int(v.max()) for v in values if len(v)] + [(limit or 0) + 12]) + 2
    bins = np.arange(0, top + 2, 2 if top < 150 else 5)
    for (label, v), colour in zip(lengths.items(), PROMPT_COLOURS.values()):
        colour = PROMPT_COLOURS.get(label.split()[0], colour)
        share = f", {np.mean(np.asarray(v) > limit):.0%} > {limit}" if limit else ""
        ax.hist(v, bins=bins, alpha=0.55, color=colour, label=f"{label} (mean {np.mean(v):.1f}{share})")
    if limit:
        ax.axvline(limit, color="k", ls="--", lw=1)
        ax.text(limit, ax.get_ylim()[1] * 0.95, f" {limit}-token limit", va="top", fontsize=8)
    ax.set_xlabel(f"caption length ({unit})")
    ax.set_ylabel("captions")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return ax


def caption_panel(
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    captions: Mapping[str, Sequence[str]],
    titles: Sequence[str] | None = None,
    *,
    width: int = 46,
):
    """Figure 2: each example image above its captions (one colour per prompt), FR class in the title."""
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(3.1 * n, 5.4), gridspec_kw={"height_ratios": [1, 1.0]}, squeeze=False)
    for k in range(n):
        ax = axes[0, k]
        ax.imshow(images[k], cmap="inferno", origin="upper", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        title = CLASS_NAMES[int(labels[k])] if int(labels[k]) in (0, 1) else str(labels[k])
        ax.set_title(f"{title}\n{titles[k]}" if titles else title, fontsize=8)
        axes[1, k].axis("off")
    fig.tight_layout()  # before the texts, so that measuring them below stays valid
    renderer = fig.canvas.get_renderer()
    for k in range(n):
        tx, y = axes[1, k], 1.0
        for prompt, texts in captions.items():
            body = textwrap.fill(texts[k], width=width)
            t = tx.text(0, y, f"{prompt}:\n{body}", va="top", ha="left", fontsize=6.5, color=PROMPT_COLOURS.get(prompt, "k"), transform=tx.transAxes)
            y = t.get_window_extent(renderer).transformed(tx.transAxes.inverted()).y0 - 0.05  # the next prompt below
    return fig


def save_figure(fig, path: str | Path, profile: str, **extra) -> list[Path]:
    """Save ``path`` (.png) and its .pdf twin, each with a provenance stamp beside it."""
    from ..provenance import write_stamp

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix in (".png", ".pdf"):
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=150, bbox_inches="tight")
        write_stamp(target, profile=profile, **extra)
        out.append(target)
    return out
