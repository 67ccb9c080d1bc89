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
    (named after the file's stem)."""
    if str(spec) in BUILTIN:
        return str(spec), BUILTIN[str(spec)]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompt set {spec!r} is neither built in ({', '.join(BUILTIN)}) nor a YAML file")
    import yaml

    return path.stem, parse_prompts(yaml.safe_load(path.read_text()), str(path))


def class_vectors(encoder, prompts: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    """Classes and their ensembled, L2-normalised text vectors ``(C, D)``."""
    classes = list(prompts)
    vectors = []
    for name in classes:
        mean = encoder.texts(prompts[name]).mean(axis=0)
        vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return classes, np.stack(vectors).astype(np.float32)


def probabilities(image_vectors: np.ndarray, class_vecs: np.ndarray, scale: float, bias: float) -> np.ndarray:
    """SigLIP's sigmoid probabilities ``(N, C)`` of normalised image vectors for each class."""
    logits = scale * (np.asarray(image_vectors, np.float32) @ class_vecs.T) + bias
    return 1.0 / (1.0 + np.exp(-logits))


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
    from .encoder import encoder_for_store

    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    name, prompt_set = load_prompts(prompts)
    encoder = encoder or encoder_for_store(store.meta(), model, adapter, device=device)
    store.check_model(encoder.fingerprint, "classification")
    classes, vectors = class_vectors(encoder, prompt_set)
    scale, bias = encoder.logit_scale_bias()
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
