"""The figure registry and the study's figures, drawn from small FAKE bundles.

The registry (figure -> notebook -> function -> files) is what the notebooks save
through, what ``make paper`` publishes and what the report requires; these tests keep the
three in agreement and check the numbers behind Figures 1, 1b and 5.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from radioalign.metrics import pair_cosines  # noqa: E402
from radioalign.study import figures as F  # noqa: E402
from radioalign.tools import report  # noqa: E402
from radioalign.study.bundles import tag  # noqa: E402
from radioalign.study.layout import figures_dir, results_dir  # noqa: E402
from radioalign.tools.pipeline import NOTEBOOKS  # noqa: E402
from radioalign.study.profiles import get_profile  # noqa: E402

try:
    from radioalign.study.evaluation import synthetic_bundle  # noqa: E402
except ImportError:  # before the study's evaluation module existed
    from radioalign.metrics import synthetic_bundle  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
TAGS = [tag("frozen"), tag("vision", "curated"), tag("vision", "control"), tag("text", "curated"), tag("text", "control"),
        tag("full", "curated"), tag("vision", "curated", 1), tag("vision", "control", 1), tag("text", "curated", 1)]


@pytest.fixture(scope="module")
def bundles():
    return {t: synthetic_bundle(24, 16, 6, noise=1.5, variant=v) for v, t in enumerate(TAGS)}


@pytest.fixture
def results(monkeypatch, tmp_path):
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path / "results"


# ---------------------------------------------------------------------- registry


def test_registry_entries_resolve():
    assert len(F.FIGURE) == len(F.FIGURES), "figure keys are unique"
    assert [f.key for f in F.FIGURES if f.kind == F.PAPER] == ["fig1", "fig2", "fig3", "fig4", "fig5"]
    assert {"fig1b", "fig5b"} <= {f.key for f in F.FIGURES if f.kind == F.EXTRA}
    assert {"caption_lengths", "frozen_norms", "frozen_neighbours", "training_curves"} <= {
        f.key for f in F.FIGURES if f.kind == F.NOTEBOOK}
    for f in F.FIGURES:
        assert f.notebook in NOTEBOOKS, f.key
        assert f.outputs == (f"{f.key}.png", f"{f.key}.pdf")
        assert f.function is None or callable(F.resolve(f)), f.key
    with pytest.raises(KeyError, match="not a registered figure"):
        F.get_figure("fig9")


def test_each_figure_is_saved_by_its_notebook_only():
    saved = {}
    for name in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "plots.savefig(" not in source and "captions.figures" not in source, name
        for key in re.findall(r"save_figure\(\s*[\w.]+,\s*\"(\w+)\"", source):
            saved.setdefault(key, []).append(name)
    assert saved == {f.key: [f.notebook] for f in F.FIGURES}


def test_save_figure_stamps_notebook_function_and_profile(results):
    profile = get_profile("smoke", seed=7)
    fig = plt.figure()
    paths = F.save_figure(fig, "fig3", profile, close=True, note="x")
    assert paths == [results / "smoke" / "figures" / "fig3.png", results / "smoke" / "figures" / "fig3.pdf"]
    for p in paths:
        stamp = json.loads(p.with_name(p.name + ".stamp.json").read_text())
        assert stamp["profile"] == "smoke" and stamp["profile_settings"]["seed"] == 7
        assert stamp["notebook"] == "05_similarity" and stamp["function"] == "radioalign.study.figures.fig3_pair_similarity"
        assert stamp["figure"] == "fig3" and stamp["note"] == "x"


def _save_blank(keys, profile=get_profile("smoke")):
    for key in keys:
        F.save_figure(plt.figure(), key, profile, close=True)


def test_report_fails_naming_the_missing_figure_and_its_notebook(results, tmp_path):
    present = [f.key for f in F.report_figures() if f.key != "fig4"]
    _save_blank(present)
    with pytest.raises(F.FigureMissingError) as err:
        report.collect("smoke", tmp_path / "generated")
    message = str(err.value)
    assert "fig4" in message and "notebooks/06_tsne.ipynb" in message and "fig4_tsne_frozen" in message
    assert not any(k in message for k in present)
    assert not (tmp_path / "generated").exists(), "nothing is collected when a figure is missing"


def test_report_collects_the_registered_figures(results, tmp_path):
    _save_blank([f.key for f in F.report_figures()])
    target = tmp_path / "generated"
    missing_tables = report.collect("smoke", target)
    assert all(any(k in m for k in ("table1", "comparison", "metrics", "controls")) for m in missing_tables)
    tex = (target / "figures.tex").read_text()
    for f in F.report_figures():
        assert (target / f"{f.key}.pdf").is_file()
        assert f"generated/{f.key}.pdf" in tex and f"notebooks/{f.notebook}.ipynb".replace("_", "\\_") in tex
    assert tex.count("\\begin{figure}") == len(F.report_figures())
    assert "%" not in tex.replace("\\%", ""), "titles are escaped for LaTeX"
    assert [f.key for f in F.missing_figures(results / "smoke")] == []
    assert figures_dir(results / "smoke") == results / "smoke" / "figures"


# ----------------------------------------------------------------- Figure 1, 1b


def test_caption_anchoring_numbers(bundles):
    found = {c.label: (c, v) for c, v in F.caption_anchoring(bundles)}
    frozen, text_cur, text_con = bundles["frozen"], bundles["text-curated"], bundles["text-control"]
    np.testing.assert_allclose(found["frozen"][1], pair_cosines(frozen["text_curated_test"], frozen["text_control_test"]))
    np.testing.assert_allclose(found["Text LoRA on control"][1],
                               pair_cosines(text_con["text_curated_test"], text_con["text_control_test"]))
    # across models: a frozen caption against the other set's caption from the run on that set
    np.testing.assert_allclose(found["frozen control vs Text LoRA curated"][1],
                               pair_cosines(frozen["text_control_test"], text_cur["text_curated_test"]))
    np.testing.assert_allclose(found["frozen curated vs Text LoRA control"][1],
                               pair_cosines(frozen["text_curated_test"], text_con["text_control_test"]))
    assert "Full LoRA on control" not in found and "frozen curated vs Full LoRA control" not in found  # no bundle
    assert "Full LoRA on curated" in found
    image = {k: v for k, (c, v) in found.items() if c.panel == "image"}
    assert list(image) == ["Vision LoRA: on curated vs on control"]  # full-control is missing
    np.testing.assert_allclose(image["Vision LoRA: on curated vs on control"],
                               pair_cosines(bundles["vision-curated"]["image_test"], bundles["vision-control"]["image_test"]))
    summary = F.caption_anchoring_summary(bundles)
    assert len(summary) == len(found) and (summary["n"] == 16).all()


def test_stage_similarity_numbers(bundles):
    df = F.stage_similarity(bundles, bootstrap=20)
    text = df[df["panel"] == "text"]
    assert list(text[text["run"] == "vision-curated"]["stage"]) == ["frozen", "epoch 1", "final"]
    assert list(text[text["run"] == "full-control"]["stage"]) == ["frozen"]  # no final bundle for it
    frozen = bundles["frozen"]
    expected = pair_cosines(frozen["text_curated_test"], frozen["text_control_test"]).mean()
    assert text[text["stage"] == "frozen"]["mean"].iloc[0] == pytest.approx(expected)
    image = df[df["panel"] == "image"]
    np.testing.assert_allclose(image[image["stage"] == "frozen"]["mean"], 1.0)  # the same model twice
    assert set(image[image["scope"] == "vision"]["stage"]) == {"frozen", "epoch 1", "final"}
    assert set(image[image["scope"] == "full"]["stage"]) == {"frozen"}  # full-control missing
    assert ((df["low"] <= df["mean"] + 1e-12) & (df["mean"] <= df["high"] + 1e-12)).all()


# ------------------------------------------------------------------ Figures 2..5


def test_example_picks():
    names = [f"full-train-{i:04d}" for i in range(300)]
    labels = np.arange(300) % 2
    assert F.example_picks(names, labels, source="published") == [10, 61, 108, 202]
    assert F.example_picks(names, labels, source="catalog") == [0, 2, 1, 3]
    assert F.example_picks(names[:50], labels[:50], source="published") == [0, 2, 1, 3]


def test_neighbour_agreement():
    labels = np.repeat([0, 1], 10)
    separated = np.eye(2)[labels] + 0.01 * np.random.default_rng(0).normal(size=(20, 2))
    assert F.neighbour_agreement(separated, labels, k=5) == 1.0
    mixed = np.random.default_rng(1).normal(size=(400, 8))
    assert abs(F.neighbour_agreement(mixed, np.arange(400) % 2, k=5) - 0.5) < 0.1


def test_fig5_follows_the_papers_arrangement(bundles):
    grid = F.fig5_panels()
    assert [[(t, f) for _, t, _, f in row] for row in grid] == [
        [("text-curated", "text"), ("full-curated", "text"), ("full-curated", "image"), ("vision-curated", "image")],
        [("text-control", "text"), ("full-control", "text"), ("full-control", "image"), ("vision-control", "image")],
    ]
    fig = F.fig5_tsne_modalities(bundles, split="test")
    empty = [ax for ax in fig.axes if not ax.collections]
    assert len(empty) == 2 and all("full-control" in ax.texts[0].get_text() for ax in empty)
    plt.close(fig)
    summary = F.fig5_summary(bundles, split="test")
    assert len(summary) == 6 and (summary["points"] == 16).all() and summary["agreement"].between(0, 1).all()


def test_every_study_figure_draws_and_saves(bundles, results):
    rng = np.random.default_rng(0)
    drawn = {
        "fig1": F.fig1_caption_anchoring(bundles),
        "fig1b": F.fig1b_stage_similarity(bundles, bootstrap=20),
        "fig2": F.fig2_caption_examples(rng.integers(0, 255, (2, 30, 30), dtype=np.uint8), [0, 1],
                                        {"curated": ["A core.", "Two lobes."], "control": ["A blob.", "Blobs."]}, ["a", "b"]),
        "fig3": F.fig3_pair_similarity(bundles),
        "fig4": F.fig4_tsne_frozen(bundles["frozen"], split="test"),
        "fig5": F.fig5_tsne_modalities(bundles, split="test"),
        "fig5b": F.fig5b_tsne_joint(bundles, split="test"),
    }
    # the figures this module draws (the controls' figures have their own modules and tests)
    study = [f for f in F.report_figures() if (f.function or "").startswith(f"{F.__name__}.")]
    assert set(drawn) == {f.key for f in study}
    for key, fig in drawn.items():
        panels = [_panel(ax) for ax in fig.axes]
        assert [p[0] for p in panels] == EXPECTED_PANELS[key], key  # titles, in order
        for title, xlabel, ylabel, drawn_something, missing in panels:
            assert drawn_something or missing or key == "fig2", (key, title)  # data, or says why not
        for title, (xlabel, ylabel) in EXPECTED_LABELS.get(key, {}).items():
            found = next(p for p in panels if p[0] == title)
            assert (found[1], found[2]) == (xlabel, ylabel), (key, title)
        for p in F.save_figure(fig, key, get_profile("smoke"), close=True):
            assert p.stat().st_size > 1000
    F.require_figures(results_dir(get_profile("smoke")), study)


def _panel(ax) -> tuple[str, str, str, bool, bool]:
    """(title, x label, y label, whether it holds data, whether it says a bundle is missing)."""
    data = bool(ax.collections or ax.lines or ax.patches or ax.images)
    missing = any("no bundle" in t.get_text() for t in ax.texts)
    return ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), data, missing


EXPECTED_PANELS = {
    "fig1": ["caption embeddings: cos(curated, control)", "image embeddings: runs on curated vs control"],
    "fig1b": ["caption embeddings: cos(curated, control)", "image embeddings: runs on curated vs control"],
    "fig2": ["FR-I\na", "FR-II\nb", "", ""],
    "fig3": ["Frozen", "Vision LoRA", "Text LoRA", "Full LoRA"],
    "fig4": ["frozen image embeddings", "frozen curated captions embeddings", "frozen control captions embeddings"],
    "fig5": ["Text LoRA, curated: text", "Full LoRA, curated: text", "Full LoRA, curated: image", "Vision LoRA, curated: image",
             "Text LoRA, control: text", "Full LoRA, control: text", "Full LoRA, control: image", "Vision LoRA, control: image"],
    "fig5b": ["Vision LoRA, curated", "Text LoRA, curated", "Full LoRA, curated", "Vision LoRA, control", "Text LoRA, control",
              "Full LoRA, control"],
}
EXPECTED_LABELS = {
    "fig1": {"caption embeddings: cos(curated, control)": ("", "cosine per test item")},
    "fig1b": {"caption embeddings: cos(curated, control)": ("fine-tuning stage", "mean cosine over test items"),
              "image embeddings: runs on curated vs control": ("fine-tuning stage", "mean cosine over test items")},
    "fig3": {"Frozen": ("cos(image, caption)", "test pairs"), "Full LoRA": ("cos(image, caption)", "")},
}


def test_figures_without_bundles_say_so():
    empty = {}
    assert F.stage_similarity(empty).empty and F.caption_anchoring_summary(empty).empty
    assert F.pair_similarity_summary(empty).empty and F.fig5_summary(empty).empty
    for name, fig in {"fig1": F.fig1_caption_anchoring(empty), "fig1b": F.fig1b_stage_similarity(empty),
                      "fig3": F.fig3_pair_similarity(empty), "fig5": F.fig5_tsne_modalities(empty),
                      "fig5b": F.fig5b_tsne_joint(empty)}.items():
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts and all("no bundle" in t for t in texts), name
        plt.close(fig)


def test_publish_copies_the_registered_report_figures(results, tmp_path, monkeypatch):
    from radioalign.tools import pipeline

    monkeypatch.setattr(pipeline, "repo_root", lambda: tmp_path / "repo")
    _save_blank([f.key for f in F.report_figures() if f.key != "fig5b"] + ["caption_lengths"])
    with pytest.raises(F.FigureMissingError, match="fig5b"):
        pipeline.publish("smoke")
    assert not (tmp_path / "repo" / "figures").exists()
    _save_blank(["fig5b"])
    pipeline.publish("smoke")
    published = sorted(p.name for p in (tmp_path / "repo" / "figures").iterdir())
    expected = sorted(n + s for f in F.report_figures() for n in f.outputs for s in ("", ".stamp.json"))
    assert published == expected  # the notebook-only figures stay in the results
    stamp = json.loads((tmp_path / "repo" / "figures" / "fig5b.pdf.stamp.json").read_text())
    assert stamp["notebook"] == "06_tsne"
    assert (tmp_path / "repo" / "paper" / "generated" / "figures.tex").is_file()
