"""The controls of issue 11: notebook 07's text rows, notebook 09's rotation rows and the
controls table beside Table 1 (radioalign.study.{text_controls, rotations, controls})."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radioalign.captions.audit import ATTRIBUTES, audit_captions
from radioalign.embed import D4_NAMES, d4_transform, embed_images
from radioalign.study import controls as C
from radioalign.study.evaluation import ROW_COLUMNS, synthetic_bundle
from radioalign.study.profiles import get_profile
from radioalign.study.rotations import fig_rotation_drop, label_rows, transform_rows, transform_views, tta_rows
from radioalign.study.text_controls import audit_rows, cv_rows, published_test_captions, text_baseline_rows

SMOKE = get_profile("smoke")


@pytest.fixture
def results(monkeypatch, tmp_path):
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path / "results"


# ------------------------------------------------------------------ text baselines


def _captions(n: int, seed: int, cue_words: tuple[str, str]) -> tuple[list[str], np.ndarray]:
    """Captions whose class shows in a cue word (``cue_words[label]``, said three times) after random filler."""
    rng = np.random.default_rng(seed)
    filler = ["bright", "diffuse", "compact", "extended", "emission", "source", "faint", "elongated"]
    labels = np.arange(n) % 2
    return [" ".join(rng.choice(filler, 2)) + f" {cue_words[y]} {cue_words[y]} {cue_words[y]}" for y in labels], labels


def test_text_baseline_rows_are_table1_probes_with_paired_differences():
    train_cur, ytr = _captions(30, 0, ("edge-darkened", "edge-brightened"))
    test_cur, yte = _captions(12, 1, ("edge-darkened", "edge-brightened"))
    # control captions carry no class word: the same filler, the cue replaced by a neutral word
    train_ctl = [" ".join(t.split()[:2]) + " blob" for t in train_cur]
    test_ctl = [" ".join(t.split()[:2]) + " blob" for t in test_cur]
    texts = {"curated": {"train": train_cur, "test": test_cur}, "control": {"train": train_ctl, "test": test_ctl}}
    rows = text_baseline_rows(texts, ytr, yte, ("tfidf",), bootstrap=50, seed=0, sources={"curated": "x", "control": "y"})
    assert list(rows.columns[: len(ROW_COLUMNS)]) == ROW_COLUMNS
    assert set(rows["metric"]) == {"linear_probe_f1", "linear_probe_f1_sklearn", "knn_f1"}
    by = rows.set_index(["captions", "metric"])
    assert (by.loc["curated", "value"] == 1.0).all(), "one cue word separates the classes"
    assert (by.loc["control", "value"] < 1.0).all(), "filler alone does not"
    diff = by.loc["curated-control"]
    assert np.allclose(diff["value"], by.loc["curated", "value"] - by.loc["control", "value"])
    assert (diff["low"] <= diff["value"]).all() and (diff["value"] <= diff["high"]).all()
    assert set(rows["source"]) == {"x", "y"} and (rows["B"] == 50).all() and (rows["n"] == 12).all()
    assert (rows["evaluation"] == "train-test").all()


def test_cv_rows_report_the_fold_mean_and_range():
    texts, y = _captions(20, 2, ("edge-darkened", "edge-brightened"))
    rows = cv_rows({"curated": texts}, y, ("tfidf",), folds=4, seed=0)
    assert len(rows) == 3 and (rows["evaluation"] == "cv4").all() and (rows["B"] == 0).all()
    assert ((rows["low"] <= rows["value"]) & (rows["value"] <= rows["high"])).all()
    assert rows.set_index("metric").at["knn_f1", "value"] == pytest.approx(1.0)


def test_audit_rows_match_the_audit_and_split_the_edited_captions():
    captions = ["Two lobes with edge-brightened hotspots.", "A bright core and jets.", "No lobes, a bent tail.",
                "Edge-brightened lobes.", "A core, brightest near the core."]
    labels = np.array([1, 0, 0, 1, 0])
    edited = np.array([True, False, False, True, False])
    audit = audit_captions(captions, labels, edited=edited)
    rows = audit_rows(audit, labels, captions="curated", edited=edited, bootstrap=20, seed=0, source="s", split="test")
    share = rows[(rows["metric"] == "share")].set_index(["group", "attribute"])["value"]
    for name in ATTRIBUTES:
        assert share["FR-II", name] == pytest.approx(audit["table"].at[name, "FR-II"])
        assert share["edited", name] == pytest.approx(audit["edited"].at[name, "edited"])
    ors = rows[rows["metric"] == "odds_ratio"].set_index("attribute")
    assert ors.at["hotspots", "value"] == pytest.approx(audit["table"].at["hotspots", "odds_ratio"]) and (ors["B"] == 0).all()
    assert "truncated" not in set(rows["metric"]), "no processor, no truncation rows"


@pytest.mark.shared
def test_published_test_captions_take_the_curated_labels(published_captions_dir, tmp_path):
    found, where = published_test_captions([tmp_path / "absent", published_captions_dir])
    assert where == str(published_captions_dir)
    assert [len(found[p]) for p in ("curated", "control")] == [104, 104]
    assert (found["control"]["label"].to_numpy() == found["curated"]["label"].to_numpy()).all()
    assert published_test_captions([tmp_path])[0] is None


# ----------------------------------------------------------------------- rotations


def test_transform_views_embed_each_d4_transform(tiny, one_thread):
    model, _ = tiny
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(3, 32, 32), dtype=np.uint8)
    views = transform_views(model, images, progress=False, dtype="float32")
    assert views.shape[:2] == (8, 3)
    for k in (0, 3, 6):
        assert np.allclose(views[k], embed_images(model, d4_transform(images, k), progress=False, dtype="float32"), atol=1e-5)
    # a D4-symmetric image (a centred square ring) looks the same in every view
    ring = np.zeros((1, 32, 32), np.uint8)
    ring[0, 8:24, 8:24] = 200
    ring[0, 12:20, 12:20] = 0
    same = transform_views(model, ring, progress=False, dtype="float32")
    assert np.allclose(same, same[0], atol=1e-4)
    d4 = embed_images(model, images, tta="d4", progress=False, dtype="float32")
    assert np.allclose(d4, views.mean(axis=0), atol=1e-5), "tta='d4' is the mean of the 8 views"


def test_transform_rows_measure_each_change_against_identity():
    b = synthetic_bundle(40, 16, 8, noise=0.3, seed=1)
    identity = b["image_test"]
    # a "rotation" that keeps the class but breaks the pairing: the other items' images
    shuffled = identity[np.roll(np.arange(16), 2)]
    views = np.stack([identity] + [shuffled] * 7)
    rows = transform_rows(views, b["text_curated_test"], b["image_train"], b["labels_train"], b["labels_test"],
                          bootstrap=50, seed=0)
    assert list(rows.columns) == [c for c in ROW_COLUMNS if c not in ("model", "tag", "captions")] + ["transform"]
    assert set(rows["transform"]) == set(D4_NAMES) | {f"{n}-identity" for n in D4_NAMES[1:]} | {"rotated-identity"}
    get = rows.set_index(["metric", "transform"])["value"]
    assert get["recall@1", "rotated-identity"] == pytest.approx(get["recall@1", "rot90"] - get["recall@1", "identity"])
    assert get["recall@1", "rotated-identity"] < 0, "broken pairs are retrieved less"
    # the probe was trained once: a view that is the identity scores as the identity
    same = transform_rows(np.stack([identity] * 8), b["text_curated_test"], b["image_train"], b["labels_train"],
                          b["labels_test"], bootstrap=50, seed=0).set_index(["metric", "transform"])
    assert np.allclose(same.loc[("linear_probe_f1", "rotated-identity"), ["value", "low", "high"]].astype(float), 0, atol=1e-12)
    labelled = label_rows(rows, model="frozen", tag="frozen", captions="curated")
    assert list(labelled.columns[: len(ROW_COLUMNS)]) == ROW_COLUMNS
    with pytest.raises(ValueError, match="views must be"):
        transform_rows(views[:3], b["text_curated_test"], b["image_train"], b["labels_train"], b["labels_test"])


def test_tta_rows_give_the_paired_difference():
    b = synthetic_bundle(40, 16, 8, noise=0.5, seed=2)
    noisy = b["image_test"] + np.random.default_rng(0).normal(scale=2.0, size=b["image_test"].shape).astype(np.float32)
    rows = tta_rows((b["image_train"], noisy), (b["image_train"], b["image_test"]), b["labels_train"], b["labels_test"],
                    bootstrap=50, seed=0)
    get = rows.set_index(["metric", "tta"])["value"]
    for metric in ("linear_probe_f1", "knn_f1"):
        assert get[metric, "d4-none"] == pytest.approx(get[metric, "d4"] - get[metric, "none"])


def test_rotation_figure_draws_one_line_per_model_and_caption_set():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = synthetic_bundle(30, 12, 6, seed=3)
    views = np.stack([b["image_test"]] * 8)
    frames = [label_rows(transform_rows(views, b[f"text_{c}_test"], b["image_train"], b["labels_train"], b["labels_test"],
                                        bootstrap=20), model="frozen", tag="frozen", captions=c) for c in ("curated", "control")]
    fig = fig_rotation_drop(pd.concat(frames, ignore_index=True))
    assert [len(ax.get_lines()) for ax in fig.axes] == [3, 3, 3]  # the zero line and two caption sets
    plt.close(fig)


# --------------------------------------------------------------------------- table


def _rows(**columns) -> dict:
    base = dict(model="m", tag="t", captions="curated", metric="recall@1", modality="image-text", value=0.5, low=0.4,
                high=0.6, n=104, B=200)
    return {**base, **columns}


def _fake_controls(profile) -> None:
    text = [_rows(model=e, tag=e, captions=c, metric=m, modality="text", value=v, evaluation="train-test")
            for e in ("tfidf", "minilm") for c, v in (("curated", 0.9), ("control", 0.8))
            for m in ("linear_probe_f1", "linear_probe_f1_sklearn", "knn_f1")]
    text.append(_rows(model="tfidf", tag="tfidf", captions="curated-control", metric="knn_f1", modality="text", value=0.1,
                      low=-0.05, high=0.2, evaluation="train-test"))
    text.append(_rows(model="tfidf", tag="tfidf", captions="curated", metric="knn_f1", modality="text", value=0.84,
                      low=0.7, high=0.9, B=0, evaluation="cv5", source="published", split="test"))
    C.write_control(pd.DataFrame(text), profile, "text_baselines")
    audit = [_rows(model="captions", tag="captions", metric="contradiction", modality="caption", value=0.05, attribute="",
                   group="all", source="published", split="test"),
             _rows(model="captions", tag="captions", metric="odds_ratio", modality="hotspots", value=1234.5, low=98.0,
                   high=20000.0, B=0, attribute="hotspots", group="FR-II vs FR-I", source="published", split="test")]
    C.write_control(pd.DataFrame(audit), profile, "audit")
    rot = [_rows(tag="frozen", metric="recall@1", transform="identity", value=0.03),
           _rows(tag="frozen", metric="recall@1", transform="rotated-identity", value=-0.02, low=-0.04, high=0.0)]
    C.write_control(pd.DataFrame(rot), profile, "rotations")
    # a control without a group of its own (another notebook's), with a column of its own
    other = [_rows(tag="full-curated_s1", seed=1, value=0.07), _rows(tag="full-curated_s2", seed=2, value=0.05)]
    C.write_control(pd.DataFrame(other), profile, "newcontrol")


def test_controls_table_from_fake_csvs(results):
    _fake_controls(SMOKE)
    pd.DataFrame([_rows(model="frozen", tag="frozen", metric="knn_f1", modality="text", value=0.7)]).to_csv(
        results / "smoke" / "metrics.csv", index=False)
    written = C.write_controls_table(SMOKE)
    md, tex = written["controls.md"].read_text(), written["controls.tex"].read_text()
    for group in ("Text-only baselines", "Caption audit", "Rotations and flips", "Newcontrol"):
        assert group in md, group
    assert "Test-time D4" not in md and "shuffled" not in md.lower(), "controls without rows are left out"
    assert "| TF-IDF, curated | 0.90 [0.40, 0.60] | 0.90 [0.40, 0.60] | 0.90 [0.40, 0.60] |" in md
    assert "TF-IDF, curated − control | – | – | +0.10 [-0.05, +0.20]" in md, "differences are signed"
    assert "TF-IDF, curated (published test, cv5)" in md
    assert "SigLIP frozen text (Table 1), curated | – | – | 0.70 [0.40, 0.60]" in md, "Table 1's reference row"
    assert "1.23e+03 [98, 2e+04]" in md, "a wide odds ratio keeps three significant digits"
    assert "| frozen, curated | 0.03 [0.40, 0.60] | -0.02 [-0.04, +0.00] |" in md
    assert "full-curated_s1, curated, seed 1" in md, "a column of its own that varies names the row"
    assert r"\begin{tabular}" in tex and r"$\Delta$ Recall@1" in tex and "curated $-$ control" in tex
    stacked = pd.read_csv(written["controls.csv"])
    assert list(stacked.columns[:11]) == ["control", *ROW_COLUMNS]
    assert set(stacked["control"]) == {"text_baselines", "audit", "rotations", "newcontrol"}
    assert written["controls.md"].with_name("controls.md.stamp.json").is_file()


def test_controls_table_without_any_control(results):
    written = C.write_controls_table(SMOKE)
    assert "No control has written its rows yet" in written["controls.md"].read_text()
    assert pd.read_csv(written["controls.csv"]).empty


def test_write_control_needs_the_row_columns(results):
    with pytest.raises(ValueError, match="lacks the columns"):
        C.write_control(pd.DataFrame([{"metric": "x", "value": 1.0}]), SMOKE, "broken")


def test_shuffled_and_seed_controls_get_compact_groups(results):
    shuffled = [_rows(model="full", tag=t, captions="curated", metric=m, modality=d, value=v, seed=42, variant=variant,
                      evaluation="paired", epochs=6)
                for t, variant, v in (("full-curated", "paired", 0.1), ("full-curated+withinclass", "withinclass", 0.05),
                                      ("full-curated|full-curated+withinclass", "paired-minus-withinclass", 0.05))
                for m, d in (("recall@1", "image-text"), ("mean_cosine", "image-text"))]
    shuffled += [_rows(model="frozen", tag="frozen", metric="recall@1", value=0.02, seed=42, variant="paired", evaluation=e)
                 for e in ("paired", "across")]
    shuffled.append(_rows(model="chance", tag="chance", captions="", metric="recall@1", value=0.01, low=0.01, high=0.01,
                          B=0, seed=42, variant="", evaluation="across"))
    C.write_control(pd.DataFrame(shuffled), SMOKE, "shuffled")
    seeds = [_rows(model="vision", tag=t, metric="recall@1", value=v, seed=s, variant="paired")
             for t, s, v in (("vision-curated", 42, 0.1), ("vision-curated_s1", 1, 0.3))]
    C.write_control(pd.DataFrame(seeds), SMOKE, "seeds")
    md = C.write_controls_table(SMOKE)["controls.md"].read_text()
    assert "| Full LoRA, curated: true pairs (6 epochs) | 0.10 [0.40, 0.60] |" in md
    assert "| Full LoRA, curated: shuffled within class (6 epochs) | 0.05 [0.40, 0.60] |" in md, "the same epochs, shown"
    assert "| Full LoRA, curated: true − within class | +0.05 [+0.40, +0.60] |" in md
    assert "frozen, curated: true pairs" not in md, "a model without a shuffled run is not in the training group"
    assert "| **Retrieval on permuted test pairs** | *R@1, true pairs* | *R@1, across* |" in md
    assert "| frozen, curated | 0.02 [0.40, 0.60] | 0.02 [0.40, 0.60] |" in md
    assert "| **Seed robustness** |" in md
    assert "| Vision LoRA, curated | 0.20 ± 0.14 sd, 2 seeds |" in md, "seeds: mean ± sd, never an interval"


def test_control_rows_join_metrics_csv_once(tmp_path, monkeypatch):
    import pandas as pd

    from radioalign.study.controls import write_control, write_controls_table
    from radioalign.study.evaluation import ROW_COLUMNS

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    folder = tmp_path / "smoke"
    folder.mkdir()
    table1 = pd.DataFrame([dict(model="frozen", tag="frozen", captions="curated", metric="recall@1", modality="image-text",
                                value=0.1, low=0.0, high=0.2, n=18, B=10)])  # fmt: skip
    table1.to_csv(folder / "metrics.csv", index=False)
    rows = table1.assign(metric="recall@1_rotated", transform="rot90")
    write_control(rows, SMOKE, "rotations")
    for _ in range(2):  # a rerun replaces the merged rows instead of appending them again
        write_controls_table(SMOKE)
    merged = pd.read_csv(folder / "metrics.csv")
    assert list(merged.columns) == [*ROW_COLUMNS, "control", "detail"] and len(merged) == 2
    control = merged[merged["control"] == "rotations"].iloc[0]
    assert control["metric"] == "recall@1_rotated" and control["detail"] == "transform=rot90"
    assert merged["control"].isna().sum() == 1
