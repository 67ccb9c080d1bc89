"""Zero-shot classification of radioalign.survey with the tiny SigLIP: probabilities are
SigLIP's own sigmoid, prompt ensembling, YAML prompt sets, labels written to the store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("lancedb")
pytest.importorskip("astropy")

from radioalign.model import preprocess, text_max_length, tokenize  # noqa: E402
from radioalign.survey import zeroshot  # noqa: E402
from radioalign.survey.encoder import load_encoder  # noqa: E402
from radioalign.survey.store import LABELS, Store  # noqa: E402

from tiny_siglip import toy_images  # noqa: E402


@pytest.fixture(scope="module")
def encoder(tiny_siglip_dir, one_thread):
    return load_encoder(tiny_siglip_dir, device="cpu", dtype="float32")


def test_probabilities_are_siglips_own_sigmoid(encoder):
    """With one prompt per class the ensemble is that prompt, so our probabilities must equal
    sigmoid(logits_per_image) of SiglipModel.forward on the same image and texts."""
    images = toy_images(3, seed=4)
    prompts = {"a": ["two extended lobes with hotspots"], "b": ["a faint diffuse plume"], "c": ["a compact core"]}
    classes, class_vecs = zeroshot.class_vectors(encoder, prompts)
    scale, bias = encoder.logit_scale_bias()
    ours = zeroshot.probabilities(encoder.images(images), class_vecs, scale, bias)
    model = encoder.model
    size = model.config.vision_config.image_size
    ids = tokenize(encoder.processor, [p[0] for p in prompts.values()], text_max_length(model))
    with torch.inference_mode():
        out = model(input_ids=ids, pixel_values=preprocess(images, mode=encoder.preprocessing, size=size))
    reference = torch.sigmoid(out.logits_per_image).numpy()
    assert classes == ["a", "b", "c"]
    assert np.allclose(ours, reference, atol=1e-5)


def test_prompt_ensemble_is_the_normalised_mean(encoder):
    prompts = {"x": ["a bright compact core", "an unresolved point-like source", "a compact source"], "y": ["a jet"]}
    _, vecs = zeroshot.class_vectors(encoder, prompts)
    each = encoder.texts(prompts["x"])
    mean = each.mean(axis=0)
    assert np.allclose(vecs[0], mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)


def test_builtin_fr_prompts_use_the_radio_astronomers_words():
    name, prompts = zeroshot.load_prompts("fr")
    assert name == "fr" and list(prompts) == ["FR-I", "FR-II"]
    assert any("edge-darkened" in p and "core" in p for p in prompts["FR-I"])
    assert any("edge-brightened" in p and "hotspots" in p for p in prompts["FR-II"])


def test_yaml_prompt_files(tmp_path):
    good = tmp_path / "bent.yaml"
    good.write_text("bent: [a wide-angle tail radio galaxy, a bent jet]\nstraight: a straight double source\n")
    name, prompts = zeroshot.load_prompts(good)
    assert name == "bent" and prompts == {"bent": ["a wide-angle tail radio galaxy", "a bent jet"], "straight": ["a straight double source"]}
    for text in ("only: [one class]\n", "a: []\nb: [x]\n", "- a list\n- not a mapping\n", "a: [1, 2]\nb: [x]\n"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError):
            zeroshot.load_prompts(bad)
    with pytest.raises(FileNotFoundError):
        zeroshot.load_prompts(tmp_path / "missing.yaml")


def test_classify_writes_one_label_per_source(tmp_path, encoder):
    from radioalign.survey.ingest import Item, Task, embed_items, write_batch
    from radioalign.survey.images import png_bytes
    from radioalign.survey.ingest import prepare_store

    store = Store(tmp_path / "store")
    prepare_store(store, encoder)
    images = toy_images(6, seed=5)
    items = [Item(Task(key=f"s{i}.png", name=f"s{i}", source=f"s{i}.png", kind="file"), f"id{i}", im, png_bytes(im), None,
                  None, "test")
             for i, im in enumerate(images)]  # fmt: skip
    write_batch(store, encoder, items, embed_items(encoder, items), [])
    summary = zeroshot.classify(store, "fr", encoder=encoder)
    assert summary.labelled == 6 and sum(summary.counts.values()) == 6
    rows = store.table(LABELS).to_arrow().to_pylist()
    assert sorted(r["id"] for r in rows) == [f"id{i}" for i in range(6)]
    for row in rows:
        probs = json.loads(row["probabilities"])
        assert set(probs) == {"FR-I", "FR-II"} and all(0.0 < p < 1.0 for p in probs.values())
        assert row["label"] == max(probs, key=probs.get) and row["score"] == pytest.approx(probs[row["label"]], abs=1e-6)
    again = zeroshot.classify(store, "fr", encoder=encoder)  # replaces, never duplicates
    assert again.labelled == 6 and store.count(LABELS) == 6
    assert set(zeroshot.labels_of(store, ["id0", "id3"])) == {"id0", "id3"}
