"""Embeddings on the tiny SigLIP: shapes, batching, the dtype rule, the disk cache, bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_siglip import load_tiny, toy_captions, toy_images

from radioalign.embed import embed_images, embed_texts, resolve_dtype
from radioalign.study.bundles import BUNDLE_KEYS, load_bundle, save_bundle
from radioalign.model import apply_lora


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    return toy_images(7)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_image_embeddings_are_float32_unnormalised_and_batch_independent(tiny, images):
    model, _ = tiny
    a = embed_images(model, images, batch_size=3, dtype="float32", progress=False)
    b = embed_images(model, images, batch_size=7, dtype="float32", progress=False)
    assert a.dtype == np.float32 and a.shape == (7, model.config.vision_config.hidden_size)
    assert not np.allclose(np.linalg.norm(a, axis=1), 1.0), "embeddings are returned unnormalised"
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert len(np.unique(a.round(4), axis=0)) == 7, "distinct images give distinct embeddings"
    c = embed_images(model, images, preprocessing="siglip", dtype="float32", progress=False)
    assert not np.allclose(a, c), "[0, 1] and [-1, 1] inputs differ"


def test_text_embeddings_shape_and_order(tiny):
    model, processor = tiny
    texts = toy_captions(5)
    all_ = embed_texts(model, processor, texts, batch_size=2, dtype="float32", progress=False)
    assert all_.dtype == np.float32 and all_.shape == (5, model.config.text_config.projection_size)
    one = embed_texts(model, processor, texts[3:4], dtype="float32", progress=False)
    np.testing.assert_allclose(all_[3:4], one, rtol=1e-4, atol=1e-5)


def test_auto_dtype_follows_the_hardware(monkeypatch):
    import radioalign.embed as embed_module

    def cpu_probe(cpuinfo: str | None, torch_probe: bool) -> bool:
        """The CPU probe on a machine with this /proc/cpuinfo (None: none, as on macOS)
        and this answer from PyTorch's own probe."""

        class FakePath:
            def __init__(self, *_):
                pass

            def read_text(self):
                if cpuinfo is None:
                    raise OSError("no /proc/cpuinfo")
                return cpuinfo

        monkeypatch.setattr(embed_module, "Path", FakePath)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: torch_probe, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        embed_module._cpu_has_fast_bf16.cache_clear()
        try:
            return embed_module._cpu_has_fast_bf16()
        finally:
            embed_module._cpu_has_fast_bf16.cache_clear()

    assert cpu_probe("flags\t: fpu sse2 avx2 avx512f avx512_bf16", torch_probe=False)
    assert cpu_probe("flags\t: fpu sse2 avx2 amx_bf16 amx_tile", torch_probe=False)
    assert not cpu_probe("flags\t: fpu sse2 avx2 avx512f", torch_probe=False), "AVX-512 without BF16 emulates it"
    assert cpu_probe(None, torch_probe=True) and not cpu_probe(None, torch_probe=False)

    # "auto": bfloat16 exactly where the device runs it natively, float32 elsewhere.
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(embed_module, "_cpu_has_fast_bf16", lambda native=native: native)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, native=native, **k: native)
        assert resolve_dtype("auto", "cpu") == expected
        assert resolve_dtype("auto", torch.device("cuda", 0)) == expected
        assert resolve_dtype("auto", "mps") == torch.float32, "MPS and others: float32"
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16 and resolve_dtype(torch.float16) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8")


def test_bfloat16_agrees_with_float32(tiny, images):
    model, processor = tiny
    for run in (
        lambda dt: embed_images(model, images, dtype=dt, progress=False),
        lambda dt: embed_texts(model, processor, toy_captions(6), dtype=dt, progress=False),
    ):
        full, half, auto = run("float32"), run("bfloat16"), run("auto")
        assert _cosine(full, half).min() >= 0.999
        assert _cosine(full, auto).min() >= 0.999
        assert not np.array_equal(full, half), "bfloat16 really ran"


class _Counter:
    """Wraps a model method and counts the calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_cache_second_call_makes_no_model_call(tiny_siglip_dir, images, tmp_path, monkeypatch):
    model, processor = load_tiny(tiny_siglip_dir)
    counter_img = _Counter(model.get_image_features)
    counter_txt = _Counter(model.get_text_features)
    monkeypatch.setattr(model, "get_image_features", counter_img)
    monkeypatch.setattr(model, "get_text_features", counter_txt)
    texts = toy_captions(4)

    first = embed_images(model, images, batch_size=4, dtype="float32", cache_dir=tmp_path, progress=False)
    t_first = embed_texts(model, processor, texts, dtype="float32", cache_dir=tmp_path, progress=False)
    calls = (counter_img.calls, counter_txt.calls)
    assert calls == (2, 1)
    again = embed_images(model, images, batch_size=4, dtype="float32", cache_dir=tmp_path, progress=False)
    t_again = embed_texts(model, processor, texts, dtype="float32", cache_dir=tmp_path, progress=False)
    assert (counter_img.calls, counter_txt.calls) == calls, "a cached result makes no model call"
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(t_first, t_again)

    # Anything that changes the result changes the key.
    embed_images(model, images, preprocessing="siglip", dtype="float32", cache_dir=tmp_path, progress=False)
    assert counter_img.calls == 3
    embed_images(model, images[:-1], dtype="float32", cache_dir=tmp_path, progress=False)
    assert counter_img.calls == 4
    embed_texts(model, processor, texts[::-1], dtype="float32", cache_dir=tmp_path, progress=False)
    assert counter_txt.calls == 2
    peft_model = apply_lora(model, scope="vision")
    with torch.no_grad():  # a "trained" adapter: LoRA B starts at zero, make it not
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    changed = embed_images(peft_model, images, batch_size=7, dtype="float32", cache_dir=tmp_path, progress=False)
    assert counter_img.calls == 5, "new adapter weights miss the cache"
    assert not np.allclose(changed, first)


def test_bad_inputs_are_rejected(tiny, images):
    model, processor = tiny
    with pytest.raises(ValueError, match="uint8"):
        embed_images(model, images.astype(np.float32))
    with pytest.raises(ValueError, match="preprocessing"):
        embed_images(model, images, preprocessing="imagenet")
    with pytest.raises(TypeError):
        embed_texts(model, processor, "one caption")


def _bundle(rng, n_train=5, n_test=3, d=4):
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"image_{split}"] = rng.normal(size=(n, d))
        for prompt in ("curated", "control"):
            arrays[f"text_{prompt}_{split}"] = rng.normal(size=(n, d))
        arrays[f"labels_{split}"] = rng.integers(0, 2, n)
        arrays[f"names_{split}"] = [f"src{split}{i}" for i in range(n)]
    return arrays


def test_bundle_round_trip(tmp_path):
    arrays = _bundle(np.random.default_rng(0))
    path = save_bundle(tmp_path / "embeddings" / "frozen.npz", profile="smoke", **arrays)
    assert (tmp_path / "embeddings" / "frozen.npz.stamp.json").is_file()
    loaded = load_bundle(path)
    assert set(loaded) == set(BUNDLE_KEYS)
    assert loaded["image_train"].dtype == np.float32 and loaded["labels_test"].dtype == np.int64
    np.testing.assert_array_equal(loaded["text_control_test"], arrays["text_control_test"].astype(np.float32))
    assert list(loaded["names_train"]) == arrays["names_train"]


def test_bundle_rejects_broken_contents(tmp_path):
    rng = np.random.default_rng(1)
    arrays = _bundle(rng)
    with pytest.raises(ValueError, match="lacks"):
        save_bundle(tmp_path / "a.npz", **{k: v for k, v in arrays.items() if k != "text_control_test"})
    arrays["labels_train"] = arrays["labels_train"][:-1]
    with pytest.raises(ValueError, match="rows"):
        save_bundle(tmp_path / "b.npz", **arrays)
    arrays = _bundle(rng)
    arrays["image_test"][0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        save_bundle(tmp_path / "c.npz", **arrays)


def test_benchmark_pieces_run_on_the_tiny_model(tiny_siglip_dir):
    # (no timing asserted: a smoke test that `python -m radioalign.bench` can run its steps)
    from radioalign.tools.bench import bench_epoch, bench_images, bench_texts, bench_train_step, matmul_peak, render_epochs

    model, processor = load_tiny(tiny_siglip_dir)
    peak = matmul_peak(torch.float32, torch.device("cpu"), max_n=256, budget_s=0.05)
    assert peak["n"] == 256 and peak["gflops"] > 0
    images = bench_images(model, n=3, batch_size=2, dtype="float32")
    texts = bench_texts(model, processor, n=3, batch_size=2, dtype="float32")
    assert images["items"] == texts["items"] == 3 and images["per_s"] > 0 and texts["gflops"] > 0
    result, plain = bench_train_step(model, "full", batch=2, steps=1, device=torch.device("cpu"))
    assert result["seconds_per_step"] > 0 and result["precision"] == "no"
    assert not any("lora_" in n for n, _ in plain.named_parameters()), "adapters removed for the next scope"
    epochs = []
    for scope in ("text", "full"):
        result, plain = bench_epoch(plain, scope, batch=2, batches=1, device=torch.device("cpu"))
        assert not any("lora_" in n for n, _ in plain.named_parameters())
        epochs.append(result)
    text, full = epochs
    assert text["frozen_tower"] == "vision" and text["on"]["epoch_seconds"] > 0 and text["on"]["cache_seconds"] > 0
    assert full["frozen_tower"] is None and "on" not in full and full["off"]["epoch_seconds"] > 0
    table = render_epochs(epochs)
    assert any(line.split()[0] == "text" for line in table) and any("n/a" in line for line in table)


def test_study_captions_come_in_dataset_order(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from radioalign.captions.store import CaptionStore, make_record
    from radioalign.study.inputs import study_captions
    from radioalign.study.layout import captions_store
    from radioalign.study.profiles import get_profile

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    profile = get_profile("smoke")
    train = SimpleNamespace(names=["a", "b", "c"])
    test = SimpleNamespace(names=["d"])
    for prompt in profile.prompts:
        for split, names in (("train", ["c", "a", "b"]), ("test", ["d"])):
            store = CaptionStore(captions_store(tmp_path / "smoke", profile.caption_source, prompt, split))
            store.append(*[make_record(n, caption=f"{prompt} {n}", backend="catalog", model=None,
                                       prompt=prompt, prompt_sha256="x") for n in names])  # fmt: skip
    texts = study_captions(profile, train, test)
    assert texts["curated"]["train"] == ["curated a", "curated b", "curated c"]
    assert texts["control"]["test"] == ["control d"]
    with pytest.raises(KeyError, match="1 of 2 test items"):
        study_captions(profile, train, SimpleNamespace(names=["d", "e"]))


def test_study_captions_adds_the_catalog_condition_when_stored(tmp_path, monkeypatch):
    """Notebook 01 stores catalogue captions beside the main source; the study picks them up
    as a further caption set (bundle keys text_catalog_*), and leaves it out when incomplete."""
    from radioalign.captions import caption_images
    from radioalign.data import images_by_name, load_mirabest
    from radioalign.study.inputs import study_captions
    from radioalign.study.layout import captions_store, results_dir
    from radioalign.study.profiles import get_profile

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("RADIOALIGN_DATA_DIR", str(tmp_path / "data"))
    P = get_profile("smoke", caption_source="main", extra_captions=("catalog",))
    train = load_mirabest("train", version="synthetic").subset(range(6))
    test = load_mirabest("test", version="synthetic").subset(range(4))
    for split, ds in (("train", train), ("test", test)):
        for prompt in P.prompts:  # the "main" source's stores, made here by the catalogue backend
            caption_images(images_by_name(ds), prompt, "catalog", captions_store(results_dir(P), "main", prompt, split), progress=False)
    assert sorted(study_captions(P, train, test)) == ["control", "curated"]

    caption_images(images_by_name(train), "curated", "catalog", captions_store(results_dir(P), "catalog", "curated", "train"), progress=False)
    assert "catalog" not in study_captions(P, train, test), "test split not captioned yet: left out"
    caption_images(images_by_name(test), "curated", "catalog", captions_store(results_dir(P), "catalog", "curated", "test"), progress=False)
    texts = study_captions(P, train, test)
    assert sorted(texts) == ["catalog", "control", "curated"]
    assert texts["catalog"]["test"] == texts["curated"]["test"]  # same backend and prompt here
    assert len(texts["catalog"]["train"]) == len(train)
