"""The local backend with a tiny randomly initialised vision-language model (Idefics3 / SmolVLM architecture).

The model is built from a config with a locally built word-level tokenizer, saved
and loaded back through AutoProcessor / AutoModelForImageTextToText: no download.
Its captions are noise; the test is about the plumbing (chat template, images,
batching, truncation rule, store).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radioalign.captions import caption_images, read_records  # noqa: E402
from radioalign.captions.local import build_messages, load_vlm  # noqa: E402
from radioalign.captions.prompts import CONTROL_QUERY, CURATED_INSTRUCTION, CURATED_QUERY  # noqa: E402

# SmolVLM's chat template (one user turn, parts concatenated, "<image>" for the picture).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def build_tiny_vlm(folder) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, PreTrainedTokenizerFast
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    special = ["<unk>", "<pad>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>"]
    words = "a the bright faint source lobe lobes jet jets left right top bottom center extended compact emission radio image two one".split()
    vocab = {t: i for i, t in enumerate(special + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<|im_start|>",
        eos_token="<end_of_utterance>", additional_special_tokens=special[2:],
    )
    images = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=1, chat_template=CHAT_TEMPLATE)
    config = Idefics3Config(
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        ),
        scale_factor=2,  # (32 / 16)^2 / 2^2 = 1 image token
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return {f"img-{i}": rng.integers(0, 256, (150, 150), dtype=np.uint8) for i in range(n)}


def test_prompt_goes_through_the_chat_template(tiny_vlm):
    model, processor, device = load_vlm(tiny_vlm, device="cpu")
    assert device.type == "cpu" and processor.tokenizer.padding_side == "left"
    text = processor.apply_chat_template(build_messages("curated"), add_generation_prompt=True)
    assert text == f"<|im_start|>User: {CURATED_INSTRUCTION}<image>{CURATED_QUERY}<end_of_utterance>\nAssistant:"
    text = processor.apply_chat_template(build_messages("control"), add_generation_prompt=True)
    assert text == f"<|im_start|>User:<image>{CONTROL_QUERY}<end_of_utterance>\nAssistant:"


@pytest.mark.slow
def test_local_backend_stores_each_image_once(tiny_vlm, tmp_path):
    images = _images(5)
    store = tmp_path / "curated_train.jsonl"
    got = caption_images(images, "curated", "local", store, model=tiny_vlm, batch_size=2, max_new_tokens=5, accept_truncated=True, device="cpu", progress=False)
    recs = read_records(store)
    assert Counter(r["id"] for r in recs) == Counter(list(images))
    for r in recs:
        assert r["backend"] == "local" and r["model"] == tiny_vlm and r["prompt"] == "curated"
        assert r["finish_reason"] in ("stop", "length") and 1 <= r["usage"]["generated_tokens"] <= 5
        assert (r["status"] == "ok") == bool(r["caption"])
    assert got == {r["id"]: r["caption"] for r in recs if r["status"] == "ok"}
    # deterministic greedy decoding, and batching does not change the answers
    again = caption_images(images, "curated", "local", tmp_path / "b.jsonl", model=tiny_vlm, batch_size=5, max_new_tokens=5, accept_truncated=True, device="cpu", progress=False)
    assert again == got
    # a rerun sends nothing to the model
    n = len(recs)
    caption_images(images, "curated", "local", store, model=tiny_vlm, progress=False)
    assert len(read_records(store)) == n


@pytest.mark.slow
def test_truncated_answers_are_failures(tiny_vlm, tmp_path):
    """Like Gemini's MAX_TOKENS: an answer cut off at max_new_tokens is recorded as a failure."""
    import warnings

    from radioalign.captions import CaptionFailureWarning

    store = tmp_path / "control_test.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = caption_images(_images(4, seed=1), "control", "local", store, model=tiny_vlm, batch_size=4, max_new_tokens=2, device="cpu", progress=False)
    recs = read_records(store)
    assert len(recs) == 4
    cut = [r for r in recs if r["finish_reason"] == "length"]
    assert cut, "a random 2-token answer is almost never finished"
    for r in cut:
        assert r["status"] == "failed" and r["caption"] is None and "max_new_tokens (2)" in r["error"]
    assert all(r["finish_reason"] == "stop" for r in recs if r not in cut)
    assert len(got) == 4 - len(cut)
    assert any(issubclass(w.category, CaptionFailureWarning) for w in caught)


def test_missing_model_error_says_what_to_download(tmp_path, monkeypatch):
    from radioalign.captions.local import LocalModelNotAvailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tmp_path))
    with pytest.raises(LocalModelNotAvailableError, match="hf download radioalign-test/no-such-vlm"):
        load_vlm("radioalign-test/no-such-vlm", device="cpu")
