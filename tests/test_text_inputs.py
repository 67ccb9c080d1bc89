"""Text inputs pinned down: attention mask and padding side are explicit settings.

On the tiny model: a caption that fills every position is untouched by either setting
(nothing is padded, nothing is masked), while a short caption changes with both, since
the text tower pools the last position (padding on the right, the last word on the left)
and the mask changes what the real tokens attend to.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from radioalign.embed import embed_texts
from radioalign.model import text_max_length, text_processing, tokenize

pytestmark = pytest.mark.usefixtures("one_thread")


def _embed(tiny, texts, **kwargs):
    model, processor = tiny
    return embed_texts(model, processor, texts, dtype="float32", progress=False, **kwargs)


def _filling_caption(tiny) -> str:
    model, processor = tiny
    length = text_max_length(model)
    text = " ".join(["radio galaxy with two lobes"] * length)
    ids = tokenize(processor, [text], length)
    assert (ids != processor.tokenizer.pad_token_id).all(), "the caption fills every position"
    return text


def test_short_captions_change_with_the_mask_and_the_padding_side(tiny):
    short = ["a compact core", "two bright lobes with hotspots at the ends"]
    plain = _embed(tiny, short)
    masked = _embed(tiny, short, attention_mask=True)
    left = _embed(tiny, short, padding_side="left")
    assert not np.allclose(plain, masked, atol=1e-5)
    assert not np.allclose(plain, left, atol=1e-5)
    np.testing.assert_array_equal(plain, _embed(tiny, short, attention_mask=False, padding_side="right"))


def test_a_caption_that_fills_the_tower_is_untouched_by_either_setting(tiny):
    full = [_filling_caption(tiny)]
    plain = _embed(tiny, full)
    np.testing.assert_allclose(_embed(tiny, full, attention_mask=True), plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_embed(tiny, full, padding_side="left"), plain, rtol=1e-5, atol=1e-6)


def test_tokenize_pads_on_the_side_asked_and_restores_the_tokenizer(tiny):
    _, processor = tiny
    tok = processor.tokenizer
    before = tok.padding_side
    ids, mask = tokenize(processor, ["radio galaxy"], 8, padding_side="left", return_attention_mask=True)
    assert ids[0, 0] == tok.pad_token_id and ids[0, -1] != tok.pad_token_id
    assert mask[0].tolist() == [0] * int((mask[0] == 0).sum()) + [1] * int(mask[0].sum())
    assert tok.padding_side == before
    with pytest.raises(ValueError, match="padding_side"):
        tokenize(processor, ["x"], 8, padding_side="middle")


def test_text_processing_reports_what_the_processor_returns(tiny):
    info = text_processing(tiny[1])
    assert set(info) == {"tokenizer", "native_padding_side", "returns_attention_mask", "lowercase"}
    assert info["native_padding_side"] in ("left", "right") and isinstance(info["returns_attention_mask"], bool)


def test_d4_transforms_form_the_group_and_tta_is_their_mean(tiny):
    from radioalign.embed import D4_NAMES, d4_transform, embed_images

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 12, 12), dtype=np.uint8)
    views = [d4_transform(images, k) for k in range(8)]
    assert len({v.tobytes() for v in views}) == 8 == len(D4_NAMES), "eight distinct symmetries"
    np.testing.assert_array_equal(d4_transform(d4_transform(images, 1), 3), images)  # rot90 then rot270
    np.testing.assert_array_equal(d4_transform(d4_transform(images, 4), 4), images)  # a flip undoes itself
    model, _ = tiny
    each = [embed_images(model, v, dtype="float32", progress=False) for v in views]
    tta = embed_images(model, images, dtype="float32", tta="d4", progress=False)
    np.testing.assert_allclose(tta, np.mean(each, axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(embed_images(model, views[5], dtype="float32", tta="d4", progress=False), tta, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="tta"):
        embed_images(model, images, tta="d8")


def test_training_takes_the_authors_text_inputs_by_default(tiny, tmp_path):
    """Training passes the mask exactly when the processor returns one (the authors'
    ``model(**inputs)``); evaluation passes ids only. Switching either changes the run."""
    import json

    from radioalign.train import finetune
    from tiny_siglip import toy_captions, toy_images

    model, processor = tiny
    images, texts = toy_images(12, seed=1), toy_captions(12)
    common = dict(scope="text", epochs=1, batch_size=4, grad_accum=1, lr=1e-2, patience=0, progress=False,
                  mixed_precision="no", eval_sets={"text": texts[:4]})  # fmt: skip
    default = finetune(model, processor, images, texts, images[:4], texts[:4], output_dir=tmp_path / "a", **common)
    record = json.loads((tmp_path / "a" / "config.json").read_text())
    assert record["train_attention_mask_used"] == text_processing(processor)["returns_attention_mask"]
    assert record["eval_attention_mask"] is False and record["padding_side"] == "right"
    unmasked = finetune(model, processor, images, texts, images[:4], texts[:4], output_dir=tmp_path / "b",
                        train_attention_mask=False, **common)  # fmt: skip
    if record["train_attention_mask_used"]:
        assert default.history[0]["train_loss"] != unmasked.history[0]["train_loss"]
    evaluated = finetune(model, processor, images, texts, images[:4], texts[:4], output_dir=tmp_path / "c",
                         eval_attention_mask=True, **common)  # fmt: skip
    assert not np.allclose(default.embeddings["final"]["text"], evaluated.embeddings["final"]["text"], atol=1e-6)
    with pytest.raises(ValueError, match="padding_side"):
        finetune(model, processor, images, texts, output_dir=tmp_path / "d", **{**common, "padding_side": "up"})
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("scope", ["vision", "text", "full"])
def test_paper_profile_validation_loss_is_the_unmasked_loss(tiny, tmp_path, scope):
    """With the paper profile's settings the validation loss (what early stopping watches) is
    the loss from token ids alone, as the authors' ``prediction_step`` computed it, while
    training keeps the mask; ``eval_attention_mask=True`` gives the masked loss."""
    from dataclasses import replace

    import torch

    from radioalign.model import base_model, preprocess
    from radioalign.study.profiles import finetune_config, get_profile
    from radioalign.train import batch_loss, finetune
    from tiny_siglip import toy_captions, toy_images

    model, processor = tiny
    assert text_processing(processor)["returns_attention_mask"], "without a mask there is nothing to test"
    images, texts = toy_images(20, seed=2), toy_captions(20)
    config = replace(finetune_config(get_profile("paper"), scope, "curated"), epochs=1, batch_size=8, grad_accum=1)
    assert config.eval_attention_mask is False and config.train_attention_mask is None
    run = finetune(model, processor, images[:12], texts[:12], images[12:], texts[12:], output_dir=tmp_path / "a",
                   config=config, progress=False)  # fmt: skip
    trained = run.model  # one epoch, the last model: the weights the validation loss saw
    ids, mask = tokenize(processor, texts[12:], text_max_length(model), padding_side="right", return_attention_mask=True)
    pixels = preprocess(images[12:], mode=config.preprocessing, size=int(base_model(trained).config.vision_config.image_size))
    with torch.no_grad():
        unmasked = batch_loss(trained.eval(), pixels, ids).item()
        masked = batch_loss(trained, pixels, ids, mask).item()
    assert abs(masked - unmasked) > 1e-4, "the mask changes the loss of short captions"
    assert run.history[0]["val_loss"] == pytest.approx(unmasked, rel=1e-5, abs=1e-6)
    record = json.loads((tmp_path / "a" / "config.json").read_text())
    assert record["train_attention_mask_used"] is True and record["val_attention_mask_used"] is False
    masked_run = finetune(model, processor, images[:12], texts[:12], images[12:], texts[12:], output_dir=tmp_path / "b",
                          config=replace(config, eval_attention_mask=True), progress=False)  # fmt: skip
    with torch.no_grad():
        expected = batch_loss(masked_run.model.eval(), pixels, ids, mask).item()
    assert masked_run.history[0]["val_loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
