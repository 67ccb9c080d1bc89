"""The gemini backend: the real google-genai client against a local fake Gemini server (tests/fake_gemini.py)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from radioalign.captions import CaptionFailureWarning, caption_images, failures, read_records, read_store
from radioalign.captions.gemini import GeminiError, GeminiKeyError, build_batch_requests, build_config
from radioalign.captions.prompts import CONTROL_QUERY, CURATED_INSTRUCTION, CURATED_QUERY

sys.path.insert(0, str(Path(__file__).parent))
from fake_gemini import MODEL_VERSION, FakeGemini, decode_b64, decode_png, image_key, make_images  # noqa: E402

FAKE_KEY = "fake-gemini-test-key-0123456789abcdefXYZ"
# Fast retries for tests: no jitter, tiny backoff, no rate limit unless a test sets one.
FAST = dict(rpm=None, initial_delay=0.01, max_delay=0.05, jitter=0.0, retry_delay=0.01, timeout_s=10, progress=False)


@pytest.fixture
def fake(monkeypatch):
    server = FakeGemini()
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.start())
    monkeypatch.setenv("GOOGLE_API_KEY", FAKE_KEY)
    for var in ("GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE"):
        monkeypatch.delenv(var, raising=False)
    yield server
    server.stop()


def _ok_counts(store) -> Counter:
    return Counter(r["id"] for r in read_records(store) if r["status"] == "ok")


def test_prompt_text_and_pixels_arrive(fake, tmp_path):
    images = make_images(3, seed=5)
    store = tmp_path / "curated_train.jsonl"
    got = caption_images(images, "curated", "gemini", store, temperature=0.2, **FAST)
    assert got == {i: f"fake caption {image_key(x)}" for i, x in images.items()}  # each caption is its own image's
    reqs = fake.generate_requests()
    assert len(reqs) == 3
    by_key = {r.key: r for r in reqs}
    for name, img in images.items():
        r = by_key[image_key(img)]
        parts = r.body["contents"][0]["parts"]
        assert r.body["contents"][0]["role"] == "user"
        assert parts[0] == {"text": CURATED_INSTRUCTION}  # instruction first, then the image, then the query
        inline = parts[1].get("inlineData") or parts[1]["inline_data"]
        assert (inline.get("mimeType") or inline.get("mime_type")) == "image/png"
        np.testing.assert_array_equal(decode_png(decode_b64(inline["data"])), img)  # raw pixels, no stretch
        assert parts[2] == {"text": CURATED_QUERY}
        assert r.api_key == FAKE_KEY and r.model == "gemini-2.5-flash"
        cfg = r.generation_config
        assert cfg["temperature"] == 0.2
        thinking = cfg.get("thinkingConfig") or cfg["thinking_config"]
        assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0  # no thinking on 2.5 Flash
    rec = read_records(store)[0]
    assert rec["model_version"] == MODEL_VERSION and rec["finish_reason"] == "STOP" and rec["status"] == "ok"
    assert rec["usage"]["total_token_count"] == 282 and rec["prompt"] == "curated" and rec["backend"] == "gemini"

    control = caption_images(images, "control", "gemini", tmp_path / "control_train.jsonl", **FAST)
    assert len(control) == 3
    parts = fake.generate_requests()[-1].body["contents"][0]["parts"]
    assert len(parts) == 2 and ("inlineData" in parts[0] or "inline_data" in parts[0]) and parts[1] == {"text": CONTROL_QUERY}


def test_faults_retries_and_failure_records(fake, tmp_path):
    images = make_images(9, seed=6)
    x = list(images.values())
    fake.fail(x[1], 429, 429)  # retried by the SDK (HttpRetryOptions)
    fake.fail(x[2], 500)
    fake.fail(x[3], ("sleep", 2.0))  # longer than the client timeout: a timeout, retried
    fake.fail(x[4], "empty")  # an empty answer, asked again
    fake.fail(x[5], "SAFETY", "SAFETY", "SAFETY")  # persists: a failure, never a caption
    fake.fail(x[6], "MAX_TOKENS", "MAX_TOKENS", "MAX_TOKENS")
    fake.fail(x[7], "blocked", "blocked", "blocked")
    fake.fail(x[8], 429, 429, 429)  # more 429s than the SDK may retry
    store = tmp_path / "control_test.jsonl"
    opts = dict(FAST, timeout_s=1.0, attempts=3, http_attempts=3, concurrency=4)
    with pytest.warns(CaptionFailureWarning, match="4 of 9"):
        got = caption_images(images, "control", "gemini", store, **opts)
    names = list(images)
    assert set(got) == set(names[:5])
    assert all(c.startswith("fake caption") for c in got.values())
    reasons = failures(store)
    assert set(reasons) == set(names[5:])
    assert "SAFETY" in reasons[names[5]] and "MAX_TOKENS" in reasons[names[6]] and "blocked" in reasons[names[7]]
    assert "429" in reasons[names[8]] and "RESOURCE_EXHAUSTED" in reasons[names[8]]
    recs = read_records(store)
    assert Counter(r["id"] for r in recs) == Counter(names)  # one record per image
    assert not any(r["caption"] for r in recs if r["status"] == "failed")
    sent = Counter(r.key for r in fake.generate_requests())
    assert [sent[image_key(v)] for v in x] == [1, 3, 2, 2, 2, 3, 3, 3, 3]

    # Rerun: the failures are tried again, stored captions get no request.
    before = len(fake.generate_requests())
    again = caption_images(images, "control", "gemini", store, **opts)
    assert set(again) == set(names)
    resent = {r.key for r in fake.generate_requests()[before:]}
    assert resent == {image_key(v) for v in x[5:]}
    assert _ok_counts(store) == Counter(names)  # every caption stored exactly once


def test_rate_limit_is_honoured(fake, tmp_path):
    """600 requests per minute = one request every 0.1 s, even with 8 allowed in flight."""
    images = make_images(8, seed=7)
    start = time.monotonic()
    caption_images(images, "control", "gemini", tmp_path / "s.jsonl", **dict(FAST, rpm=600, concurrency=8))
    times = np.array(sorted(r.time for r in fake.generate_requests()))
    assert len(times) == 8
    assert times[-1] - start >= 0.7 - 0.01  # the 8th may not start before 0.7 s
    assert np.median(np.diff(times)) > 0.085  # robust to one request delayed by a busy CPU
    # without the limit the same requests arrive together
    caption_images(make_images(8, seed=17), "control", "gemini", tmp_path / "t.jsonl", **dict(FAST, rpm=None, concurrency=8))
    free = np.array(sorted(r.time for r in fake.generate_requests()[8:]))
    assert np.median(np.diff(free)) < 0.05


def test_kill_and_resume(fake, tmp_path):
    """SIGKILL a captioning process mid-run, rerun: every id exactly once, no request for stored ids."""
    fake.delay = 0.1
    store = tmp_path / "control_train.jsonl"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from fake_gemini import make_images
            from radioalign.captions import caption_images
            caption_images(make_images(24, seed=8), "control", "gemini", {str(store)!r},
                           concurrency=2, rpm=None, initial_delay=0.01, jitter=0.0, progress=False)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if store.is_file() and store.read_bytes().count(b"\n") >= 6:
            break
        time.sleep(0.01)
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    output = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert alive, f"the run ended before it could be killed: {output[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    stored = set(read_store(store))
    assert 6 <= len(stored) < 24

    images = make_images(24, seed=8)
    # A request the killed process had already written to its socket may still be parsed by
    # the server after the kill (slowly, on a busy CPU): wait until the count settles.
    before, settled_since = len(fake.generate_requests()), time.monotonic()
    while time.monotonic() - settled_since < 0.5:
        time.sleep(0.05)
        if len(fake.generate_requests()) != before:
            before, settled_since = len(fake.generate_requests()), time.monotonic()
    got = caption_images(images, "control", "gemini", store, **FAST)
    assert set(got) == set(images)
    asked = [r.key for r in fake.generate_requests()[before:]]
    assert not set(asked) & {image_key(images[i]) for i in stored}  # no request repeated for a stored id
    assert len(asked) == 24 - len(stored)
    assert _ok_counts(store) == Counter(list(images))  # every caption exactly once


def test_batch_mode_resumes_from_its_job_name(fake, tmp_path):
    images = make_images(4, seed=9)
    fake.fail(images["img-002"], "SAFETY")
    store = tmp_path / "curated_test.jsonl"
    job_file = tmp_path / "curated_test.jsonl.batch.json"
    with pytest.raises(TimeoutError, match="Rerun the same call"):
        caption_images(images, "curated", "gemini", store, batch=True, poll_s=0.02, batch_timeout_s=0.2, **FAST)
    assert job_file.is_file() and fake.batch_creates == 1
    assert not store.is_file() or read_store(store) == {}
    fake.release_batches()
    with pytest.warns(CaptionFailureWarning, match="1 of 4"):
        got = caption_images(images, "curated", "gemini", store, batch=True, poll_s=0.02, **FAST)
    assert fake.batch_creates == 1  # resumed, not paid twice
    assert not job_file.exists()
    assert got == {i: f"fake caption {image_key(x)}" for i, x in images.items() if i != "img-002"}
    recs = read_records(store)
    assert {r["batch_job"] for r in recs} == {"batches/fake1"} and len(recs) == 4
    assert [r["error"] for r in recs if r["status"] == "failed"] == ["finish_reason SAFETY"]
    # the batch requests carried the same prompt parts and pixels
    sent = [r for r in fake.requests if r.path.endswith(":batchGenerateContent")]
    assert len(sent) == 4 and all(r.texts == [CURATED_INSTRUCTION, CURATED_QUERY] for r in sent)
    assert {r.key for r in sent} == {image_key(x) for x in images.values()}
    # a rerun submits a new job only for the failed image
    fake.released = True
    caption_images(images, "curated", "gemini", store, batch=True, poll_s=0.02, **FAST)
    assert fake.batch_creates == 2 and _ok_counts(store) == Counter(list(images))


def test_batch_requests_are_tagged_by_id():
    reqs = build_batch_requests(list(make_images(2).items()), "control", build_config("gemini-2.5-flash"))
    assert [r.metadata for r in reqs] == [{"key": "img-000"}, {"key": "img-001"}]
    assert reqs[0].config.thinking_config.thinking_budget == 0
    assert build_config("gemini-2.5-pro").thinking_config is None  # 2.5 Pro cannot switch thinking off


def test_missing_key_names_the_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(GeminiKeyError, match="GOOGLE_API_KEY.*GEMINI_API_KEY"):
        caption_images(make_images(1), "control", "gemini", tmp_path / "s.jsonl", progress=False)


def test_key_is_never_written(fake, tmp_path, caplog, capfd, monkeypatch):
    """Not in the store, the lock or batch files, the logs, the warnings, or the errors raised."""
    images = make_images(3, seed=10)
    x = list(images.values())
    fake.fail(x[0], ("echo-key", 400))  # a (hypothetical) error that quotes the key back
    caplog.set_level(logging.DEBUG)
    with pytest.warns(CaptionFailureWarning) as warned:
        caption_images(images, "control", "gemini", tmp_path / "a.jsonl", **FAST)
    assert "[redacted]" in failures(tmp_path / "a.jsonl")["img-000"]
    fake.released = True
    caption_images(images, "curated", "gemini", tmp_path / "b.jsonl", batch=True, poll_s=0.02, **FAST)
    fake.fail(x[1], ("echo-key", 403))
    with pytest.raises(GeminiError) as fatal:
        caption_images(images, "curated", "gemini", tmp_path / "c.jsonl", **FAST)
    texts = [caplog.text, str(fatal.value), repr(fatal.value), *[str(w.message) for w in warned]]
    out, err = capfd.readouterr()
    texts += [out, err]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert all(FAKE_KEY not in t for t in texts)
    assert any(FAKE_KEY in r.api_key for r in fake.requests if r.api_key)  # it was used, just never written
