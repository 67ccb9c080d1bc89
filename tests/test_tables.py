"""Table 1 from a fixed metrics frame (bold, parentheses, intervals, published comparison),
the published values against REFERENCE §5, and collection from bundles on disk."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from radioalign.study import tables as T
from radioalign.study import bundles as B
from radioalign.study.evaluation import ROW_COLUMNS, synthetic_bundle
from radioalign.study.profiles import get_profile

# model -> (curated, control) for two rows; "full" has no control run for cosine.
FIXED = {
    ("linear_probe_f1", "image"): {"frozen": (0.95, 0.96), "vision": (0.93, 0.90), "text": (0.891, 0.90), "full": (0.934, 0.88)},
    ("mean_cosine", "image-text"): {"frozen": (0.14, 0.14), "vision": (0.131, 0.14), "text": (0.12, 0.13), "full": (0.13, None)},
}


def _fixed_frame() -> pd.DataFrame:
    rows = []
    for (metric, modality), per_model in FIXED.items():
        for model, (cur, ctl) in per_model.items():
            base = dict(model=model, tag=model, metric=metric, modality=modality, n=104, B=100)
            rows.append(dict(base, captions="curated", value=cur, low=cur - 0.04, high=cur + 0.04))
            if ctl is not None:
                rows.append(dict(base, captions="control", value=ctl, low=ctl - 0.04, high=ctl + 0.04))
                d = cur - ctl
                rows.append(dict(base, captions="curated-control", value=d, low=d - 0.03, high=d + 0.02))
    return pd.DataFrame(rows)[ROW_COLUMNS]


def test_table1_frame_best_and_differences():
    t = T.table1_frame(_fixed_frame(), extra_rows=False).set_index(["row", "column"])
    probe = t.loc["Linear probe F1, images"]
    assert list(probe["best"]) == [True, False, False, False]  # 0.95 frozen
    assert probe.loc["Vision", "diff"] == pytest.approx(0.03)
    cos = t.loc["Mean image-text cosine similarity"]
    # at two decimals frozen 0.14 is best; 0.131 shows as 0.13 and is not bold
    assert list(cos["best"]) == [True, False, False, False]
    assert np.isnan(cos.loc["Full", "diff"])  # no control run: no parentheses
    assert t.loc["Recall@1"]["value"].isna().all()  # rows without data stay, empty


def test_markdown_rendering():
    t = T.table1_frame(_fixed_frame(), extra_rows=False)
    md = T.render_markdown(t, notes=T.table_notes(t, B=100))
    lines = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    probe = lines["Linear probe F1, images"]
    assert "**0.95** (-0.01)<br>[0.91, 0.99]<br>Δ [-0.04, +0.01]" in probe
    assert "| 0.93 (+0.03)<br>[0.89, 0.97]" in probe
    assert "0.89 (-0.01)" in probe and "0.93 (+0.05)" in probe
    cos = lines["Mean image-text cosine similarity"]
    assert cos.rstrip(" |").endswith("0.13<br>[0.09, 0.17]")  # Full: no difference, no parentheses
    assert "**0.14** (+0.00)" in cos
    assert lines["Recall@1"].count("–") == 4
    assert "| metric | Frozen | Vision | Text | Full |" in md
    assert "0.01 is noise" in md and "n = 104" in md


def test_latex_rendering():
    t = T.table1_frame(_fixed_frame())
    tex = T.render_latex(t, notes="note", caption="Table 1")
    assert tex.startswith(r"\begin{table}[H]") and tex.rstrip().endswith(r"\end{table}")
    assert r"\textbf{0.95} (-0.01)" in tex and "0.93 (+0.03)" in tex
    assert r"{\scriptsize [0.89, 0.97]}" in tex and r"$\Delta$" in tex
    assert tex.count(r"\midrule") == 2  # header rule and the rule before the extra rows
    assert "authors computed it" in tex
    assert "&" in tex and "_" not in tex.replace(r"\_", "")  # underscores escaped
    body = [line for line in tex.splitlines() if line.startswith(r"\parbox")]
    assert len(body) == len(T.TABLE1_ROWS) + len(T.EXTRA_ROWS)
    assert all(line.count(" & ") == 4 for line in body)


def test_comparison_with_published():
    df = _fixed_frame()
    # the authors' "text" probe row, to compare with the published text row
    extra = df[(df["metric"] == "linear_probe_f1")].assign(modality="text_authors")
    c = T.comparison_frame(pd.concat([df, extra], ignore_index=True)).set_index(["row", "model"])
    r = c.loc[("Linear probe F1, images", "Frozen")]
    assert r["published"] == 0.90 and r["ours_minus_published"] == pytest.approx(0.05)
    assert r["inside"] is not None and not r["inside"]  # [0.91, 0.99] excludes 0.90
    r = c.loc[("Linear probe F1, images", "Vision")]
    assert r["ours_minus_published"] == pytest.approx(0.0) and r["inside"]
    assert r["published_diff"] == 0.03 and r["ours_diff"] == pytest.approx(0.03)
    assert np.isnan(c.loc[("Linear probe F1, text", "Text"), "published_diff"])  # blank in the paper
    assert c.loc[("Linear probe F1, text", "Text"), "inside"] is None  # we have no value
    defect = c.loc[(T.DEFECT_ROW, "Vision")]
    assert defect["published"] == T.PUBLISHED["Linear probe F1, text"]["vision"][0]
    md = T.comparison_markdown(c.reset_index(), notes=T.comparison_notes(c.reset_index()))
    assert "| Linear probe F1, images | Vision | 0.93 | [0.89, 0.97] | 0.93 | +0.00 | yes | +0.03 |" in md
    tex = T.comparison_latex(c.reset_index(), caption="x")
    assert r"\toprule" in tex and "+0.05" in tex


def test_published_values_match_reference(shared):
    """PUBLISHED encodes REFERENCE §5 exactly, blanks included."""
    text = (shared / "REFERENCE.md").read_text()
    section = text.split("## 5.")[1].split("\n## ")[0]
    parsed = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("metric", "---"):
            continue
        row = {}
        for model, cell in zip(T.COLUMNS, cells[1:]):
            m = re.fullmatch(r"([\d.]+)(?: \(([+-][\d.]+)\))?", cell)
            assert m, f"unparsed cell {cell!r}"
            row[model] = (float(m.group(1)), None if m.group(2) is None else float(m.group(2)))
        parsed[cells[0]] = row
    assert parsed == T.PUBLISHED


def test_tags_build_and_parse_in_one_place():
    assert B.parse_tag("frozen") == B.Tag("frozen")
    assert B.parse_tag("vision-curated") == B.Tag("vision", "curated")
    assert B.parse_tag("full-control_epoch10") == B.Tag("full", "control", 10)
    for text in ("frozen", "text-catalog", "full-curated_epoch5"):
        assert str(B.parse_tag(text)) == text
    assert B.tag("text", "control", 3) == "text-control_epoch3" and B.Tag("text", "control", 3).run == "text-control"
    for bad in ("notes", "frozen_epoch1", "vision-", "paper-curated"):
        assert B.parse_tag(bad) is None
    with pytest.raises(ValueError):
        B.Tag("vision")
    assert B.stage_tags(["frozen", "full-curated_epoch5", "full-curated_epoch1"], "full", "curated") == [
        ("frozen", "frozen"), ("epoch 1", "full-curated_epoch1"), ("epoch 5", "full-curated_epoch5"), ("final", None)]


@pytest.fixture
def fake_results(tmp_path, monkeypatch):
    """FAKE bundles (random, class-structured) under a temporary results root."""
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    folder = tmp_path / "smoke" / "embeddings"
    folder.mkdir(parents=True)
    tags = ["frozen", "vision-curated", "vision-control", "text-curated", "vision-curated_epoch1"]
    for v, tag in enumerate(tags):
        np.savez(folder / f"{tag}.npz", **synthetic_bundle(40, 24, 6, noise=2.0, variant=v))
    return tmp_path


def test_collect_and_write(fake_results):
    results = fake_results / "smoke"
    assert list(B.available_bundles(results)) == ["frozen", "text-curated", "vision-control", "vision-curated"]
    assert "vision-curated_epoch1" in B.available_bundles(results, stages=True)
    assert B.missing_bundles(results) == ["text-control", "full-curated", "full-control"]
    df = T.collect_metrics(results, bootstrap=50, protocols=("paper",), progress=False)
    assert list(df.columns) == ROW_COLUMNS
    runs = set(zip(df["tag"], df["captions"]))
    assert {("frozen", "curated"), ("frozen", "control"), ("vision-curated", "curated"), ("text-curated", "curated")} <= runs
    assert ("vision-curated|vision-control", "curated-control") in runs
    assert not any(c == "curated-control" and m == "text" for (m, c) in zip(df["model"], df["captions"]))  # no text-control
    key = ["model", "captions", "metric", "modality"]
    v = df.set_index(key)["value"]
    for model in ("frozen", "vision"):
        d = v[model, "curated-control", "recall@5", "image-text"]
        assert d == pytest.approx(v[model, "curated", "recall@5", "image-text"] - v[model, "control", "recall@5", "image-text"])
    diffs = df[df["captions"] == "curated-control"]
    assert (diffs["low"] <= diffs["value"] + 1e-12).all() and (diffs["value"] <= diffs["high"] + 1e-12).all()

    path = T.write_metrics(df, get_profile("smoke"))
    assert path == fake_results / "smoke" / "metrics.csv"
    back = pd.read_csv(path)
    assert len(back) == len(df) and list(back.columns) == ROW_COLUMNS
    assert json.loads(path.with_name("metrics.csv.stamp.json").read_text())["profile"] == "smoke"
    written = T.write_tables(df, get_profile("smoke"), B=50)
    assert set(written) == {"table1.md", "table1.tex", "comparison.md", "comparison.tex"}
    for p in written.values():
        assert p.with_name(p.name + ".stamp.json").is_file()
    md = written["table1.md"].read_text()
    assert md.startswith("<!-- radioalign") and "| Recall@1 |" in md
    assert "profile smoke" in md
    assert written["table1.tex"].read_text().startswith("% radioalign")


def test_full_control_probe_at_lr_one_as_the_authors_log_ran_it(tmp_path, monkeypatch):
    from radioalign.metrics import linear_probe_f1
    from radioalign.study.evaluation import AUTHORS_LR_METRIC

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    folder = tmp_path / "smoke" / "embeddings"
    folder.mkdir(parents=True)
    bundles = {t: synthetic_bundle(40, 24, 6, noise=2.0, variant=v) for v, t in enumerate(["full-curated", "full-control"])}
    for t, b in bundles.items():
        np.savez(folder / f"{t}.npz", **b)
    df = T.collect_metrics(folder.parent, bootstrap=50, protocols=("paper",), progress=False)
    logged = df[df["metric"] == AUTHORS_LR_METRIC]
    control = logged[logged["captions"] == "control"].set_index("modality")
    assert set(control.index) == {"image", "text_authors", "concat"}, "only the Full-control run gets the lr-1.0 probe"
    c = bundles["full-control"]
    at_one = linear_probe_f1(c["image_train"], c["labels_train"], c["image_test"], c["labels_test"], lr=1.0)
    assert control.loc["image", "value"] == pytest.approx(at_one)
    curated = df[(df["tag"] == "full-curated") & (df["metric"] == "linear_probe_f1") & (df["modality"] == "image")]
    diff = logged[(logged["captions"] == "curated-control") & (logged["modality"] == "image")]
    assert diff["value"].item() == pytest.approx(curated["value"].item() - at_one)
    comparison = T.comparison_frame(df)
    rows = comparison[comparison["row"].isin(T.AUTHORS_LR_ROWS)]
    assert len(rows) == 3 and set(rows["model"]) == {"Full"}
    assert rows["published_diff"].tolist() == [0.05, 0.03, 0.02]
