"""The ``gemini`` backend: Google Gemini through the official google-genai SDK.

Requests
    One ``generateContent`` call per image: ``[instruction?, PNG of the raw image, query]``
    as the parts of one user turn (the authors' order; see ``prompts``). The model id
    is a parameter (default ``gemini-2.5-flash``; the paper's preview id is retired)
    and the ``modelVersion`` the API answers with is stored with each caption.
    2.5 Flash models think by default and thinking tokens eat the output budget,
    so their thinking budget is set to 0 unless given.

The key
    Only from ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` (the SDK reads them; the first
    wins). It is never a parameter and is never written: records hold no request
    data, and every stored or raised message goes through ``store.redact``.
    ``genai.Client()`` is built the standard way, so ``GOOGLE_GEMINI_BASE_URL`` and
    ``GOOGLE_GENAI_API_VERSION`` apply (the tests point it at a local fake server).

Robustness
    The SDK retries 408/429/5xx answers and connection errors / timeouts with
    exponential backoff (``HttpRetryOptions``). An answer without a caption (empty
    text, a safety block, ``MAX_TOKENS``, ...) is asked again up to ``attempts``
    times, then stored as a failure with its reason, never as a caption. Requests
    run concurrently on ``client.aio`` (at most ``concurrency`` in flight), spaced by
    a requests-per-minute limiter. Each caption is stored as soon as it arrives.

Batch mode (``batch=True``)
    The Gemini Batch API (half price, answers within 24 h): a job with the
    requests inlined (up to ~18 MB per job; larger sets run as successive jobs),
    its name saved beside the store (``<store>.batch.json``) so a rerun after an
    interruption resumes the job instead of paying twice.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .prompts import get_prompt
from .store import KEY_VARIABLES, CaptionStore, make_record, redact, utc_now

DEFAULT_MODEL = "gemini-2.5-flash"
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
FATAL_STATUS_CODES = (401, 403, 404)  # a bad key or model: every request would fail the same way
BATCH_DONE = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED")


class GeminiKeyError(RuntimeError):
    """No Gemini API key in the environment."""


class GeminiError(RuntimeError):
    """The API refused every request (bad key, unknown model, no permission)."""


def has_api_key() -> bool:
    """Whether ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY`` is set (non-empty)."""
    return any(os.environ.get(v, "").strip() for v in KEY_VARIABLES)


def make_client(*, http_attempts: int = 5, timeout_s: float = 120.0, initial_delay: float = 1.0, max_delay: float = 60.0, jitter: float = 1.0):
    """A ``genai.Client()`` with retries and a timeout; the SDK reads the key and base URL from the environment."""
    if not has_api_key():
        raise GeminiKeyError(
            "the gemini backend needs an API key: set the environment variable GOOGLE_API_KEY "
            "(or GEMINI_API_KEY) to your Gemini API key; it is read from the environment only and never written"
        )
    from google import genai
    from google.genai import types

    retry = types.HttpRetryOptions(
        attempts=http_attempts,
        initial_delay=initial_delay,
        max_delay=max_delay,
        jitter=jitter,
        http_status_codes=list(RETRY_STATUS_CODES),
    )
    return genai.Client(http_options=types.HttpOptions(timeout=int(timeout_s * 1000), retry_options=retry))


def encode_png(image: np.ndarray) -> bytes:
    """The raw 2-D ``uint8`` image as a greyscale PNG (no stretch), as the authors sent it."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def build_contents(image: np.ndarray, prompt: str) -> list:
    """``[Content(user, [instruction?, image/png, query])]`` for one image."""
    from google.genai import types

    spec = get_prompt(prompt)
    parts = [types.Part.from_text(text=spec.instruction)] if spec.instruction else []
    parts.append(types.Part.from_bytes(data=encode_png(image), mime_type="image/png"))
    parts.append(types.Part.from_text(text=spec.query))
    return [types.Content(role="user", parts=parts)]


def thinks_by_default(model: str) -> bool:
    """2.5 Flash / Flash-Lite accept a thinking budget of 0 (2.5 Pro cannot switch thinking off)."""
    return "2.5-flash" in model


def build_config(model: str, *, temperature: float | None = None, max_output_tokens: int | None = None, thinking_budget: int | None = None):
    from google.genai import types

    kw: dict[str, Any] = {}
    if temperature is not None:
        kw["temperature"] = float(temperature)
    if max_output_tokens is not None:
        kw["max_output_tokens"] = int(max_output_tokens)
    if thinking_budget is None and thinks_by_default(model):
        thinking_budget = 0
    if thinking_budget is not None:
        kw["thinking_config"] = types.ThinkingConfig(thinking_budget=int(thinking_budget))
    return types.GenerateContentConfig(**kw)


def parse_response(response) -> dict[str, Any]:
    """``caption`` (None unless a non-empty text finished with STOP), ``error``, ``finish_reason``, ``usage``, ``model_version``."""
    out: dict[str, Any] = {"caption": None, "error": None, "finish_reason": None, "usage": None, "model_version": None}
    out["model_version"] = getattr(response, "model_version", None)
    usage = getattr(response, "usage_metadata", None)
    if usage is not None:
        out["usage"] = usage.model_dump(mode="json", exclude_none=True)
    candidates = getattr(response, "candidates", None) or []
    if not candidates:
        feedback = getattr(response, "prompt_feedback", None)
        block = getattr(feedback, "block_reason", None) if feedback is not None else None
        out["error"] = f"no candidates (prompt blocked: {_name(block)})" if block else "no candidates"
        return out
    cand = candidates[0]
    finish = _name(cand.finish_reason)
    out["finish_reason"] = finish
    parts = (cand.content.parts or []) if cand.content is not None else []
    text = "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False)).strip()
    if finish not in (None, "STOP"):
        out["error"] = f"finish_reason {finish}" + (" (truncated text discarded)" if text else "")
    elif not text:
        out["error"] = "empty text"
    else:
        out["caption"] = text
    return out


def _name(value) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart (``rpm`` None or 0: no limit)."""

    def __init__(self, rpm: float | None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


def run_sync(coro):
    """Run a coroutine to completion, also from a running event loop (Jupyter) via a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, Any] = {}

    def target():
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as err:  # re-raised in the caller's thread
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _describe_error(err: BaseException) -> str:
    code = getattr(err, "code", None)
    status = getattr(err, "status", None)
    msg = getattr(err, "message", None) or str(err)
    head = f"{type(err).__name__}" + (f" {code}" if code else "") + (f" {status}" if status else "")
    return redact(f"{head}: {msg}"[:500])


def caption_gemini(
    items: list[tuple[str, np.ndarray]],
    prompt: str,
    store: CaptionStore,
    *,
    model: str = DEFAULT_MODEL,
    temperature: float | None = None,
    max_output_tokens: int | None = None,
    thinking_budget: int | None = None,
    concurrency: int = 4,
    rpm: float | None = 60,
    attempts: int = 3,
    retry_delay: float = 2.0,
    http_attempts: int = 5,
    timeout_s: float = 120.0,
    initial_delay: float = 1.0,
    max_delay: float = 60.0,
    jitter: float = 1.0,
    batch: bool = False,
    poll_s: float = 30.0,
    batch_timeout_s: float | None = None,
    progress: bool = True,
) -> None:
    """Caption ``items`` (``(id, image)`` pairs) with Gemini and append each result to ``store``.

    Parameters
    ----------
    model : Gemini model id; the answer's ``modelVersion`` is stored too.
    temperature, max_output_tokens : generation settings (None: the API's defaults, as the authors used).
    thinking_budget : None -> 0 for 2.5 Flash models, else the API's default.
    concurrency : requests in flight at once; rpm : requests started per minute (None: unlimited).
    attempts : tries per image when the answer carries no caption (empty, SAFETY, MAX_TOKENS...),
        ``retry_delay * 2**k`` seconds apart; then a failure record.
    http_attempts, timeout_s, initial_delay, max_delay, jitter : the SDK's HTTP retries
        (429, 5xx, timeouts) and the per-request timeout.
    batch : use the Batch API (see the module docstring); poll_s : seconds between status checks;
        batch_timeout_s : stop waiting after this long (the job keeps running; rerun to resume).
    """
    if attempts < 1 or concurrency < 1:
        raise ValueError(f"attempts and concurrency must be >= 1, got {attempts} and {concurrency}")
    client = make_client(http_attempts=http_attempts, timeout_s=timeout_s, initial_delay=initial_delay, max_delay=max_delay, jitter=jitter)
    config = build_config(model, temperature=temperature, max_output_tokens=max_output_tokens, thinking_budget=thinking_budget)
    settings = {"temperature": temperature, "max_output_tokens": max_output_tokens, "thinking_budget": config.thinking_config.thinking_budget if config.thinking_config else None}
    if batch:
        return _caption_batch(client, items, prompt, store, model=model, config=config, settings=settings, poll_s=poll_s, timeout_s=batch_timeout_s, progress=progress)
    run_sync(
        _caption_async(
            client, items, prompt, store, model=model, config=config, settings=settings,
            concurrency=concurrency, rpm=rpm, attempts=attempts, retry_delay=retry_delay, progress=progress,
        )
    )


async def _caption_async(client, items, prompt, store, *, model, config, settings, concurrency, rpm, attempts, retry_delay, progress):
    from google.genai import errors

    spec = get_prompt(prompt)
    sem = asyncio.Semaphore(max(1, int(concurrency)))
    limiter = RateLimiter(rpm)
    bar = tqdm(total=len(items), desc=f"gemini {prompt}", disable=not progress)
    fatal: list[str] = []

    def record(id_, caption=None, error=None, parsed=None, tries=0):
        parsed = parsed or {}
        store.append(
            make_record(
                id_, caption=caption, error=error, backend="gemini", model=model, prompt=prompt, prompt_sha256=spec.sha256,
                model_version=parsed.get("model_version"), finish_reason=parsed.get("finish_reason"), usage=parsed.get("usage"),
                attempts=tries, settings=settings,
            )
        )
        bar.update(1)

    async def one(id_, image):
        contents = build_contents(image, prompt)
        reasons = []
        for k in range(1, attempts + 1):
            if fatal:
                return
            async with sem:
                await limiter.wait()
                try:
                    response = await client.aio.models.generate_content(model=model, contents=contents, config=config)
                except errors.APIError as err:
                    if err.code in FATAL_STATUS_CODES:
                        fatal.append(_describe_error(err))
                        return
                    # The SDK has already retried 429 / 5xx: record the failure, a rerun tries again.
                    return record(id_, error=f"{_describe_error(err)} (after the SDK's retries)", tries=k)
                except Exception as err:  # timeouts and connection errors, also after the SDK's retries
                    return record(id_, error=f"{_describe_error(err)} (after the SDK's retries)", tries=k)
            parsed = parse_response(response)
            if parsed["caption"] is not None:
                return record(id_, caption=parsed["caption"], parsed=parsed, tries=k)
            reasons.append(parsed["error"])
            if k < attempts:
                await asyncio.sleep(retry_delay * 2 ** (k - 1))
        record(id_, error=f"no caption after {attempts} attempts: " + "; ".join(reasons), parsed=parsed, tries=attempts)

    try:
        await asyncio.gather(*(one(i, x) for i, x in items))
    finally:
        bar.close()
        await client.aio.aclose()
    if fatal:
        raise GeminiError(f"the Gemini API refused the requests: {fatal[0]}")


# ---------------------------------------------------------------- batch mode


def batch_job_file(store: CaptionStore) -> Path:
    """Where the running batch job's name is kept: ``<store>.batch.json``."""
    return store.path.with_name(store.path.name + ".batch.json")


def build_batch_requests(items, prompt: str, config) -> list:
    """Inlined batch requests, each tagged with its image id in ``metadata.key``."""
    from google.genai import types

    return [types.InlinedRequest(contents=build_contents(x, prompt), config=config, metadata={"key": str(i)}) for i, x in items]


def _caption_batch(client, items, prompt, store, *, model, config, settings, poll_s, timeout_s, progress):
    spec = get_prompt(prompt)
    job_file = batch_job_file(store)
    pending = {i for i, _ in items}
    while True:
        if job_file.is_file():
            saved = json.loads(job_file.read_text())
            if saved.get("prompt") != prompt or saved.get("model") != model:
                raise ValueError(f"{job_file} holds a {saved.get('model')} job for prompt {saved.get('prompt')!r}; finish it with those settings or delete the file")
            job = client.batches.get(name=saved["job"])
            ids = saved["ids"]
        else:
            todo = _fit_inline_limit([(i, x) for i, x in items if i in pending])
            if not todo:
                return
            job_file.parent.mkdir(parents=True, exist_ok=True)
            job = client.batches.create(
                model=model,
                src=build_batch_requests(todo, prompt, config),
                config={"display_name": f"radioalign-{store.path.stem}"},
            )
            ids = [i for i, _ in todo]
            tmp = job_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"job": job.name, "model": model, "prompt": prompt, "ids": ids, "created": utc_now()}, indent=1))
            os.replace(tmp, job_file)
        job = _wait(client, job, poll_s, timeout_s, job_file, progress)
        _store_batch_results(job, ids, prompt, spec, store, model, settings)
        job_file.unlink()
        pending -= set(ids)
        if not pending:
            return


INLINE_BATCH_BYTES = 18 * 2**20  # the API takes inlined batch requests up to 20 MB


def _fit_inline_limit(items: list) -> list:
    """The leading items whose inlined requests (base64 PNGs plus prompt) stay under the size limit;
    the rest go into the next job once this one is done."""
    total, out = 0, []
    for i, x in items:
        total += 4 * len(encode_png(x)) // 3 + 2048
        if out and total > INLINE_BATCH_BYTES:
            break
        out.append((i, x))
    return out


def _state(job) -> str:
    return _name(job.state) or "JOB_STATE_UNSPECIFIED"


def _wait(client, job, poll_s, timeout_s, job_file, progress):
    start = time.monotonic()
    bar = tqdm(desc=f"batch {job.name}", disable=not progress, bar_format="{desc}: {postfix} [{elapsed}]")
    try:
        while _state(job) not in BATCH_DONE:
            bar.set_postfix_str(_state(job))
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise TimeoutError(
                    f"batch job {job.name} is still {_state(job)} after {timeout_s:g} s; it keeps running on Google's side. "
                    f"Rerun the same call to resume it (its name is in {job_file})."
                )
            time.sleep(poll_s)
            job = client.batches.get(name=job.name)
    finally:
        bar.close()
    return job


def _store_batch_results(job, ids, prompt, spec, store, model, settings):
    state = _state(job)
    done = set(store.captions())
    responses = list(getattr(job.dest, "inlined_responses", None) or []) if job.dest is not None else []
    by_id: dict[str, Any] = {}
    for k, r in enumerate(responses):
        key = (r.metadata or {}).get("key") if r.metadata else None
        by_id[str(key) if key is not None else ids[k]] = r
    records = []
    for i in ids:
        if i in done:  # the job finished before an interruption and this id was already stored
            continue
        r = by_id.get(i)
        extra = {"batch_job": job.name, "attempts": 1, "settings": settings}
        if r is None:
            error = f"batch job {state}: no response" + (f" ({redact(str(job.error))[:300]})" if getattr(job, "error", None) else "")
            records.append(make_record(i, caption=None, error=error, backend="gemini", model=model, prompt=prompt, prompt_sha256=spec.sha256, **extra))
        elif r.error is not None:
            records.append(make_record(i, caption=None, error=redact(f"batch item error: {r.error}")[:500], backend="gemini", model=model, prompt=prompt, prompt_sha256=spec.sha256, **extra))
        else:
            p = parse_response(r.response)
            records.append(
                make_record(
                    i, caption=p["caption"], error=p["error"], backend="gemini", model=model, prompt=prompt, prompt_sha256=spec.sha256,
                    model_version=p["model_version"], finish_reason=p["finish_reason"], usage=p["usage"], **extra,
                )
            )
    store.append(*records)
