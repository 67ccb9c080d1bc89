"""Each figure function draws from small FAKE bundles and writes PNG + PDF with stamps."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from radioalign import plots  # noqa: E402
from radioalign.metrics import synthetic_bundle  # noqa: E402

TAGS = ["frozen", "vision-curated", "vision-control", "text-curated", "text-control", "full-curated",
        "vision-curated_epoch1", "vision-control_epoch1", "text-curated_epoch1"]


@pytest.fixture(scope="module")
def bundles():
    return {tag: synthetic_bundle(24, 16, 6, noise=1.5, variant=v) for v, tag in enumerate(TAGS)}


def _check_written(paths, folder, name):
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    for p in paths:
        assert p.parent == folder and p.stat().st_size > 1000
        stamp = json.loads(p.with_name(p.name + ".stamp.json").read_text())
        assert stamp["profile"] == "smoke" and stamp["figure"] == name
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"


def test_stage_similarity_numbers(bundles):
    df = plots.stage_similarity(bundles, bootstrap=20)
    text = df[df["panel"] == "text"]
    assert list(text[text["run"] == "vision-curated"]["stage"]) == ["frozen", "epoch 1", "final"]
    assert list(text[text["run"] == "full-control"]["stage"]) == ["frozen"]  # no final bundle for it
    frozen = bundles["frozen"]
    expected = np.mean(
        np.sum(frozen["text_curated_test"] * frozen["text_control_test"], 1)
        / np.linalg.norm(frozen["text_curated_test"], axis=1)
        / np.linalg.norm(frozen["text_control_test"], axis=1)
    )
    assert text[text["stage"] == "frozen"]["mean"].iloc[0] == pytest.approx(expected)
    image = df[df["panel"] == "image"]
    # frozen: both "models" are the frozen one, so every image pair is identical
    np.testing.assert_allclose(image[image["stage"] == "frozen"]["mean"], 1.0)
    assert set(image[image["scope"] == "vision"]["stage"]) == {"frozen", "epoch 1", "final"}
    assert set(image[image["scope"] == "full"]["stage"]) == {"frozen"}  # full-control missing
    assert ((df["low"] <= df["mean"] + 1e-12) & (df["mean"] <= df["high"] + 1e-12)).all()


def test_every_figure_writes_png_and_pdf(bundles, tmp_path):
    rng = np.random.default_rng(0)
    figures = {
        "fig1": plots.fig1_stage_similarity(bundles, bootstrap=20),
        "fig2": plots.plot_examples(
            rng.integers(0, 255, (2, 150, 150), dtype=np.uint8),
            {"curated": ["A bright core with two lobes. " * 4, "A compact source."], "control": ["A blob.", "Two blobs."]},
            [0, 1],
            names=["a", "b"],
        ),
        "fig3": plots.fig3_pair_similarity(bundles),
        "fig4": plots.fig4_tsne_frozen(bundles["frozen"], split="test"),
        "fig5": plots.fig5_tsne_variants(bundles, split="test"),
    }
    for name, fig in figures.items():
        _check_written(plots.savefig(fig, name, "smoke", folder=tmp_path, close=True), tmp_path, name)


def test_class_colours_are_fixed(bundles):
    fig = plots.fig4_tsne_frozen(bundles["frozen"], split="test")
    colours = {mcolors.to_hex(c) for ax in fig.axes for coll in ax.collections for c in coll.get_facecolors()}
    assert colours == {plots.FR_COLORS[0].lower(), plots.FR_COLORS[1].lower()}
    fig5 = plots.fig5_tsne_variants(bundles, split="test", features="image")
    missing = [ax for ax in fig5.axes if not ax.collections]
    assert len(missing) == 1  # full-control has no bundle: one panel says so
    assert "full-control" in missing[0].texts[0].get_text()


def test_tsne_small_sets_and_determinism():
    x = np.random.default_rng(1).normal(size=(5, 4))
    a = plots.tsne_embed(x, seed=3)
    assert a.shape == (5, 2) and np.isfinite(a).all()
    np.testing.assert_allclose(a, plots.tsne_embed(x, seed=3))
    with pytest.raises(ValueError, match="at least 3"):
        plots.tsne_embed(x[:2])


def test_examples_check_lengths():
    with pytest.raises(ValueError, match="captions"):
        plots.plot_examples(np.zeros((2, 8, 8)), {"curated": ["one"]}, [0, 1])


def test_savefig_default_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    with plots.style():
        fig = plots.plt.figure()
    out = plots.savefig(fig, "figX", "smoke", close=True)
    assert out[0] == tmp_path / "smoke" / "figures" / "figX.png"


def test_figures_without_bundles_say_so(tmp_path):
    empty = {}
    assert plots.stage_similarity(empty).empty
    for name, fig in {"fig1": plots.fig1_stage_similarity(empty), "fig3": plots.fig3_pair_similarity(empty),
                      "fig5": plots.fig5_tsne_variants(empty)}.items():
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts and all("no bundle" in t for t in texts), name
        plots.plt.close(fig)
    assert plots.pair_similarity_summary(empty).empty
