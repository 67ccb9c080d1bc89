"""Zero-shot labels for every source of a store, from prompt sets.

A prompt set maps each class to one or more prompts. A class's text vector is the
prompt ensemble of Radford et al. (2021): the mean of its prompts' L2-normalised text
embeddings, normalised again. A source's probability for a class is SigLIP's own
pairwise sigmoid, ``sigmoid(exp(logit_scale) * cos(image, class) + logit_bias)`` with
the model's learnt scale and bias: one probability per class, which need not sum to 1
(SigLIP scores each image-text pair on its own). The label is the most probable class.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import LABELS, Store, now, open_store
from .store import normalise as _unit

# The Fanaroff & Riley (1974) classes in the words radio astronomers use.
FR_PROMPTS: dict[str, list[str]] = {
    "FR-I": [
        "an FR-I radio galaxy with edge-darkened jets, brightest near the core",
        "a Fanaroff-Riley class I radio galaxy whose jets fade with distance from the core",
        "an edge-darkened radio galaxy: bright jets near the centre fading into diffuse plumes",
        "a radio galaxy brightest close to the core, with faint diffuse outer lobes and no hotspots",
        "a low-luminosity radio galaxy with two-sided jets that become fainter towards the ends",
    ],
    "FR-II": [
        "an FR-II radio galaxy with edge-brightened lobes and hotspots at the ends",
        "a Fanaroff-Riley class II radio galaxy with bright hotspots at the outer edges of its lobes",
        "an edge-brightened double radio source: two lobes ending in compact hotspots, a faint core",
        "a classical double radio galaxy, brightest far from the core at the tips of the lobes",
        "a powerful radio galaxy with two well separated lobes and bright terminal hotspots",
    ],
}
BUILTIN = {"fr": FR_PROMPTS}


def parse_prompts(mapping, origin: str = "prompts") -> dict[str, list[str]]:
    """Check a ``{class: prompt or [prompts]}`` mapping and return it with lists."""
    if not isinstance(mapping, dict) or len(mapping) < 2:
        raise ValueError(f"{origin}: a prompt set maps at least two classes to prompts (class: [prompt, ...])")
    out = {}
    for name, prompts in mapping.items():
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"{origin}: class {name!r} needs a non-empty list of prompt strings")
        out[str(name)] = [p.strip() for p in prompts]
    return out


def load_prompts(spec: str | os.PathLike = "fr") -> tuple[str, dict[str, list[str]]]:
    """``(name, prompts)``: a built-in set (``"fr"``) or a YAML file of ``class: [prompts]``
    (named after the file's stem). A file that is not valid YAML raises ``ValueError``
    naming the file and the line, e.g. ``prompts.yaml line 3: mapping values are not allowed here``."""
    if str(spec) in BUILTIN:
        return str(spec), BUILTIN[str(spec)]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompt set {spec!r} is neither built in ({', '.join(BUILTIN)}) nor a YAML file")
    import yaml

    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{spec}: not a UTF-8 text file (a prompt set is YAML)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ValueError(f"{spec}{where}: {problem}") from None
    return path.stem, parse_prompts(mapping, str(spec))


def prompt_table(prompts: dict[str, list[str]]) -> tuple[list[str], list[str], np.ndarray]:
    """``(classes, texts, prompt_classes)``: the classes in the set's order, every prompt of
    every class in that order, and the index into ``classes`` of each prompt's class."""
    classes = list(prompts)
    texts = [text for name in classes for text in prompts[name]]
    owner = np.asarray([k for k, name in enumerate(classes) for _ in prompts[name]], dtype=np.int64)
    return classes, texts, owner


def ensemble(text_vectors: np.ndarray, prompt_classes: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Class vectors ``(C, D)``: for class ``c`` the mean of the L2-normalised vectors of the
    prompts with ``prompt_classes == c``, L2-normalised again (Radford et al. 2021)."""
    prompt_classes = np.asarray(prompt_classes, dtype=np.int64)
    n_classes = int(prompt_classes.max()) + 1 if n_classes is None else n_classes
    unit = _unit(text_vectors)
    if len(unit) != len(prompt_classes):
        raise ValueError(f"{len(unit)} prompt vectors but {len(prompt_classes)} prompt classes")
    empty = [c for c in range(n_classes) if not (prompt_classes == c).any()]
    if empty:
        raise ValueError(f"classes {empty} have no prompt")
    return _unit(np.stack([unit[prompt_classes == c].mean(axis=0) for c in range(n_classes)]))


def class_vectors(encoder, prompts: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    """Classes and their ensembled, L2-normalised text vectors ``(C, D)``."""
    classes, _, owner = prompt_table(prompts)
    vectors = np.concatenate([encoder.texts(prompts[name]) for name in classes])
    return classes, ensemble(vectors, owner, len(classes))


def probabilities(image_vectors: np.ndarray, class_vecs: np.ndarray, scale: float, bias: float) -> np.ndarray:
    """SigLIP's sigmoid probabilities ``(N, C)`` of normalised image vectors for each class."""
    logits = scale * (np.asarray(image_vectors, np.float32) @ class_vecs.T) + bias
    return 1.0 / (1.0 + np.exp(-logits))


def zero_shot_probabilities(image_vectors, text_prompts, prompt_classes, scale: float, bias: float) -> np.ndarray:
    """:func:`probabilities` from raw embeddings, numpy only: ``image_vectors`` ``(N, D)`` and
    the prompts' ``text_prompts`` ``(P, D)`` (both L2-normalised here), ``prompt_classes``
    ``(P,)`` the class index of each prompt (:func:`ensemble`), ``scale`` = exp(logit_scale)
    and ``bias`` = logit_bias. The most probable class is the one of highest cosine: the
    scale and bias set the probabilities, not the labels."""
    return probabilities(_unit(image_vectors), ensemble(text_prompts, prompt_classes), scale, bias)


@dataclass
class ClassifySummary:
    prompts: str
    classes: list[str]
    labelled: int = 0
    counts: dict = field(default_factory=dict)

    def line(self) -> str:
        parts = ", ".join(f"{c}: {self.counts.get(c, 0)}" for c in self.classes)
        return f"classify ({self.prompts}): {self.labelled} sources labelled ({parts})"


def label_rows(ids, probs: np.ndarray, classes: list[str], prompts_name: str) -> list[dict]:
    created = now()
    best = probs.argmax(axis=1)
    return [
        {
            "id": i, "prompts": prompts_name, "label": classes[b], "score": float(p[b]),
            "probabilities": json.dumps({c: round(float(v), 6) for c, v in zip(classes, p)}), "created_at": created,
        }  # fmt: skip
        for i, p, b in zip(ids, probs, best)
    ]


def class_prototypes(store: Store, prompts, encoder=None, model=None, adapter=None, device=None, purpose: str = "classification"):
    """``(name, classes, class vectors, logit scale, logit bias)`` of a prompt set (built in,
    or a YAML file) under ``encoder``, else the store's own model (or ``model``/``adapter``);
    the model must be the store's (``purpose`` names the work in the error)."""
    from .encoder import encoder_for_store

    name, prompt_set = load_prompts(prompts)
    encoder = encoder or encoder_for_store(store.meta(), model, adapter, device=device)
    store.check_model(encoder.fingerprint, purpose)
    classes, vectors = class_vectors(encoder, prompt_set)
    scale, bias = encoder.logit_scale_bias()
    return name, classes, vectors, scale, bias


def classify(
    store: str | os.PathLike | Store,
    prompts: str | os.PathLike = "fr",
    *,
    encoder=None,
    model=None,
    adapter=None,
    batch_size: int = 4096,
    device=None,
) -> ClassifySummary:
    """Label every source of ``store`` with the classes of ``prompts`` and write the labels
    table (replacing earlier labels from the same prompt set). The model is the store's
    own unless ``encoder``/``model``/``adapter`` say otherwise, and must match it."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    name, classes, vectors, scale, bias = class_prototypes(store, prompts, encoder, model, adapter, device, "classification")
    summary = ClassifySummary(prompts=name, classes=classes)

    def batches():
        for batch in store.scan(["id", "vector"], batch_size=batch_size):
            probs = probabilities(np.stack(batch.column("vector").to_numpy(zero_copy_only=False)), vectors, scale, bias)
            rows = label_rows(batch.column("id").to_pylist(), probs, classes, name)
            for row in rows:
                summary.counts[row["label"]] = summary.counts.get(row["label"], 0) + 1
            yield rows

    summary.labelled = store.replace_labels(name, batches())
    return summary


def labels_of(store: Store, ids, prompts: str = "fr") -> dict[str, dict]:
    """The stored labels of ``ids`` for a prompt set: ``{id: {label, score, probabilities}}``."""
    from .store import in_list, quote

    if not ids or not store.has(LABELS):
        return {}
    rows = store.rows_where(f"{in_list('id', ids)} AND prompts = {quote(prompts)}", ["id", "label", "score", "probabilities"], LABELS)
    return {r["id"]: {**r, "probabilities": json.loads(r["probabilities"])} for r in rows}
