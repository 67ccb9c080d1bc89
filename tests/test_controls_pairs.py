"""Issue 11, items 2 and 3: shuffled pairs (derangements, chance levels, the shuffled
evaluation and training rows) and seeds (tags, per-seed rows, spread, paired test)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from radioalign.captions.shuffle import (
    chance_levels,
    derangement,
    shuffle_across,
    shuffle_permutation,
    shuffle_within_class,
    within_class_derangement,
)
from radioalign.metrics import class_recall_at_1, recall_at_k
from radioalign.study import bundles as B
from radioalign.study.evaluation import ROW_COLUMNS, synthetic_bundle
from radioalign.study.pairs import (
    CHANCE,
    CONTROL_COLUMNS,
    fig_shuffled_pairs,
    permuted_test_rows,
    shuffled_metrics,
    training_summary,
)
from radioalign.study.controls import format_cell, seed_cells, shuffled_test_cells, shuffled_training_cells, write_control
from radioalign.study.layout import results_dir
from radioalign.study.profiles import finetune_config, get_profile
from radioalign.study.seeds import SEED_COLUMNS, holm, paired_seed_tests, seed_metrics, seed_summary, write_seed_outputs

# ------------------------------------------------------------------------ shuffles


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_is_a_permutation_without_fixed_points(n):
    for seed in range(20):
        perm = derangement(n, seed)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    assert list(derangement(1, 0)) == [0] and list(derangement(0, 0)) == []
    assert np.array_equal(derangement(n, 5), derangement(n, 5)), "a seed fixes the draw"


def test_derangements_are_drawn_uniformly():
    # the 2 derangements of 3 items, each about half of the draws
    rng = np.random.default_rng(0)
    counts = pd.Series([tuple(derangement(3, rng)) for _ in range(2000)]).value_counts()
    assert set(counts.index) == {(1, 2, 0), (2, 0, 1)}
    assert abs(counts.iloc[0] / 2000 - 0.5) < 0.05


def test_within_class_derangement_keeps_each_caption_in_its_class():
    labels = np.array([0, 1, 0, 0, 1, 1, 1, 2])  # class 2 has a single item
    for seed in range(20):
        perm = within_class_derangement(labels, seed)
        assert sorted(perm) == list(range(len(labels)))
        assert np.array_equal(labels[perm], labels), "every caption stays in its class"
        moved = perm != np.arange(len(labels))
        assert moved[labels != 2].all() and not moved[labels == 2].any(), "a class of one keeps its caption"
    texts = [f"t{i}" for i in range(len(labels))]
    shuffled = shuffle_within_class(texts, labels, 3)
    assert sorted(shuffled) == sorted(texts) and shuffled == [texts[j] for j in within_class_derangement(labels, 3)]
    across = shuffle_across(texts, 3)
    assert sorted(across) == sorted(texts) and all(a != t for a, t in zip(across, texts))
    assert np.array_equal(shuffle_permutation("across", labels, 3), derangement(len(labels), 3))
    with pytest.raises(ValueError, match="unknown shuffle mode"):
        shuffle_permutation("sideways", labels, 0)
    with pytest.raises(ValueError):
        shuffle_within_class(texts[:3], labels, 0)


def test_chance_levels_hold_on_random_embeddings():
    """Random embeddings carry no pairing: Recall@k averages k/n and class-level Recall@1
    the class balance sum_c p_c^2 (here 0.75^2 + 0.25^2 = 0.625)."""
    n, draws = 40, 400
    labels = np.array([0] * 30 + [1] * 10)
    expected = chance_levels(labels)
    assert expected == pytest.approx({"recall@1": 1 / 40, "recall@5": 5 / 40, "class_recall@1": 0.625})
    rng = np.random.default_rng(1)
    seen = {k: [] for k in expected}
    for _ in range(draws):
        img, txt = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
        seen["recall@1"].append(recall_at_k(img, txt, 1))
        seen["recall@5"].append(recall_at_k(img, txt, 5))
        seen["class_recall@1"].append(class_recall_at_1(img, txt, labels))
    for metric, values in seen.items():
        se = np.std(values) / np.sqrt(draws)
        assert abs(np.mean(values) - expected[metric]) < 4 * se + 1e-3, metric


def test_permuted_test_captions_lose_recall_but_not_class_recall():
    """A well aligned bundle: permuted pairs lose Recall@1 (a derangement keeps no true pair);
    class-level Recall@1, a caption judged by its own class, keeps its unpermuted value under
    either permutation, as it must (the same captions are retrieved)."""
    bundle = synthetic_bundle(20, 200, 16, noise=0.3)
    labels = bundle["labels_test"]

    def values(mode):
        rows = permuted_test_rows(bundle, "curated", mode, perm_seed=0, bootstrap=20, seed=0)
        return {(r["metric"], r["modality"]): r["value"] for r in rows}

    from radioalign.metrics import evaluate_retrieval

    true = {(r["metric"], r["modality"]): r["value"] for r in evaluate_retrieval(bundle["image_test"], bundle["text_curated_test"], labels, bootstrap=20)}
    across, within = values("across"), values("withinclass")
    assert true["recall@1", "image-text"] > 0.5 and true["class_recall@1", "image-text"] > 0.9
    assert across["recall@1", "image-text"] < 0.05 and within["recall@1", "image-text"] < 0.05
    for direction in ("image-text", "i2t", "t2i"):
        assert across["class_recall@1", direction] == true["class_recall@1", direction]
        assert within["class_recall@1", direction] == true["class_recall@1", direction]


# ------------------------------------------------------------------------ tags


def test_variant_and_seed_tags_build_and_parse():
    t = B.Tag("full", "curated", variant="withinclass", seed=7)
    assert str(t) == "full-curated+withinclass_s7" and B.parse_tag(str(t)) == t
    assert B.tag("full", "curated", 1, variant="across", seed=2) == "full-curated+across_s2_epoch1"
    assert B.parse_tag("vision-control_s1") == B.Tag("vision", "control", seed=1)
    assert B.parse_tag("full-curated+across_s2_epoch1").run == "full-curated+across_s2"
    assert not t.is_plain and t.plain == B.Tag("full", "curated") and B.Tag("text", "control").is_plain
    for text in ("full-curated+withinclass", "text-control_s12_epoch5", "frozen", "vision-catalog_epoch3"):
        assert str(B.parse_tag(text)) == text
    for bad in ("frozen_s1", "full-curated+", "full-curated_s", "full-curated_epoch1_s2", "full-curated+Across"):
        assert B.parse_tag(bad) is None, bad
    for kwargs in ({"variant": "Bad"}, {"seed": -1}, {"seed": 1.5}):
        with pytest.raises(ValueError):
            B.Tag("full", "curated", **kwargs)
    with pytest.raises(ValueError):
        B.Tag("frozen", seed=1)
    assert B.seed_suffix(42, 42) is None and B.seed_suffix(1, 42) == 1 and B.seed_suffix(None, 42) is None
    # another run's stages never enter a plain run's stages
    assert B.stage_tags(["frozen", "full-curated_s1_epoch1", "full-curated_epoch1"], "full", "curated") == [
        ("frozen", "frozen"), ("epoch 1", "full-curated_epoch1"), ("final", None)]


def test_profiles_name_the_control_runs():
    smoke = get_profile("smoke")
    assert smoke.seeds == (42, 1) and smoke.seed == 42 and set(smoke.shuffled) == {"withinclass", "across"}
    tags = B.control_tags(smoke)
    assert len(tags) == len(smoke.scopes) * len(smoke.prompts) + len(smoke.prompts) * len(smoke.shuffled)
    assert "vision-curated_s1" in tags and "full-control+across" in tags and "full-curated" not in tags
    assert B.seed_tags(smoke.scopes, smoke.prompts, 42, 42)[:2] == ["frozen", "vision-curated"]
    assert B.seed_tags(smoke.scopes, smoke.prompts, 1, 42)[1] == "vision-curated_s1"
    paper = get_profile("paper")
    assert paper.seeds[0] == 42 and len(paper.seeds) >= 3 and "not timed" in paper.note
    assert get_profile("smoke", seeds="42,3", shuffled="across").seeds == (42, 3)
    assert get_profile("smoke", shuffled=["across"]).shuffled == ("across",)
    with pytest.raises(ValueError, match="shuffle modes"):
        get_profile("smoke", shuffled="sideways")
    assert finetune_config(smoke, "full", "curated", seed=3).seed == 3 and finetune_config(smoke, "full", "curated").seed == 42


# ------------------------------------------------------------------------ study rows

SMOKE_BUNDLES = ["frozen", "vision-curated", "vision-control", "full-curated", "full-control",
                 "vision-curated_s1", "vision-control_s1", "full-curated_s1", "full-control_s1",
                 "full-curated+withinclass", "full-curated+across", "full-curated_epoch1", "full-curated_s1_epoch1"]


@pytest.fixture
def controls_profile(tmp_path, monkeypatch):
    """FAKE bundles (random, class-structured) for a two-scope smoke profile with seeds 42 and 1."""
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    folder = tmp_path / "smoke" / "embeddings"
    folder.mkdir(parents=True)
    for v, tag in enumerate(SMOKE_BUNDLES):
        np.savez(folder / f"{tag}.npz", **synthetic_bundle(40, 24, 6, noise=1.0, variant=v))
    return get_profile("smoke", scopes="vision,full", bootstrap=30)


def test_table1_sees_only_the_plain_final_models(controls_profile):
    results = results_dir(controls_profile)
    assert list(B.available_bundles(results)) == ["frozen", "full-control", "full-curated", "vision-control", "vision-curated"]
    every = B.available_bundles(results, controls=True)
    assert "full-curated+across" in every and "full-curated_epoch1" not in every
    assert set(B.control_bundles(results)) == {t for t in SMOKE_BUNDLES if "_s1" in t or "+" in t} - {"full-curated_s1_epoch1"}
    assert B.missing_bundles(results, controls_profile.scopes) == []
    said = B.describe_controls(controls_profile)
    assert "6 of 8 control bundles" in said and "full-control+withinclass" in said and "full-control+across" in said


def test_shuffled_rows(controls_profile, tmp_path):
    rows = shuffled_metrics(controls_profile)
    assert list(rows.columns) == CONTROL_COLUMNS
    key = [c for c in CONTROL_COLUMNS if c not in ("value", "low", "high", "n", "B")]
    assert not rows.duplicated(subset=key).any()
    permuted = rows[rows["evaluation"] != "paired"]
    assert set(permuted["evaluation"]) == {"withinclass", "across"} and set(permuted["metric"]) <= {"mean_cosine", "recall@1", "recall@5", "class_recall@1"}
    assert "frozen" in set(permuted["tag"]) and not permuted["tag"].str.contains("_s1|\\+").any(), "Table 1's models only"
    chance = rows[rows["model"] == CHANCE].set_index("metric")["value"]
    assert chance["recall@1"] == pytest.approx(1 / 24) and chance["class_recall@1"] == pytest.approx(0.5)
    training = rows[rows["tag"].str.contains("\\+") & (rows["variant"] != "paired")]
    assert set(training["variant"]) == {"withinclass", "across", "paired-minus-withinclass", "paired-minus-across"}
    assert "linear_probe_f1" in set(training["metric"]), "shuffled runs get every metric"
    v = rows.set_index(["tag", "metric", "modality", "variant", "evaluation"])["value"]
    d = v["full-curated|full-curated+across", "recall@1", "image-text", "paired-minus-across", "paired"]
    assert d == pytest.approx(v["full-curated", "recall@1", "image-text", "paired", "paired"]
                              - v["full-curated+across", "recall@1", "image-text", "across", "paired"])
    summary = training_summary(rows)
    assert set(summary["variant"]) == {"paired", "withinclass", "across"} and "chance recall@1" in summary
    fig = fig_shuffled_pairs(rows)
    assert len(fig.axes) == 2 and all(ax.lines for ax in fig.axes), "points and chance lines drawn"
    path = write_control(rows, controls_profile, "shuffled")
    assert path == tmp_path / "smoke" / "controls" / "shuffled.csv" and set(ROW_COLUMNS) <= set(pd.read_csv(path).columns)
    cells = shuffled_training_cells(pd.read_csv(path)).set_index(["row", "column"])["value"]
    assert cells["chance (no pairing)", "Recall@1"] == pytest.approx(1 / 24, abs=1e-6)
    assert cells["Full LoRA, curated: true − across", "Recall@1"] == pytest.approx(d, abs=1e-6)
    permuted = shuffled_test_cells(pd.read_csv(path)).set_index(["row", "column"])["value"]
    for t in ("frozen, curated", "full-curated, curated", "vision-control, control"):
        true = permuted[t, "class R@1, true pairs"]
        assert permuted[t, "class R@1, within class"] == pytest.approx(true) and permuted[t, "class R@1, across"] == pytest.approx(true)


def test_seed_rows_summary_and_paired_test(controls_profile, tmp_path):
    rows = seed_metrics(controls_profile)
    assert list(rows.columns) == SEED_COLUMNS and set(rows["seed"]) == {42, 1}
    assert set(rows.loc[rows["seed"] == 1, "tag"]) >= {"frozen", "vision-curated_s1", "full-control_s1"}
    assert not rows["tag"].str.contains("\\+").any(), "shuffled runs are not seeds"
    assert "curated-control" in set(rows["captions"])
    summary = seed_summary(rows, 42).set_index(["model", "captions", "metric", "modality"])
    r = summary.loc["vision", "curated", "recall@1", "image-text"]
    per_seed = rows[(rows["model"] == "vision") & (rows["captions"] == "curated") & (rows["metric"] == "recall@1")
                    & (rows["modality"] == "image-text")].set_index("seed")["value"]  # fmt: skip
    assert r["base"] == per_seed[42] and r["mean"] == pytest.approx(per_seed.mean()) and r["k"] == 2
    assert r["sd"] == pytest.approx(per_seed.std(ddof=1))
    tests = paired_seed_tests(rows).set_index(["model", "metric", "modality"])
    assert tests.loc[("frozen", "recall@1", "image-text"), "note"].startswith("the same difference"), "frozen retrieval has no seed"
    t = tests.loc["vision", "linear_probe_f1", "image"]
    assert t["k"] == 2 and "uninformative" in t["note"]
    written = write_seed_outputs(rows, controls_profile)
    text = written["seeds.md"].read_text()
    assert "Seed robustness" in text and "mean ± sd over seeds [42, 1]" in text and "uninformative" in text
    assert "Recall@1" in text and "sd, 2 seeds" in text and "Holm" in text
    assert (tmp_path / "smoke" / "controls" / "seeds" / "paired_tests.csv").is_file()
    cells = seed_cells(pd.read_csv(written["seeds.csv"])).set_index(["row", "column"])
    mean = cells.loc[("Vision LoRA, curated", "Recall@1")]
    assert mean["value"] == pytest.approx(r["mean"], abs=1e-6) and mean["sd"] == pytest.approx(r["sd"], abs=1e-6) and mean["k"] == 2
    shown = format_cell(mean["value"], mean["low"], mean["high"], sd=mean["sd"], k=mean["k"])
    assert shown == f"{r['mean']:.2f} ± {r['sd']:.2f} sd, 2 seeds" and "[" not in shown, "a spread is not printed as an interval"
    assert ("Full LoRA, curated − control", "probe F1, images") in cells.index


def test_paired_test_matches_scipy_with_three_seeds():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(0)
    cur, con = 0.5 + rng.normal(0, 0.02, 3), 0.45 + rng.normal(0, 0.02, 3)
    frame = pd.DataFrame([dict(model="full", captions=c, metric="recall@1", modality="image-text", value=v, seed=s)
                          for c, vals in (("curated", cur), ("control", con)) for s, v in zip((42, 1, 2), vals)])  # fmt: skip
    t = paired_seed_tests(frame).iloc[0]
    ref = ttest_rel(cur, con)
    assert t["k"] == 3 and t["p"] == pytest.approx(ref.pvalue) and t["t"] == pytest.approx(ref.statistic)
    assert t["p_holm"] == pytest.approx(ref.pvalue), "a family of one test is not adjusted"
    assert t["mean_diff"] == pytest.approx(np.mean(cur - con)) and t["note"] == ""


# ------------------------------------------------------------------------ the runs


@pytest.mark.usefixtures("one_thread")
def test_run_one_trains_on_shuffled_captions_with_its_seed(tiny_siglip_dir, tmp_path, monkeypatch):
    from tiny_siglip import load_tiny, toy_captions, toy_images

    from radioalign.study.layout import embeddings_file, run_dir
    from radioalign.study.runs import run_one, training_captions

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    profile = get_profile("smoke", epochs=4, patience=1, eval_epochs=(), batch_size=4)

    def split(n, seed):
        return SimpleNamespace(images=toy_images(n, seed), labels=np.arange(n) % 2, names=[f"s{seed}_{i}" for i in range(n)])

    train, test = split(12, 1), split(4, 2)
    texts = {p: {s: [f"{p} {i} {c}" for i, c in enumerate(toy_captions(len(ds.images)))] for s, ds in (("train", train), ("test", test))}
             for p in ("curated", "control")}  # fmt: skip
    shuffled, perm = training_captions(texts["curated"]["train"], train.labels, "withinclass", 5)
    assert shuffled != texts["curated"]["train"] and np.array_equal(train.labels[perm], train.labels)
    assert training_captions(texts["control"]["train"], train.labels, "withinclass", 5)[1] == perm, "one permutation per seed"
    model, processor = load_tiny(tiny_siglip_dir)
    common = dict(train=train, test=test, texts=texts, model=model, processor=processor, progress=False, seed=5)
    with pytest.raises(FileNotFoundError, match="full-curated_s5"):
        run_one(profile, "full", "curated", variant="withinclass", **common)  # its true run is not there yet
    true = run_one(profile, "full", "curated", **common)
    shuffled = run_one(profile, "full", "curated", variant="withinclass", **common)
    folder = run_dir(results_dir(profile), "full-curated+withinclass_s5")
    record = json.loads((folder / "shuffle.json").read_text())
    assert record["permutation"] == perm and record["seed"] == 5
    assert record["matched_run"] == "full-curated_s5" and record["matched_epochs"] == true.epochs_run
    config = json.loads((folder / "config.json").read_text())
    assert config["seed"] == 5 and config["epochs"] == 4, "the schedule is planned over the profile's epochs"
    assert config["epochs_run"] == shuffled.epochs_run == true.epochs_run, "as many epochs as the true run"
    assert config["fixed_epochs"] == true.epochs_run and config["stamp"]["matched_epochs"] == true.epochs_run
    bundle = B.load_bundle(embeddings_file(results_dir(profile), "full-curated+withinclass_s5"))
    assert bundle["text_curated_train"].shape == (12, 32), "the bundle embeds the true captions"
    assert B.available_bundles(results_dir(profile)) == {} and sorted(B.control_bundles(results_dir(profile))) == ["full-curated+withinclass_s5", "full-curated_s5"]
    with pytest.raises(ValueError, match="variant"):
        run_one(profile, "full", "curated", train=train, test=test, texts=texts, model=model, processor=processor, variant="x")


def test_holm_adjustment():
    """Holm's step-down: sorted p times (m, m - 1, ...), non-decreasing, capped at 1; NaN is outside the family."""
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5])
    np.testing.assert_allclose(holm(p), [0.04, 0.09, np.nan, 0.09, 0.5])
    assert np.isnan(holm([np.nan])).all() and holm([]).size == 0


def test_shuffled_rows_use_the_profiles_seed_and_equal_table1(controls_profile):
    """shuffled_metrics draws its resamples and probes from the profile's seed, as Table 1
    (notebook 04: collect_metrics with seed = P.seed): every true-pair row equals Table 1's."""
    from radioalign.study.tables import collect_metrics

    table1 = collect_metrics(results_dir(controls_profile), bootstrap=controls_profile.bootstrap, seed=controls_profile.seed, progress=False)
    rows = shuffled_metrics(controls_profile)
    true = rows[(rows["evaluation"] == "paired") & (rows["variant"] == "paired") & (rows["model"] != CHANCE)]
    key = ["tag", "captions", "metric", "modality"]
    merged = true.merge(table1, on=key, suffixes=("", "_t1"))
    assert len(merged) == len(true) > 30, "every true-pair row is one of Table 1's"
    for column in ("value", "low", "high"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_t1"], atol=1e-12, err_msg=column)
    other = shuffled_metrics(controls_profile, seed=0)
    assert not np.allclose(other.loc[other.index.isin(true.index), "low"], true["low"]), "another seed, other resamples"
