"""Labelling a survey store (radioalign.survey.labelling) on small synthetic stores, no model:
user labels and imports, the probe and its fallbacks, calibration, conformal sets, suggestions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")

from radioalign.survey import labelling as L  # noqa: E402
from radioalign.survey.store import Store, normalise, now, source_id  # noqa: E402

DIM = 16


def clustered_store(path, n=120, *, seed=0, names=None, spread=0.35, duplicates=0):
    """A store of ``n`` sources in two clusters (class A: even rows, B: odd rows) around
    two random unit centres, plus ``duplicates`` near-copies of one source half-way
    between the centres (the most uncertain), labelled A."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.normal(size=(2, DIM)))
    truth = np.arange(n) % 2
    vectors = normalise(centres[truth] + spread * rng.normal(size=(n, DIM)) / np.sqrt(DIM))
    if duplicates:
        copies = normalise(centres.sum(axis=0, keepdims=True) + 1e-4 * rng.normal(size=(duplicates, DIM)))
        vectors, truth = np.vstack([vectors, copies]), np.concatenate([truth, np.zeros(duplicates, int)])
    store = Store(path)
    store.init_meta({"fingerprint": "f" * 64, "model": "fake", "adapter": "", "dim": str(DIM)})
    ids = [source_id(f"fake#{i}") for i in range(len(vectors))]
    names = names or [f"src{i}" for i in range(len(vectors))]
    rows = [
        {"id": ids[i], "name": names[i], "ra": float(i), "dec": 0.0, "source": f"fake#{i}", "thumbnail": b"",
         "vector": vectors[i].tolist(), "model": "f" * 64, "adapter": "", "preprocessing": "none", "created_at": now()}
        for i in range(len(vectors))
    ]  # fmt: skip
    for start in range(0, len(rows), 50):
        store.add_sources(rows[start : start + 50], DIM)
    classes = np.asarray(["A", "B"])[truth]
    return store, vectors, ids, classes, centres


def prior_for(centres, noise=0.0, seed=1):
    """A zero-shot prior whose prototypes sit near the true centres (``noise`` blurs them)."""
    rng = np.random.default_rng(seed)
    return L.Prior(["A", "B"], centres + noise * rng.normal(size=centres.shape), scale=10.0, bias=-3.0, name="ab")


@pytest.fixture
def survey(tmp_path):
    return clustered_store(tmp_path / "s")


# ------------------------------------------------------------------- labels


def test_add_labels_by_id_and_name_and_replace(survey):
    store, _, ids, _, _ = survey
    assert L.user_labels(store) == {}
    assert L.add_labels(store, {ids[0]: "A", "src1": "B"}, who="ann") == {"added": 2, "replaced": 0}
    assert L.user_labels(store) == {ids[0]: "A", ids[1]: "B"}
    assert L.add_labels(store, {"src1": "A", ids[2]: " A "}) == {"added": 1, "replaced": 1}
    details = L.user_labels(store, details=True)
    assert details[ids[1]]["class"] == "A" and details[ids[2]]["class"] == "A"
    assert details[ids[0]]["who"] == "ann" and details[ids[0]]["origin"] == "user"
    assert L.user_labels_of(store, [ids[0], ids[5]]) == {ids[0]: "A"}


def test_unknown_ids_bad_classes_and_ambiguous_names_are_refused(tmp_path, survey):
    store, _, ids, _, _ = survey
    with pytest.raises(L.LabellingError, match=r"2 unknown source\(s\).*'nope'.*'J0000'"):
        L.add_labels(store, {ids[0]: "A", "nope": "B", "J0000": "B"})
    assert L.user_labels(store) == {}, "nothing is written when any key is unknown"
    for bad in ("", "  ", "A|B"):
        with pytest.raises(L.LabellingError, match="class"):
            L.add_labels(store, {ids[0]: bad})
    with pytest.raises(L.LabellingError, match="origin"):
        L.add_labels(store, {ids[0]: "A"}, origin="robot")
    with pytest.raises(L.LabellingError, match="unknown"):
        L.remove_labels(store, ["nope"])
    twins, *_ = clustered_store(tmp_path / "twins", n=4, names=["x", "x", "y", "z"])
    with pytest.raises(L.LabellingError, match="several sources.*'x'"):
        L.add_labels(twins, {"x": "A"})


def test_remove_labels(survey):
    store, _, ids, _, _ = survey
    L.add_labels(store, {ids[0]: "A", ids[1]: "B", ids[2]: "A"})
    assert L.remove_labels(store, [ids[0], "src1", ids[3]]) == {"removed": 2, "not_labelled": 1}
    assert L.user_labels(store) == {ids[2]: "A"}


@pytest.mark.parametrize("suffix", [".csv", ".ecsv", ".vot", ".fits"])
def test_import_labels_from_table_files(tmp_path, survey, suffix):
    from astropy.table import Table

    store, _, ids, classes, _ = survey
    table = Table({"Source_Name": [f"src{i}" for i in range(10)] + ["elsewhere"],
                   "FR": [0 if c == "A" else 1 for c in classes[:10]] + [1]})  # fmt: skip
    path = tmp_path / f"cat{suffix}"
    table.write(path, format={".vot": "votable"}.get(suffix))
    summary = L.import_labels(store, path, name_col="source_name", class_col="FR", class_map={0: "A", 1: "B"}, who="cat")
    assert (summary.rows, summary.matched, summary.unmatched, summary.added) == (11, 10, 1, 10)
    assert summary.examples == ["elsewhere"] and "10 of 11 rows matched" in summary.line()
    labels = L.user_labels(store, details=True)
    assert {i: v["class"] for i, v in labels.items()} == dict(zip(ids[:10], classes[:10]))
    assert {v["origin"] for v in labels.values()} == {"import"}


def test_import_labels_by_id_with_default_columns(tmp_path, survey):
    store, _, ids, _, _ = survey
    path = tmp_path / "labels.csv"
    path.write_text("id,class\n" + f"{ids[3]},B\n{ids[4]},A\n,A\n{ids[5]},\n")
    summary = L.import_labels(store, path)
    assert (summary.matched, summary.blank, summary.unmatched) == (2, 2, 0)
    assert L.user_labels(store) == {ids[3]: "B", ids[4]: "A"}


def test_import_labels_refuses_a_file_that_matches_nothing(tmp_path, survey):
    store, *_ = survey
    path = tmp_path / "other.csv"
    path.write_text("name,class\nJ1,FR-I\nJ2,FR-II\n")
    with pytest.raises(L.LabellingError, match=r"no row of other.csv matches a source.*name \(name\).*'J1'"):
        L.import_labels(store, path)
    bad = tmp_path / "bad.csv"
    bad.write_text("ra,dec\n1,2\n")
    with pytest.raises(L.LabellingError, match="need a class column"):
        L.import_labels(store, bad)
    with pytest.raises(L.LabellingError, match="no class column 'kind'"):
        L.import_labels(store, path, class_col="kind")
    with pytest.raises(L.LabellingError, match="no label file"):
        L.import_labels(store, tmp_path / "missing.csv")
    assert L.user_labels(store) == {}


# -------------------------------------------------------------------- probe


def label_some(store, ids, classes, per_class, seed=0):
    rng = np.random.default_rng(seed)
    picks = [i for c in ("A", "B") for i in rng.choice(np.flatnonzero(classes == c), per_class, replace=False)]
    L.add_labels(store, {ids[i]: classes[i] for i in picks})
    return picks


def test_probe_learns_the_clusters_and_writes_predictions(survey):
    store, vectors, ids, classes, centres = survey
    label_some(store, ids, classes, 15)
    summary = L.classify_probe(store, prior_for(centres, noise=2.0), alpha=0.1, batch_size=17)
    assert summary.model == "probe" and summary.fallback is None
    assert summary.labels == 30 and summary.label_counts == {"A": 15, "B": 15}
    assert summary.C in L.C_GRID and summary.cv_macro_f1 > 0.9
    assert summary.sources == len(ids) and sum(summary.predicted.values()) == len(ids)
    assert 0.8 <= summary.coverage <= 1.0 and 1.0 <= summary.mean_set_size <= 2.0
    assert "probe: 120 sources" in summary.line() and "coverage" in summary.line()
    json.dumps(summary.to_dict())  # printable as JSON by the command
    stored = L.predictions_of(store, ids, "probe")
    accuracy = np.mean([stored[i]["predicted"] == c for i, c in zip(ids, classes)])
    assert accuracy > 0.9
    one = stored[ids[0]]
    assert set(one["probabilities"]) == {"A", "B"} and abs(sum(one["probabilities"].values()) - 1) < 1e-4
    assert one["best"] == max(one["probabilities"], key=one["probabilities"].get)
    assert one["prediction_set"] in ("A", "B", "A|B") and one["alpha"] == pytest.approx(0.1)


def test_streaming_batches_do_not_change_the_predictions(survey):
    store, _, ids, classes, centres = survey
    label_some(store, ids, classes, 6)
    probe = L.train_probe(store, prior_for(centres))
    L.classify_probe(store, probe=probe, batch_size=7)
    small = L.predictions_of(store, ids)
    L.classify_probe(store, probe=probe, batch_size=4096)
    assert L.predictions_of(store, ids) == small
    assert store.count(L.PREDICTIONS) == len(ids), "a run replaces its model's rows"


def test_abstain_leaves_open_sets_unlabelled(survey):
    store, _, ids, classes, centres = survey
    label_some(store, ids, classes, 12)
    summary = L.classify_probe(store, prior_for(centres), alpha=0.05, abstain=True)
    stored = L.predictions_of(store, ids)
    open_ = [r for r in stored.values() if "|" in r["prediction_set"]]
    assert summary.abstain and summary.open == len(open_)
    assert all(r["predicted"] is None for r in open_)
    assert all(r["predicted"] == r["prediction_set"] for r in stored.values() if "|" not in r["prediction_set"])
    assert f"{summary.open} left open" in summary.line()


def test_one_class_or_a_single_label_falls_back_to_zero_shot(survey):
    store, _, ids, classes, centres = survey
    prior = prior_for(centres)
    for labels in ({ids[0]: "A"}, {ids[0]: "A", ids[2]: "A", ids[4]: "A"}):
        L.add_labels(store, labels)
        summary = L.classify_probe(store, prior)
        assert summary.model == "zeroshot" and summary.requested == "probe"
        assert "only one class is labelled (A:" in summary.fallback and "zero-shot" in summary.fallback
        assert summary.sources == len(ids)
    assert L.predictions_of(store, ids[:1], "probe") == {} and L.predictions_of(store, ids[:1], "zeroshot")
    with pytest.raises(L.LabellingError, match="only one class is labelled.*no prompt set to fall back on"):
        L.classify_probe(store, None)


def test_no_labels_is_zero_shot_and_no_prior_is_a_clear_error(survey):
    store, _, ids, classes, centres = survey
    summary = L.classify_probe(store, prior_for(centres), write=False)
    assert summary.model == "zeroshot" and summary.fallback.startswith("no labels yet")
    assert summary.labels == 0 and math.isnan(summary.coverage) and summary.open == len(ids)
    with pytest.raises(L.LabellingError, match="no labels yet"):
        L.train_probe(store)


def test_a_pair_of_labels_uses_the_prior_and_a_fixed_c(survey):
    store, vectors, ids, classes, centres = survey
    L.add_labels(store, {ids[0]: "A", ids[1]: "B"})
    probe = L.train_probe(store, prior_for(centres))
    assert probe.model_ == "probe" and probe.C_ == L.C_FEW and probe.cv_macro_f1_ is None
    assert probe.features(vectors[:3]).shape == (3, DIM + 2)
    assert np.mean(probe.predict(vectors) == classes) > 0.8
    assert probe.predict_sets(vectors[:5]).all(), "no conformal sets from two labels: every class stays in"


def test_the_probe_is_a_scikit_learn_estimator(survey):
    from sklearn.base import clone

    _, vectors, _, classes, centres = survey
    probe = L.LabelProbe(prior_for(centres), C=1.0)
    fitted = clone(probe).fit(vectors[:40], classes[:40])
    assert fitted.C_ == 1.0 and list(fitted.classes_) == ["A", "B"]
    assert fitted.score(vectors[40:], classes[40:]) > 0.8
    assert fitted.predict_proba(vectors[40:]).shape == (80, 2)


def test_zero_shot_is_calibrated_on_the_labels(survey):
    _, vectors, _, classes, centres = survey
    prior = prior_for(centres)
    raw = L.fit_probe(vectors[:0], classes[:0], prior, model="zeroshot")
    calibrated = L.fit_probe(vectors[:60], classes[:60], prior, model="zeroshot")
    y = (classes[60:] == "B").astype(int)
    assert calibrated.calibrator_ is not None and raw.calibrator_ is None
    assert L.log_loss(calibrated.predict_proba(vectors[60:]), y) < L.log_loss(raw.predict_proba(vectors[60:]), y)


# ------------------------------------------------------ calibration, conformal


def test_calibration_improves_log_loss_of_miscalibrated_scores():
    rng = np.random.default_rng(0)
    n, k = 4000, 3
    true_logits = rng.normal(size=(n, k)) * 1.5
    y = np.array([rng.choice(k, p=p) for p in L.softmax(true_logits)])
    scores = 4.0 * true_logits + np.array([1.5, 0.0, -1.0])  # overconfident and biased
    fit, held = slice(0, n // 2), slice(n // 2, n)
    calibrator = L.LogitCalibrator(bias=True).fit(scores[fit], y[fit])
    before, after = L.log_loss(L.softmax(scores[held]), y[held]), L.log_loss(calibrator.predict_proba(scores[held]), y[held])
    assert after < 0.75 * before
    assert calibrator.temperature_ == pytest.approx(4.0, rel=0.15)
    assert after == pytest.approx(L.log_loss(L.softmax(true_logits[held]), y[held]), abs=0.02)
    temperature_only = L.LogitCalibrator(bias=False).fit(scores[fit], y[fit])
    assert L.log_loss(temperature_only.predict_proba(scores[held]), y[held]) < before


def exchangeable(n, k=3, seed=0):
    """Labels drawn from softmax(logits), and the probabilities of a model that is not
    calibrated (conformal sets do not need it to be)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2.0
    y = np.array([rng.choice(k, p=p) for p in L.softmax(logits)])
    return L.softmax(0.5 * logits), y


@pytest.mark.parametrize("alpha", [0.1, 0.05])
@pytest.mark.parametrize("mondrian", [False, True])
def test_conformal_coverage_on_an_exchangeable_set(alpha, mondrian):
    n_cal, n_test = 1000, 5000
    proba, y = exchangeable(n_cal + n_test, seed=int(alpha * 1000) + mondrian)
    thresholds, used = L.conformal_thresholds(proba[:n_cal], y[:n_cal], alpha, mondrian=mondrian)
    assert used == mondrian
    sets = L.conformal_sets(proba[n_cal:], thresholds)
    covered = sets[np.arange(n_test), y[n_cal:]]
    low, high = L.clopper_pearson(int(covered.sum()), n_test, 0.99)
    assert high >= 1 - alpha, f"coverage {covered.mean():.3f} below {1 - alpha} beyond its interval"
    assert low <= 1 - alpha + 0.03, f"coverage {covered.mean():.3f}: far too conservative"
    assert 1.0 <= sets.sum(axis=1).mean() < 3
    report = L.cross_validated_coverage(proba[:n_cal], y[:n_cal], alpha, mondrian=mondrian)
    assert report["coverage"] == pytest.approx(1 - alpha, abs=0.03)


def test_mondrian_sets_cover_every_class():
    """Class-conditional coverage holds on average over calibration draws (one draw's
    coverage varies by about 0.02 with 330 scores per class)."""
    alpha, k = 0.1, 3
    proba, y = exchangeable(6000, k, seed=7)
    rng, per_class, overall = np.random.default_rng(1), [], []
    for _ in range(40):
        order = rng.permutation(len(y))
        cal, test = order[:1000], order[1000:]
        thresholds, _ = L.conformal_thresholds(proba[cal], y[cal], alpha, mondrian=True)
        covered = L.conformal_sets(proba[test], thresholds)[np.arange(len(test)), y[test]]
        per_class.append([covered[y[test] == c].mean() for c in range(k)])
        overall.append(covered.mean())
    assert np.all(np.mean(per_class, axis=0) >= 1 - alpha - 0.01), np.mean(per_class, axis=0)
    assert np.all(np.mean(per_class, axis=0) <= 1 - alpha + 0.03)
    marginal, _ = L.conformal_thresholds(proba[:1000], y[:1000], alpha, mondrian=False)
    assert not np.allclose(marginal, L.conformal_thresholds(proba[:1000], y[:1000], alpha, mondrian=True)[0])


def test_conformal_edge_cases():
    assert L.conformal_quantile([0.1, 0.2, 0.3], 0.1) == math.inf, "3 scores cannot give 90 %"
    assert L.conformal_quantile(np.arange(9) / 10, 0.1) == pytest.approx(0.8)
    assert L.mondrian_minimum(0.1) == 9 and L.mondrian_minimum(0.05) == 19
    proba = np.array([[0.9, 0.1], [0.4, 0.6]])
    sets = L.conformal_sets(proba, np.array([-1.0, -1.0]))
    assert sets.tolist() == [[True, False], [False, True]], "the most probable class always enters"
    assert L.set_labels(L.conformal_sets(proba, np.array([math.inf, 0.0])), ["A", "B"]) == ["A", "A|B"]
    with pytest.raises(L.LabellingError, match="alpha"):
        L.conformal_thresholds(proba, [0, 1], alpha=1.5)


def test_clopper_pearson_matches_scipy():
    from scipy.stats import binomtest

    for k, n in ((95, 104), (0, 10), (10, 10), (7, 18)):
        ci = binomtest(k, n).proportion_ci(0.95, method="exact")
        assert L.clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


# -------------------------------------------------------------- suggestions


def test_suggest_indices_are_uncertain_diverse_and_exclude():
    rng = np.random.default_rng(0)
    X = normalise(rng.normal(size=(200, DIM)))
    X[100:110] = normalise(X[100] + 1e-4 * rng.normal(size=(10, DIM)))  # ten near-copies ...
    proba = np.tile([0.95, 0.05], (200, 1))
    proba[100:110] = [0.5, 0.5]  # ... that are the most uncertain
    proba[150:160] = [0.6, 0.4]
    picked = L.suggest_indices(X, 5, proba=proba, exclude=[101])
    assert 101 not in picked and len(set(picked)) == 5
    assert sum(100 <= i < 110 for i in picked) == 1, "one of the near-copies, not five"
    cos = X[picked] @ X[picked].T
    assert cos[~np.eye(5, dtype=bool)].max() < 0.99
    assert picked[0] in range(100, 110), "the most uncertain comes first"
    entropy = L.suggest_indices(X, 3, proba=proba, kind="entropy")
    assert set(entropy) <= set(range(100, 110)) | set(range(150, 160))
    with pytest.raises(L.LabellingError, match="nothing to rank"):
        L.suggest_indices(X, 3)


def test_suggest_on_a_store(tmp_path):
    store, vectors, ids, classes, centres = clustered_store(tmp_path / "s", n=100, duplicates=8)
    query = centres[1]
    first = L.suggest(store, 5, query_vector=query, batch_size=13)
    assert [s["by"] for s in first] == ["query"] * 5 and first[0]["best"] is None
    sims = vectors @ query
    assert first[0]["id"] == ids[int(np.argmax(sims))], "no labels: the closest to the query first"
    label_some(store, ids, classes, 8)
    labelled = set(L.user_labels(store))
    picks = L.suggest(store, 10, prior=prior_for(centres), batch_size=13)
    assert len(picks) == 10 and not labelled & {p["id"] for p in picks}
    assert {p["by"] for p in picks} == {"margin"} and set(picks[0]["probabilities"]) == {"A", "B"}
    chosen = vectors[[ids.index(p["id"]) for p in picks]]
    assert (chosen @ chosen.T)[~np.eye(10, dtype=bool)].max() < 0.999, "no near-duplicates in one batch"
    assert sum(p["id"] in ids[100:] for p in picks) == 1, "one of the uncertain near-copies, not all"
    margins = [p["score"] for p in picks]
    everything = L.train_probe(store, prior_for(centres)).predict_proba(vectors)
    unlabelled = [i for i, x in enumerate(ids) if x not in labelled]
    pool = np.sort(L.uncertainty(everything[unlabelled]))[::-1][: L.pool_size(10)]
    assert min(margins) >= pool[-1] - 1e-9, "suggestions come from the most uncertain"


def test_suggest_without_anything_to_rank_by(survey):
    store, *_ = survey
    with pytest.raises(L.LabellingError, match="nothing to rank sources by"):
        L.suggest(store, 5)


def test_forget_removes_labels_and_predictions(survey):
    store, _, ids, classes, centres = survey
    label_some(store, ids, classes, 5)
    L.classify_probe(store, prior_for(centres))
    gone = list(L.user_labels(store))[:3]
    L.forget(store, gone)
    assert not set(gone) & set(L.user_labels(store)) and L.predictions_of(store, gone) == {}


def test_prior_and_query_from_the_stores_model(tmp_path, tiny_siglip_dir, one_thread):
    """The prior of a prompt set and a text query under the store's own model (tiny SigLIP);
    another model's store is refused."""
    from radioalign.survey import zeroshot
    from radioalign.survey.encoder import load_encoder
    from radioalign.survey.store import ModelMismatchError

    encoder = load_encoder(tiny_siglip_dir, device="cpu", dtype="float32")
    store = Store(tmp_path / "s")
    store.init_meta({"fingerprint": encoder.fingerprint, "model": str(tiny_siglip_dir), "adapter": ""})
    store.add_sources([{"id": "a", "name": "a", "vector": [0.0] * encoder.dim, "created_at": now()}], encoder.dim)
    prior = L.zero_shot_prior(store, "fr", encoder=encoder)
    classes, vectors = zeroshot.class_vectors(encoder, zeroshot.FR_PROMPTS)
    assert prior.classes == classes == ["FR-I", "FR-II"] and np.allclose(prior.vectors, vectors, atol=1e-6)
    assert (prior.scale, prior.bias) == pytest.approx(encoder.logit_scale_bias())
    image = normalise(np.random.default_rng(0).normal(size=(3, encoder.dim)))
    reference = zeroshot.probabilities(image, vectors, *encoder.logit_scale_bias())
    assert np.allclose(prior.probabilities(image), reference, atol=1e-5)
    query = L.query_vector(store, "a bent-tail radio galaxy", encoder=encoder)
    assert query.shape == (encoder.dim,) and np.linalg.norm(query) == pytest.approx(1.0)
    other = Store(tmp_path / "other")
    other.init_meta({"fingerprint": "0" * 64, "model": "else", "adapter": ""})
    with pytest.raises(ModelMismatchError):
        L.zero_shot_prior(other, "fr", encoder=encoder)
