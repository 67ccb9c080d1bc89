"""Loading (the real path, on a tiny locally built SigLIP), text conventions, LoRA placement
and the paper's trainable fractions on the base architecture."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny_siglip import load_tiny, tiny_folder

from radioalign.model import (
    ModelNotAvailableError,
    apply_lora,
    check_text_processing,
    load_siglip,
    resolve_model_path,
    text_features,
    tokenize,
    trainable_fraction,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_model_loads_through_load_siglip(tiny):
    from transformers import SiglipModel

    model, processor = tiny
    assert type(model) is SiglipModel and not model.training
    vc, tc = model.config.vision_config, model.config.text_config
    assert (vc.hidden_size, vc.num_hidden_layers, vc.image_size, vc.patch_size) == (32, 2, 32, 8)
    assert (tc.hidden_size, tc.num_hidden_layers, tc.max_position_embeddings) == (32, 2, 64)
    assert tc.vocab_size == len(processor.tokenizer)
    assert processor.tokenizer.padding_side == "right"


def test_tokenize_pads_right_to_max_length_without_mask(tiny):
    model, processor = tiny
    tok = processor.tokenizer
    ids = tokenize(processor, ["Two Lobes", "a bright core with two extended lobes " * 20], 64)
    assert ids.shape == (2, 64)
    n = int((ids[0] != tok.pad_token_id).sum())
    assert n >= 2 and (ids[0, n:] == tok.pad_token_id).all() and (ids[0, :n] != tok.pad_token_id).all()
    assert (ids[1] != tok.pad_token_id).all(), "long captions are truncated to the full length"
    # The tiny tokenizer lower-cases by itself: case must not matter.
    assert torch.equal(tokenize(processor, ["two lobes"], 64), ids[:1])


def test_text_embedding_does_not_depend_on_batch_mates(tiny):
    # padding to max_length (not to the longest caption) keeps each caption's input fixed
    model, processor = tiny
    short = tokenize(processor, ["a faint plume"], 64)
    both = tokenize(processor, ["a faint plume", "two extended lobes with hotspots to the north and south"], 64)
    with torch.no_grad():
        alone, together = text_features(model, short), text_features(model, both)
    torch.testing.assert_close(alone[0], together[0], rtol=1e-5, atol=1e-6)


def test_left_padding_is_switched_to_right(tiny):
    model, processor = tiny
    processor.tokenizer.padding_side = "left"
    with pytest.warns(UserWarning, match="padding_side"):
        check_text_processing(model, processor)
    assert processor.tokenizer.padding_side == "right"


def test_tiny_name_builds_once_in_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tmp_path))
    model, _ = load_siglip("tiny", device="cpu")
    config = tmp_path / "tiny-siglip" / "config.json"
    assert config.is_file() and model.config.vision_config.image_size == 32
    stamp = config.stat().st_mtime_ns
    load_siglip("tiny", device="cpu")
    assert config.stat().st_mtime_ns == stamp, "the tiny model is built once, then only loaded"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-siglip"], "no temporary build folders left"


def test_hub_name_resolves_to_prefetched_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tmp_path))
    shutil.copytree(tiny_folder(tmp_path / "build"), tmp_path / "siglip2-base-patch16-224")
    path = resolve_model_path("google/siglip2-base-patch16-224")
    assert path == str(tmp_path / "siglip2-base-patch16-224")
    model, _ = load_siglip("google/siglip2-base-patch16-224", device="cpu")
    assert model.config.vision_config.hidden_size == 32


def test_offline_without_copy_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelNotAvailableError) as err:
        load_siglip("radioalign-tests/absent-siglip", device="cpu")
    message = str(err.value)
    assert "huggingface-cli download radioalign-tests/absent-siglip" in message
    assert str(tmp_path / "absent-siglip") in message and "make download" in message


@pytest.mark.parametrize("scope", ["vision", "text", "full"])
def test_lora_scope_places_adapters_on_its_towers(tmp_path, scope):
    model, _ = load_tiny(tiny_folder(tmp_path))
    peft_model = apply_lora(model, scope=scope)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable), "only LoRA matrices train"
    vision = any(".vision_model." in n for n in trainable)
    text = any(".text_model." in n for n in trainable)
    assert (vision, text) == {"vision": (True, False), "text": (False, True), "full": (True, True)}[scope]
    if scope != "text":  # the vision pooling head's MLP is adapted too (the authors wrapped vision_model)
        assert any("vision_model.head.mlp.fc1.lora_A" in n for n in trainable)
    # 2 layers x (q, k, v, fc1, fc2) per tower (+ fc1, fc2 of the vision head), A and B each
    per_tower = {"vision": 2 * 5 + 2, "text": 2 * 5}
    expected = sum(per_tower[t] for t in (["vision", "text"] if scope == "full" else [scope]))
    assert len(trainable) == 2 * expected


def _base_on_meta():
    # The paper's architecture (SigLIP 2 base, 256k Gemma vocabulary, ~375M parameters)
    # on the meta device: shapes without memory or initialisation time.
    from transformers import SiglipConfig, SiglipModel

    with torch.device("meta"):
        return SiglipModel(SiglipConfig(text_config=dict(vocab_size=256000)))


@pytest.mark.parametrize(("scope", "percent"), [("vision", 0.165), ("text", 0.157), ("full", 0.322)])
def test_trainable_fraction_matches_paper(scope, percent):
    model = _base_on_meta()
    assert round(trainable_fraction(apply_lora(model, scope=scope)), 3) == percent


def test_rank_eight_doubles_the_adapters():
    counts = {}
    for r in (4, 8):
        model = apply_lora(_base_on_meta(), scope="full", r=r)
        counts[r] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts[8] == 2 * counts[4]


def test_bad_arguments_are_rejected(tiny):
    model, processor = tiny
    with pytest.raises(ValueError, match="unknown scope"):
        apply_lora(model, scope="both")
    with pytest.raises(TypeError):
        tokenize(processor, "one string", 64)
