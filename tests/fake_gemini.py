"""A local fake of the Gemini REST API for the tests (REFERENCE §6), on 127.0.0.1.

It answers what the real google-genai client sends when ``GOOGLE_GEMINI_BASE_URL``
points here:

- ``POST /{version}/models/{model}:generateContent`` with ``x-goog-api-key``; the image
  arrives as an ``inlineData`` part (base64 PNG). The answer's caption is
  ``"fake caption <key>"``, where ``key`` is the sha256 (12 hex) of the decoded
  pixels, so a test can check that each caption belongs to its own image.
- ``POST /{version}/models/{model}:batchGenerateContent`` and ``GET /{version}/batches/{id}``
  (the Batch API with inlined requests; the job stays pending until ``release_batches``).

Each request is logged (time, path, key header, text parts, decoded image).
Faults are scripted per image key: a list of actions used one per request,
then normal answers: ``429``, ``500``, ``("sleep", s)`` (answer late: a client
timeout), ``"empty"``, ``"SAFETY"``, ``"MAX_TOKENS"``, ``"blocked"``,
``("echo-key", 400 | 403)`` (an error whose message quotes the key back).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MODEL_VERSION = "gemini-fake-2.5-flash-001"


def image_key(pixels: np.ndarray) -> str:
    """Identity of an image: sha256 (12 hex) of its uint8 pixels and shape."""
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()[:12]


def make_images(n: int, seed: int = 0, size: int = 150) -> dict[str, np.ndarray]:
    """``n`` distinct random uint8 test images named ``img-000`` ..."""
    rng = np.random.default_rng(seed)
    return {f"img-{i:03d}": rng.integers(0, 256, (size, size), dtype=np.uint8) for i in range(n)}


def decode_b64(data: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4))


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)


@dataclass
class Request:
    time: float
    path: str
    api_key: str | None
    model: str
    texts: list[str]
    image: np.ndarray | None
    mime_type: str | None
    key: str | None
    generation_config: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)


def _text_of(key: str | None) -> str:
    return f"fake caption {key}"


def _answer(key: str | None, action=None) -> dict:
    usage = {"promptTokenCount": 270, "candidatesTokenCount": 12, "totalTokenCount": 282}
    if action == "blocked":
        return {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage, "modelVersion": MODEL_VERSION}
    finish, text = "STOP", _text_of(key)
    if action == "empty":
        text = ""
    elif action in ("SAFETY", "MAX_TOKENS"):
        finish, text = action, ("" if action == "SAFETY" else "a caption cut off in the midd")
    parts = [{"text": text}] if text else []
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage,
        "modelVersion": MODEL_VERSION,
        "responseId": f"resp-{key}",
    }


class FakeGemini:
    """Start with ``start()`` (returns the base URL), stop with ``stop()``; or use as a context manager."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay  # seconds before every answer
        self.requests: list[Request] = []
        self.script: dict[str, list] = {}
        self.batches: dict[str, dict] = {}
        self.batch_creates = 0
        self.released = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                fake._handle(self, "POST")

            def do_GET(self):
                fake._handle(self, "GET")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- scripting
    def fail(self, pixels: np.ndarray, *actions) -> None:
        self.script.setdefault(image_key(pixels), []).extend(actions)

    def release_batches(self) -> None:
        self.released = True

    def generate_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(":generateContent")]

    # -- serving
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length) or b"{}") if length else {}
        path = h.path.split("?")[0]
        key_header = h.headers.get("x-goog-api-key")
        m = re.fullmatch(r"/(v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|batchGenerateContent)", path)
        b = re.fullmatch(r"/(v1|v1beta|v1alpha)/(batches/[^/]+)", path)
        if method == "POST" and m and m.group(3) == "generateContent":
            return self._generate(h, path, key_header, m.group(2), body)
        if method == "POST" and m:
            return self._batch_create(h, path, key_header, m.group(2), body)
        if method == "GET" and b:
            return self._batch_get(h, b.group(2))
        self._send(h, 404, {"error": {"code": 404, "message": f"no route {method} {path}", "status": "NOT_FOUND"}})

    def _parse(self, path, key_header, model, body) -> Request:
        texts, image, mime, key = [], None, None, None
        for content in body.get("contents", []):
            for part in content.get("parts", []):
                if "text" in part:
                    texts.append(part["text"])
                inline = part.get("inlineData") or part.get("inline_data")
                if inline:
                    mime = inline.get("mimeType") or inline.get("mime_type")
                    image = decode_png(decode_b64(inline["data"]))
                    key = image_key(image)
        return Request(time.monotonic(), path, key_header, model, texts, image, mime, key, body.get("generationConfig", {}), body)

    def _generate(self, h, path, key_header, model, body) -> None:
        req = self._parse(path, key_header, model, body)
        with self._lock:
            self.requests.append(req)
            actions = self.script.get(req.key, [])
            action = actions.pop(0) if actions else None
        if self.delay:
            time.sleep(self.delay)
        if action in (429, 500, 503):
            status = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}[action]
            return self._send(h, action, {"error": {"code": action, "message": f"injected {action}", "status": status}})
        if isinstance(action, tuple) and action[0] == "echo-key":  # an error that quotes the key back
            code = action[1]
            status = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}[code]
            return self._send(h, code, {"error": {"code": code, "message": f"API key {req.api_key} not valid", "status": status}})
        if isinstance(action, tuple) and action[0] == "sleep":
            time.sleep(action[1])  # the client has given up by now; answering may fail
        self._send(h, 200, _answer(req.key, action))

    def _batch_create(self, h, path, key_header, model, body) -> None:
        batch = body.get("batch", {})
        inline = batch.get("inputConfig", {}).get("requests", {}).get("requests", [])
        with self._lock:
            self.batch_creates += 1
            name = f"batches/fake{self.batch_creates}"
            parsed = []
            for item in inline:
                req = self._parse(path, key_header, model, item.get("request", {}))
                self.requests.append(req)
                parsed.append((req, item.get("metadata")))
            self.batches[name] = {"model": model, "display": batch.get("displayName"), "items": parsed}
        self._send(h, 200, self._batch_json(name))

    def _batch_json(self, name: str) -> dict:
        job = self.batches[name]
        meta = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "name": name,
            "model": f"models/{job['model']}",
            "displayName": job["display"],
            "state": "BATCH_STATE_SUCCEEDED" if self.released else "BATCH_STATE_PENDING",
        }
        out = {"name": name, "metadata": meta}
        if self.released:
            responses = []
            for req, metadata in job["items"]:
                actions = self.script.get(req.key, [])
                action = actions.pop(0) if actions else None
                responses.append({"response": _answer(req.key, action), "metadata": metadata})
            meta["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
            out["done"] = True
        return out

    def _batch_get(self, h, name: str) -> None:
        with self._lock:
            self.requests.append(Request(time.monotonic(), f"/{name}", h.headers.get("x-goog-api-key"), "", [], None, None, None))
            if name not in self.batches:
                return self._send(h, 404, {"error": {"code": 404, "message": f"{name} not found", "status": "NOT_FOUND"}})
            answer = self._batch_json(name)
        self._send(h, 200, answer)

    @staticmethod
    def _send(h, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json; charset=UTF-8")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass
