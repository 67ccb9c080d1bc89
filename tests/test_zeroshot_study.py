"""Zero-shot rows of the study: the FR prompts a bundle holds classify its test images,
with intervals on the shared resamples; bundles without prompts still evaluate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from radioalign.metrics import bootstrap_indices
from radioalign.study import bundles as B
from radioalign.study import tables as T
from radioalign.study.evaluation import ZERO_SHOT_KEYS, evaluate_bundle, synthetic_bundle, zero_shot_predictions
from radioalign.survey import zeroshot

DIM = 6


def with_prompts(bundle: dict, wrong: int = 5, seed: int = 0) -> dict:
    """``bundle`` with two FR-I and three FR-II prompts whose ensembles are the axes e0 and
    e1, and test images placed on their class's axis except the first ``wrong``, placed on
    the other class's axis (each image with a small positive tilt, so no ties)."""
    rng = np.random.default_rng(seed)
    e = np.eye(DIM, dtype=np.float32)
    out = dict(bundle)
    out["text_prompts"] = np.stack([e[0] + 0.3 * e[2], e[0] - 0.3 * e[2], e[1] + 0.2 * e[3], e[1] - 0.2 * e[3], 2 * e[1]])
    out["prompt_classes"] = np.array([0, 0, 1, 1, 1], dtype=np.int64)
    out["logit_scale"], out["logit_bias"] = np.float32(np.log(10.0)), np.float32(-10.0)
    y = np.asarray(bundle["labels_test"])
    target = np.where(np.arange(len(y)) < wrong, 1 - y, y)
    out["image_test"] = (3.0 * e[target] + 0.1 * np.abs(rng.normal(size=(len(y), DIM)))).astype(np.float32)
    out["expected"] = target
    return out


def test_known_prompt_vectors_give_the_expected_f1_and_accuracy():
    bundle = with_prompts(synthetic_bundle(30, 20, DIM, seed=1))
    y, expected = bundle["labels_test"], bundle.pop("expected")
    assert list(zero_shot_predictions(bundle)) == list(expected)
    df = evaluate_bundle(bundle, "curated", tag="frozen", bootstrap=200, seed=3, protocols=("paper",), return_replicates=True)
    rows = df[df["metric"].str.startswith("zero_shot")].set_index("metric")
    assert set(rows["modality"]) == {"image"} and set(rows["captions"]) == {"curated"}
    assert rows.loc["zero_shot_f1", "value"] == pytest.approx(f1_score(y, expected, pos_label=1))
    assert rows.loc["zero_shot_accuracy", "value"] == pytest.approx(accuracy_score(y, expected))
    # the replicates are the statistic on the shared resamples of the test items
    idx = bootstrap_indices(len(y), 200, 3)
    reps = [f1_score(y[i], expected[i], pos_label=1, zero_division=0) for i in idx[:20]]
    assert np.allclose(rows.loc["zero_shot_f1", "replicates"][:20], reps)
    assert all(r["low"] <= r["value"] <= r["high"] and r["n"] == len(y) and r["B"] == 200 for _, r in rows.iterrows())


def test_probabilities_are_the_survey_tools():
    bundle = with_prompts(synthetic_bundle(10, 8, DIM, seed=2), wrong=0)
    probs = zeroshot.zero_shot_probabilities(bundle["image_test"], bundle["text_prompts"], bundle["prompt_classes"], 10.0, -10.0)
    unit = bundle["image_test"] / np.linalg.norm(bundle["image_test"], axis=1, keepdims=True)
    for c in (0, 1):
        prompts = bundle["text_prompts"] / np.linalg.norm(bundle["text_prompts"], axis=1, keepdims=True)
        mean = prompts[bundle["prompt_classes"] == c].mean(0)
        expected = 1 / (1 + np.exp(-(10.0 * unit @ (mean / np.linalg.norm(mean)) - 10.0)))
        assert np.allclose(probs[:, c], expected, atol=1e-6)


def test_bundles_without_prompts_still_evaluate():
    old = synthetic_bundle(30, 12, 4)
    assert not any(k in old for k in ZERO_SHOT_KEYS) and zero_shot_predictions(old) is None
    df = evaluate_bundle(old, "curated", tag="frozen", bootstrap=20, protocols=("paper",))
    assert len(df) and not df["metric"].str.startswith("zero_shot").any()
    partial = {**old, "text_prompts": np.ones((2, 4), np.float32)}  # prompts without their classes: no rows
    assert zero_shot_predictions(partial) is None


def test_saved_bundles_keep_the_prompt_keys(tmp_path):
    bundle = with_prompts(synthetic_bundle(30, 12, DIM, seed=4))
    bundle.pop("expected")
    back = B.load_bundle(B.save_bundle(tmp_path / "frozen.npz", **bundle))
    assert back["prompt_classes"].dtype == np.int64 and back["text_prompts"].dtype == np.float32
    assert float(back["logit_scale"]) == pytest.approx(np.log(10.0))
    assert list(zero_shot_predictions(back)) == list(zero_shot_predictions(bundle))


def test_frozen_difference_is_zero_and_runs_differ(tmp_path, monkeypatch):
    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    for tag_, wrong in (("frozen", 4), (B.tag("vision", "curated"), 2), (B.tag("vision", "control"), 7)):
        bundle = with_prompts(synthetic_bundle(30, 16, DIM, seed=5), wrong=wrong)
        bundle.pop("expected")
        B.save_bundle(B.embeddings_file(tmp_path / "smoke", tag_), **bundle)
    df = T.collect_metrics(tmp_path / "smoke", bootstrap=50, protocols=("paper",), progress=False)
    zs = df[df["metric"] == "zero_shot_f1"].set_index(["model", "captions"])
    frozen = zs.loc["frozen"]
    columns = ["value", "low", "high"]
    assert frozen.loc["curated", columns].tolist() == frozen.loc["control", columns].tolist()
    assert frozen.loc["curated-control", columns].tolist() == [0.0, 0.0, 0.0]
    vision = zs.loc["vision"]
    assert vision.loc["curated-control", "value"] == pytest.approx(vision.loc["curated", "value"] - vision.loc["control", "value"])
    assert vision.loc["curated-control", "value"] > 0  # 2 wrong against 7 wrong
    table = T.table1_frame(df).set_index(["row", "column"])
    row = table.loc[T.ZERO_SHOT_ROW]
    assert row.loc["Frozen", "value"] == pytest.approx(frozen.loc["curated", "value"]) and row.loc["Frozen", "diff"] == 0
    assert pd.isna(row.loc["Full", "value"])  # no full run: '–'
    assert T.ZERO_SHOT_ROW in T.render_markdown(T.table1_frame(df))


def test_embed_study_and_run_bundles_carry_prompts(tiny):
    from types import SimpleNamespace

    from radioalign.study.inputs import embed_study, logit_arrays, zero_shot_prompts
    from radioalign.study.runs import eval_sets

    from tiny_siglip import toy_images

    model, processor = tiny
    texts, classes = zero_shot_prompts()
    assert list(classes) == [0] * len(zeroshot.FR_PROMPTS["FR-I"]) + [1] * len(zeroshot.FR_PROMPTS["FR-II"])
    assert texts == zeroshot.FR_PROMPTS["FR-I"] + zeroshot.FR_PROMPTS["FR-II"]
    ds = SimpleNamespace(images=toy_images(4, 1), labels=np.array([0, 1, 0, 1]), names=[f"s{i}" for i in range(4)])
    captions = {"curated": {s: ["a radio source"] * 4 for s in ("train", "test")}}
    arrays = embed_study(model, processor, ds, ds, captions, dtype="float32", progress=False)
    assert arrays["text_prompts"].shape == (len(texts), arrays["image_test"].shape[1])
    assert float(arrays["logit_scale"]) == pytest.approx(model.logit_scale.item())
    assert float(arrays["logit_bias"]) == pytest.approx(model.logit_bias.item())
    assert set(logit_arrays(model)) == {"logit_scale", "logit_bias"}
    assert len(zero_shot_predictions(arrays)) == 4
    assert eval_sets(ds, ds, captions)["text_prompts"] == texts
