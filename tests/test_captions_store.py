"""The caption store, prompts, curation and statistics (no network, no model)."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from radioalign.captions import (
    PROMPTS,
    CaptionStore,
    apply_curation,
    caption_images,
    caption_stats,
    curation_table,
    diff_words,
    load_curation,
    read_records,
    read_store,
)
from radioalign.captions.prompts import CURATED_INSTRUCTION, CURATED_QUERY, get_prompt
from radioalign.captions.store import make_record


def _rec(i, caption="a caption", **kw):
    return make_record(i, caption=caption, backend="catalog", model="m", prompt="curated", prompt_sha256=get_prompt("curated").sha256, **kw)


def test_prompts_are_the_papers_exact_texts():
    assert PROMPTS["control"] == "Please use 50 words or less to write a caption describing this image."
    assert PROMPTS["curated"].startswith("You are acting as an expert observational radio astronomer. Examine the following image")
    assert PROMPTS["curated"].endswith("Use 50 words or less.\n\nPlease use the above instructions to describe this image.")
    assert "(left, right, top, bottom, center)" in CURATED_INSTRUCTION
    assert CURATED_QUERY == "Please use the above instructions to describe this image."
    assert get_prompt("control").instruction == "" and get_prompt("curated").sha256 != get_prompt("control").sha256
    with pytest.raises(ValueError, match="prompt must be one of"):
        get_prompt("expert")


def test_records_last_ok_wins_and_failures_never_hide_captions(tmp_path):
    store = CaptionStore(tmp_path / "s.jsonl")
    store.append(_rec("a", "first"), _rec("b", None, error="SAFETY"), _rec("a", "second"))
    store.append(_rec("a", None, error="late failure"))
    assert read_store(store.path) == {"a": "second"}
    assert store.failures() == {"b": "SAFETY"}
    recs = read_records(store.path)
    assert [r["status"] for r in recs] == ["ok", "failed", "ok", "failed"]
    assert recs[1]["caption"] is None and recs[1]["error"] == "SAFETY"
    assert set(recs[0]) >= {"id", "caption", "status", "backend", "model", "model_version", "prompt", "prompt_sha256", "finish_reason", "usage", "created"}
    with pytest.raises(FileNotFoundError, match="01_captioning"):
        read_store(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="jsonl"):
        CaptionStore(tmp_path / "s.json")


def test_torn_last_line_is_ignored_then_repaired(tmp_path):
    store = CaptionStore(tmp_path / "s.jsonl")
    store.append(_rec("a"), _rec("b"))
    with open(store.path, "ab") as f:  # a writer killed in the middle of a line
        f.write(json.dumps(_rec("c")).encode()[:40])
    assert read_store(store.path) == {"a": "a caption", "b": "a caption"}
    with pytest.warns(UserWarning, match="torn last line"):
        store.append(_rec("d"))
    lines = store.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(x)["id"] for x in lines[:-1]] == ["a", "b", "d"]


def _writer(path: str, worker: int, n: int) -> None:
    store = CaptionStore(path)
    for k in range(n):
        # Long lines (> the 4 KiB pipe atomicity size) make interleaving likely without the lock.
        store.append(_rec(f"w{worker}-{k}", f"worker {worker} caption {k} " + "x" * 6000))


def test_concurrent_processes_never_interleave_lines(tmp_path):
    path = str(tmp_path / "s.jsonl")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    raw = open(path, "rb").read().split(b"\n")
    assert raw[-1] == b""
    ids = [json.loads(line)["id"] for line in raw[:-1]]  # every line parses on its own
    assert sorted(ids) == sorted(f"w{w}-{k}" for w in range(4) for k in range(25))


def test_store_refuses_to_mix_prompts_or_backends(tmp_path):
    images = {"x": np.zeros((150, 150), np.uint8)}
    path = tmp_path / "s.jsonl"
    caption_images(images, "curated", "catalog", path, progress=False)
    with pytest.raises(ValueError, match="prompt 'curated'"):
        caption_images(images, "control", "catalog", path, progress=False)
    with pytest.raises(ValueError, match="'catalog' captions"):
        caption_images(images, "curated", "published", path, progress=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        caption_images(images, "curated", "gpt", tmp_path / "t.jsonl", progress=False)
    with pytest.raises(ValueError, match="2-D"):
        caption_images({"y": np.zeros((2, 150, 150), np.uint8)}, "curated", "catalog", tmp_path / "u.jsonl", progress=False)
    with pytest.raises(ValueError, match="uint8"):
        caption_images({"y": np.zeros((150, 150)) + 0.5}, "curated", "catalog", tmp_path / "u.jsonl", progress=False)


def test_curation_keeps_original_and_edit(tmp_path):
    store = CaptionStore(tmp_path / "curated_test.jsonl")
    store.append(_rec("a", "A bright source at the left with a jet."), _rec("b", "Two lobes."))
    edits = tmp_path / "edits.csv"
    edits.write_text("id,caption,reason\na,A bright source at the right with a jet.,position wrong\n", encoding="utf-8")
    written = apply_curation(store, edits, editor="tester")
    assert len(written) == 1
    assert read_store(store.path) == {"a": "A bright source at the right with a jet.", "b": "Two lobes."}
    last = read_records(store.path)[-1]
    assert last["original"] == "A bright source at the left with a jet."
    assert last["curation"]["reason"] == "position wrong" and last["backend"] == "catalog"
    assert apply_curation(store, edits) == []  # idempotent
    table = curation_table(store)
    assert table["diff"].tolist() == ["A bright source at the [-left-] {+right+} with a jet."]
    # JSON form, a second edit keeps the generated original
    j = tmp_path / "edits.json"
    j.write_text(json.dumps({"a": {"caption": "A source.", "reason": "shorter"}}))
    apply_curation(store, load_curation(j))
    assert read_records(store.path)[-1]["original"] == "A bright source at the left with a jet."
    with pytest.raises(KeyError, match="no caption"):
        apply_curation(store, [{"id": "zz", "caption": "x", "reason": "y"}])
    with pytest.raises(ValueError, match="reason"):
        apply_curation(store, [{"id": "a", "caption": "x", "reason": " "}])


def test_diff_words():
    assert diff_words("one two three", "one three four") == "one [-two-] three {+four+}"


class _CharTokenizer:
    """A stand-in tokenizer: one token per character plus an end token."""

    def __call__(self, texts, **kw):
        return {"input_ids": [[1] * len(t) + [2] for t in texts]}


def test_caption_stats_definitions():
    caps = ["A bright edge-brightened lobe.", "a BRIGHT jet", "Two lobes, two jets"]
    s = caption_stats(caps)
    # words: a bright edge-brightened lobe | a bright jet | two lobes two jets
    assert s["words_total"] == 11 and s["vocab_size"] == 8  # a bright edge-brightened lobe jet two lobes jets
    assert s["words_max"] == 4 and s["words_min"] == 3 and s["words_mean"] == pytest.approx(11 / 3)
    assert s["type_token_ratio"] == pytest.approx(8 / 11)
    t = caption_stats(caps, tokenizer=_CharTokenizer(), max_tokens=20)
    assert t["token_lengths"] == [len(c) + 1 for c in caps]
    assert t["share_truncated"] == pytest.approx(1 / 3)  # only the first (31 tokens) exceeds 20
    with pytest.raises(TypeError):
        caption_stats(["ok", None])
