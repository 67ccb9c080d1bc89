"""The sigmoid loss, the LoRA training loop, adapter round trips and resuming, on the tiny SigLIP."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_siglip import load_tiny, toy_captions, toy_images

from radioalign.embed import embed_images, embed_texts
from radioalign.study.bundles import load_bundle
from radioalign.study.runs import run_one
from radioalign.model import load_adapter
from radioalign.train import FinetuneConfig, batch_loss, finetune, sigmoid_loss, split_pairs

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

    # A validation "pair" that training treats as a negative (image 0 with caption 5): every
    # epoch lowers its logit, so its loss as a positive rises and the best epoch is the first.
    val_images, val_texts = images[:1], [texts[5]]
    kwargs = _settings(epochs=3, lr_schedule="constant")  # constant: a shorter run takes the same steps

    def run(name, **extra):
        return finetune(model, processor, images, texts, val_images, val_texts, scope="full",
                        output_dir=tmp_path / name, **{**kwargs, **extra})  # fmt: skip

    best, last = run("best", restore_best=True), run("last")
    losses = [h["val_loss"] for h in best.history]
    assert best.history == last.history and best.epochs_run == 3
    assert best.best_epoch == 1 + int(np.argmin(losses)) and best.best_epoch < best.epochs_run, losses
    short = run("short", epochs=best.best_epoch)
    a, b, c = _weights(best), _weights(short), _weights(last)
    assert all(torch.equal(a[k], b[k]) for k in a), "restore_best keeps the best epoch's adapter"
    assert not all(torch.equal(a[k], c[k]) for k in a), "the best epoch's adapter is not the last one's"
    saved, stopped_there = (load_file(tmp_path / run / "adapter" / "adapter_model.safetensors") for run in ("best", "short"))
    assert saved.keys() == stopped_there.keys() and all(torch.equal(saved[k], stopped_there[k]) for k in saved)


def _count_tower_items(monkeypatch, tower: str) -> list[int]:
    """Count the items that pass through ``tower`` ("vision" or "text") from now on."""
    from transformers.models.siglip import modeling_siglip

    # every pass through a tower starts at its embeddings
    cls = modeling_siglip.SiglipVisionEmbeddings if tower == "vision" else modeling_siglip.SiglipTextEmbeddings
    forward, seen = cls.forward, []

    def counted(self, *args, **kwargs):
        first = args[0] if args else kwargs.get("pixel_values", kwargs.get("input_ids"))
        seen.append(len(first))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", counted)
    return seen


@pytest.mark.parametrize("scope, frozen", [("text", "vision"), ("vision", "text")])
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_frozen_tower_cache_leaves_the_run_unchanged(tiny, tmp_path, monkeypatch, scope, frozen, precision):
    model, processor = tiny
    # 32 pairs: the authors' split holds out 4, so every batch of 4 is full and the cached
    # features come from batches of the same size as the live ones: bit-for-bit equality
    images, texts = toy_images(32, seed=4), toy_captions(32)
    epochs = 2
    runs, seen, counter = {}, {}, _count_tower_items(monkeypatch, frozen)
    for cache in (False, True):
        counter.clear()
        runs[cache] = finetune(model, processor, images, texts, scope=scope, output_dir=tmp_path / str(cache),
                               cache_frozen_tower=cache, **_settings(epochs=epochs, mixed_precision=precision))  # fmt: skip
        seen[cache] = sum(counter)
    off, on = runs[False], runs[True]
    assert on.history == off.history
    a, b = _weights(off), _weights(on)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the saving: the frozen tower saw each of the 32 items once, not once per epoch
    assert seen == {True: 32, False: 32 * epochs}
    recorded = {c: json.loads((tmp_path / str(c) / "config.json").read_text())["frozen_tower_cached"] for c in runs}
    assert recorded == {False: None, True: frozen}


def _authors_split(n: int, fraction: float = 0.15, seed: int = 42) -> tuple[list[int], list[int]]:
    """The authors' ``split_train_val``: ``random_split`` of the dataset with a seeded generator."""
    n_val = int(n * fraction)
    train, val = torch.utils.data.random_split(range(n), [n - n_val, n_val], generator=torch.Generator().manual_seed(seed))
    return list(train.indices), list(val.indices)


@pytest.mark.parametrize("n", [N, 729])
def test_finetune_uses_the_authors_random_split_order(tiny, tmp_path, monkeypatch, n):
    import radioalign.train.loop as train_module  # where the epoch loop looks these up

    model, processor = tiny
    # tiny images that carry their own index in two pixels, so the order used can be read back
    images = np.zeros((n, 8, 8), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    texts = toy_captions(n)
    used = {}

    def recording(name, fn):
        def wrapper(model, pairs, *args, **kwargs):
            used[name] = pairs.images[:, 0, 0].astype(int) * 256 + pairs.images[:, 0, 1]
            return fn(model, pairs, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(train_module, "train_one_epoch", recording("train", train_module.train_one_epoch))
    monkeypatch.setattr(train_module, "evaluate_loss", recording("val", train_module.evaluate_loss))
    result = finetune(model, processor, images, texts, scope="text", output_dir=tmp_path,
                      **_settings(epochs=1, batch_size=64))  # fmt: skip
    train_idx, val_idx = _authors_split(n)
    assert used["val"].tolist() == val_idx and used["train"].tolist() == train_idx  # order-exact
    assert result.val_indices.tolist() == val_idx
    assert json.loads((tmp_path / "config.json").read_text())["val_indices"] == val_idx
    split = split_pairs(images, texts, None, None, FinetuneConfig(scope="text"))
    assert split.val_texts == [texts[i] for i in val_idx] and split.train_texts == [texts[i] for i in train_idx]


@pytest.mark.parametrize(
    "bad",
    [dict(preprocessing="imagenet"), dict(scope="both"), dict(mixed_precision="fp16"), dict(batch_size=0),
     dict(val_fraction=0.01)],  # fp16 needs CUDA; 1 % of 16 items is no validation item
)  # fmt: skip
def test_bad_settings_raise_before_anything_is_written(tiny, pairs, tmp_path, bad):
    model, processor = tiny
    images, texts = pairs
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        finetune(model, processor, images, texts, output_dir=out, **{**_settings(scope="text"), **bad})
    with pytest.raises(ValueError):
        finetune(model, processor, images, texts, output_dir=out, config=FinetuneConfig(scope="text"), **bad)
    assert not out.exists()


def test_mismatched_pairs_raise_before_anything_is_written(tiny, pairs, tmp_path):
    model, processor = tiny
    images, texts = pairs
    out = tmp_path / "run"
    for args in ((images, texts[:-1]), (images, texts, images[:2], None), (images, texts, images[:2], texts[:3])):
        with pytest.raises(ValueError):
            finetune(model, processor, *args, scope="text", output_dir=out, **_settings())
    assert not out.exists()


def test_run_one_writes_run_folder_and_bundles(tiny_siglip_dir, tmp_path, monkeypatch):
    from radioalign.study.layout import embeddings_file, results_dir, run_dir
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
    results = results_dir(profile)
    assert result.completed and (run_dir(results, "vision-control") / "adapter").is_dir()
    final = load_bundle(embeddings_file(results, "vision-control"))
    stage = load_bundle(embeddings_file(results, "vision-control_epoch1"))
    assert final["image_train"].shape == (12, 32) and final["text_curated_test"].shape == (4, 32)
    assert list(final["names_test"]) == test.names and final["labels_train"].dtype == np.int64
    assert set(stage) == set(final)
