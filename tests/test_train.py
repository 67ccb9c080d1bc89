"""The sigmoid loss, the LoRA training loop, adapter round trips and resuming, on the tiny SigLIP."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_siglip import load_tiny, toy_captions, toy_images

from radioalign.embed import embed_images, embed_texts
from radioalign.study.bundles import load_bundle
from radioalign.study.runs import run_one
from radioalign.model import load_adapter
from radioalign.train import batch_loss, finetune, sigmoid_loss

N = 16


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pairs():
    return toy_images(N, seed=3), toy_captions(N)


def _settings(**overrides):
    base = dict(batch_size=4, grad_accum=2, lr=5e-3, epochs=3, patience=0, progress=False, mixed_precision="no")
    return {**base, **overrides}


def test_sigmoid_loss_matches_explicit_formula():
    z = torch.randn(5, 5, dtype=torch.float64) * 3
    total = 0.0
    for i in range(5):
        for j in range(5):
            p = 1 / (1 + math.exp(-z[i, j].item()))
            total += -math.log(p) if i == j else -math.log(1 - p)
    assert sigmoid_loss(z).item() == pytest.approx(total / 25, rel=1e-6)
    with pytest.raises(ValueError, match="square"):
        sigmoid_loss(torch.zeros(2, 3))


def test_batch_loss_is_siglip_loss_over_batch_size(tiny, pairs):
    # transformers' own SigLIP loss sums over texts and averages over images: N times ours.
    from radioalign.model import preprocess

    model, processor = tiny
    from radioalign.model import tokenize

    images, texts = pairs
    pixels = preprocess(images[:6], mode="paper", size=32)
    ids = tokenize(processor, texts[:6], 64)
    with torch.no_grad():
        ours = batch_loss(model, pixels, ids)
        theirs = model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
    assert ours.item() == pytest.approx(theirs.item() / 6, rel=1e-5)


def test_training_lowers_the_loss_and_keeps_the_base_frozen(tiny, pairs, tmp_path):
    model, processor = tiny
    images, texts = pairs
    before = {n: p.clone() for n, p in model.named_parameters()}
    result = finetune(
        model, processor, images, texts, images, texts, scope="full", output_dir=tmp_path, **_settings(epochs=4)
    )
    losses = [h["val_loss"] for h in result.history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # the caller's model is untouched; the run's base weights and logit scale/bias are frozen
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    trained = result.model.get_base_model()
    assert not trained.logit_scale.requires_grad and torch.equal(trained.logit_scale, model.logit_scale)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved == result.history and set(saved[0]) == {"epoch", "train_loss", "val_loss"}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["scope"] == "full" and config["r"] == 4 and "commit" in config["stamp"]


def test_adapter_save_and_load_reproduce_embeddings(tiny_siglip_dir, pairs, tmp_path):
    images, texts = pairs
    model, processor = load_tiny(tiny_siglip_dir)
    result = finetune(
        model, processor, images, texts, images[:8], texts[:8], scope="full", output_dir=tmp_path,
        eval_sets={"image": images[:5], "text": texts[:5]}, **_settings(epochs=2),
    )  # fmt: skip
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    fresh, _ = load_tiny(tiny_siglip_dir)
    reloaded = load_adapter(fresh, tmp_path / "adapter")  # plain peft PeftModel.from_pretrained
    final = result.embeddings["final"]
    np.testing.assert_array_equal(embed_images(reloaded, images[:5], dtype="float32", progress=False), final["image"])
    np.testing.assert_array_equal(embed_texts(reloaded, processor, texts[:5], dtype="float32", progress=False), final["text"])
    with reloaded.disable_adapter():
        frozen = embed_images(reloaded, images[:5], dtype="float32", progress=False)
    assert not np.allclose(frozen, final["image"]), "the adapter changed the embeddings"


def _weights(result):
    return {n: p.detach().clone() for n, p in result.model.named_parameters() if p.requires_grad}


def test_interrupted_run_resumes_to_the_same_weights(tiny, pairs, tmp_path):
    model, processor = tiny
    images, texts = pairs
    settings = _settings(epochs=3, eval_epochs=(1,), eval_sets={"image_test": images[:4]})
    whole = finetune(model, processor, images, texts, scope="vision", output_dir=tmp_path / "a", **settings)

    part = finetune(
        model, processor, images, texts, scope="vision", output_dir=tmp_path / "b", max_epochs_this_call=1, **settings
    )
    assert not part.completed and part.epochs_run == 1 and not (tmp_path / "b" / "adapter").exists()
    rest = finetune(model, processor, images, texts, scope="vision", output_dir=tmp_path / "b", **settings)
    assert rest.completed and rest.history == whole.history
    a, b = _weights(whole), _weights(rest)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(rest.embeddings["epoch1"]["image_test"], whole.embeddings["epoch1"]["image_test"])
    # the authors' protocol: without a validation set, 15 % of the pairs are held out (seed 42)
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert (config["n_train"], config["n_val"]) == (14, 2) and "validation_split" in config["val_source"]


def test_early_stopping_and_restore_best(tiny, pairs, tmp_path):
    model, processor = tiny
    images, texts = pairs
    # lr 0: the validation loss never improves after epoch 1, so patience 2 stops at epoch 3
    flat = finetune(model, processor, images, texts, images, texts, scope="text", output_dir=tmp_path / "flat",
                    **_settings(lr=0.0, epochs=10, patience=2))  # fmt: skip
    assert flat.stopped_early and flat.epochs_run == 3 and flat.best_epoch == 1

    # restore_best keeps the best epoch's adapter: with a constant learning rate that is
    # exactly the adapter of a run stopped at that epoch
    kwargs = _settings(lr=0.5, epochs=4, lr_schedule="constant")
    val_images, val_texts = toy_images(8, seed=5), toy_captions(8)[::-1]
    best = finetune(model, processor, images, texts, val_images, val_texts, scope="full",
                    output_dir=tmp_path / "best", restore_best=True, **kwargs)  # fmt: skip
    losses = [h["val_loss"] for h in best.history]
    assert best.best_epoch == 1 + int(np.argmin(losses))  # (epoch 3 of 4 on the machine this was written on)
    kwargs["epochs"] = best.best_epoch
    short = finetune(model, processor, images, texts, val_images, val_texts, scope="full",
                     output_dir=tmp_path / "short", **kwargs)  # fmt: skip
    a, b = _weights(best), _weights(short)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_one_writes_run_folder_and_bundles(tiny_siglip_dir, tmp_path, monkeypatch):
    from radioalign.study.layout import embeddings_file, run_dir
    from radioalign.study.profiles import get_profile

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    profile = get_profile("smoke", epochs=2, eval_epochs=(1,), batch_size=4)

    def split(n, seed):
        return SimpleNamespace(images=toy_images(n, seed), labels=np.arange(n) % 2, names=[f"s{seed}_{i}" for i in range(n)])

    train, test = split(12, 1), split(4, 2)
    texts = {
        prompt: {s: [f"{prompt} {c}" for c in toy_captions(len(ds.images))] for s, ds in (("train", train), ("test", test))}
        for prompt in ("curated", "control")
    }
    model, processor = load_tiny(tiny_siglip_dir)
    result = run_one(profile, "vision", "control", train=train, test=test, texts=texts,
                     model=model, processor=processor, progress=False)  # fmt: skip
    assert result.completed and (run_dir("smoke", "vision-control") / "adapter").is_dir()
    final = load_bundle(embeddings_file("smoke", "vision-control"))
    stage = load_bundle(embeddings_file("smoke", "vision-control_epoch1"))
    assert final["image_train"].shape == (12, 32) and final["text_curated_test"].shape == (4, 32)
    assert list(final["names_test"]) == test.names and final["labels_train"].dtype == np.int64
    assert set(stage) == set(final)
