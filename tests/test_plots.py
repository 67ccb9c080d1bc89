"""The library's drawing primitives: one style, one palette, one savefig, no study inside."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from radioalign import plots  # noqa: E402
from radioalign.data import CLASS_NAMES  # noqa: E402


class Settings:
    """A profile-like stamp object: anything with ``to_dict()``."""

    def to_dict(self):
        return {"name": "demo", "note": "a note", "seed": 3}


def test_savefig_writes_each_format_with_a_stamp(tmp_path):
    with plots.style():
        fig, ax = plots.plt.subplots()
        ax.plot([0, 1], [1, 0])
    paths = plots.savefig(fig, tmp_path / "out", "figX", profile=Settings(), close=True, notebook="nb", extra=[1, 2])
    assert [p.name for p in paths] == ["figX.png", "figX.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    for p in paths:
        stamp = json.loads(p.with_name(p.name + ".stamp.json").read_text())
        assert stamp["profile"] == "demo" and stamp["profile_settings"]["seed"] == 3
        assert stamp["figure"] == "figX" and stamp["notebook"] == "nb" and stamp["extra"] == [1, 2]
        assert stamp["output"] == p.name
    assert not plots.plt.fignum_exists(fig.number)


def test_savefig_resolution_is_the_styles(tmp_path):
    fig = plots.plt.figure(figsize=(2, 1))
    png = plots.savefig(fig, tmp_path, "size", formats=("png",), close=True)[0]
    width = int.from_bytes(png.read_bytes()[16:20], "big")
    dpi = plots.STYLE["savefig.dpi"]
    assert 1.6 * dpi < width <= (2 + 2 * 0.1) * dpi  # a 2-inch figure, tight box (0.1 in padding) at the style's dpi


def test_library_plots_know_nothing_of_the_study():
    code = "import sys, radioalign.plots; print(sorted(m for m in sys.modules if m.startswith('radioalign.study')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_palette_is_the_papers():
    assert plots.FR_LABELS == {0: CLASS_NAMES[0], 1: CLASS_NAMES[1]}
    assert plots.FR_COLORS[0].lower() == "#440154" and plots.FR_COLORS[1].lower() == "#fde725"  # viridis ends

    def contrast(colour):  # WCAG contrast ratio against white
        rgb = np.array(mcolors.to_rgb(colour))
        lin = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return 1.05 / (lin @ [0.2126, 0.7152, 0.0722] + 0.05)

    assert contrast(plots.FR_COLORS[1]) < 2  # the reason for the ink colours
    assert all(contrast(c) >= 4.5 for c in plots.FR_INK.values())


def test_scatter_fills_and_edges_by_class():
    xy = np.random.default_rng(0).normal(size=(10, 2))
    labels = np.arange(10) % 2
    fig, ax = plots.plt.subplots()
    plots.scatter_classes(ax, xy, labels)
    faces = {mcolors.to_hex(c) for coll in ax.collections for c in coll.get_facecolors()}
    edges = {mcolors.to_hex(c) for coll in ax.collections for c in coll.get_edgecolors()}
    assert faces == {c.lower() for c in plots.FR_COLORS.values()}
    assert edges == {c.lower() for c in plots.FR_INK.values()}
    plots.plt.close(fig)


def test_violins_draw_spread_and_mark_constant_distributions():
    rng = np.random.default_rng(0)
    fig, ax = plots.plt.subplots()
    plots.violin_panel(ax, {"spread": rng.normal(size=30), "same model": np.ones(30), "one": np.array([0.2])})
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1  # only "spread" has a body
    assert [t.get_text() for t in ax.get_xticklabels()] == ["spread", "same model", "one"]
    plots.plt.close(fig)


def test_tsne_small_sets_and_determinism():
    x = np.random.default_rng(1).normal(size=(5, 4))
    a = plots.tsne_embed(x, seed=3)
    assert a.shape == (5, 2) and np.isfinite(a).all()
    np.testing.assert_allclose(a, plots.tsne_embed(x, seed=3))
    with pytest.raises(ValueError, match="at least 3"):
        plots.tsne_embed(x[:2])


def test_caption_examples_title_each_image_with_its_class():
    rng = np.random.default_rng(0)
    fig = plots.caption_examples(rng.integers(0, 255, (2, 20, 20), dtype=np.uint8), [0, 1],
                                 {"curated": ["A bright core with two lobes. " * 4, "A compact source."],
                                  "control": ["A blob.", "Two blobs."]}, titles=["a", "b"])
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert [t.get_text() for t in titles] == [f"{CLASS_NAMES[0]}\na", f"{CLASS_NAMES[1]}\nb"]
    assert [mcolors.to_hex(t.get_color()) for t in titles] == [plots.FR_INK[0].lower(), plots.FR_INK[1].lower()]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum(t.startswith("curated:") for t in texts) == 2 and sum(t.startswith("control:") for t in texts) == 2
    plots.plt.close(fig)


def test_caption_examples_check_lengths():
    with pytest.raises(ValueError, match="captions"):
        plots.caption_examples(np.zeros((2, 8, 8)), [0, 1], {"curated": ["one"]})


def test_caption_lengths_colour_by_caption_set():
    ax = plots.caption_lengths({"curated (catalog)": [10, 70, 30], "control (catalog)": [5, 6]}, limit=64)
    colours = [mcolors.to_hex(p.get_facecolor()[:3]) for p in ax.get_legend().get_patches()]
    assert colours == [plots.CAPTION_COLORS["curated"].lower(), plots.CAPTION_COLORS["control"].lower()]
    assert "33% > 64" in ax.get_legend().get_texts()[0].get_text()
    plots.plt.close(ax.figure)
