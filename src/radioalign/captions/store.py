"""The caption store: an append-only JSONL file, one record per captioning attempt.

Why this shape: captions are data with provenance and cost money to make, so
they are written as soon as each arrives and never rewritten.

- Each record is one line written by a single ``os.write`` on an ``O_APPEND``
  descriptor, then flushed to disk (``fsync``), under an exclusive ``flock`` on
  ``<store>.lock``: concurrent processes never interleave lines.
- A process killed mid-write leaves at most one unterminated last line. Readers
  ignore it; the next writer truncates it away (under the lock) before appending.
- ``read_store`` gives the last *successful* caption per id, so a later record
  (a curation edit) wins and a failed attempt never hides a caption.

Record fields: ``id``, ``caption`` (None when failed), ``status`` ("ok" | "failed"),
``error`` (the reason of a failure), ``backend``, ``model``, ``model_version``,
``prompt``, ``prompt_sha256``, ``finish_reason``, ``usage``, ``created`` (UTC ISO time),
``original`` (the replaced caption, for curation edits) and backend extras.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

try:  # POSIX; on other systems the store still works, without the inter-process lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def redact(text: str) -> str:
    """``text`` with any API key found in the environment replaced by ``[redacted]``."""
    for var in KEY_VARIABLES:
        key = os.environ.get(var, "").strip()
        if len(key) >= 8 and key in text:
            text = text.replace(key, "[redacted]")
    return text


def make_record(
    id: str,
    *,
    caption: str | None,
    backend: str,
    model: str | None,
    prompt: str,
    prompt_sha256: str,
    error: str | None = None,
    model_version: str | None = None,
    finish_reason: str | None = None,
    usage: dict | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One store record; ``status`` is "ok" exactly when ``caption`` is a non-empty string."""
    ok = isinstance(caption, str) and caption.strip() != ""
    if not ok and error is None:
        error = "empty caption"
    record = {
        "id": str(id),
        "caption": caption if ok else None,
        "status": "ok" if ok else "failed",
        "error": None if ok else error,
        "backend": backend,
        "model": model,
        "model_version": model_version,
        "prompt": prompt,
        "prompt_sha256": prompt_sha256,
        "finish_reason": finish_reason,
        "usage": usage,
        "created": utc_now(),
    }
    record.update(extra)
    return record


class CaptionStore:
    """An append-only JSONL caption store at ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.suffix != ".jsonl":
            raise ValueError(f"a caption store is a .jsonl file, got {self.path}")
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def __repr__(self) -> str:
        return f"CaptionStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append(self, *records: dict[str, Any]) -> None:
        """Append records, each as one line with one ``os.write``, fsynced, under the lock."""
        if not records:
            return
        lines = []
        for record in records:
            if not record.get("id"):
                raise ValueError(f"a record needs an id: {record!r}")
            line = json.dumps(record, ensure_ascii=False, allow_nan=False)
            lines.append(redact(line).encode("utf-8") + b"\n")
        with self._locked():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _repair_tail(fd)
                for data in lines:
                    written = os.write(fd, data)
                    if written != len(data):  # a short write (disk full): finish it, then fail loudly
                        os.write(fd, data[written:])
                        raise OSError(f"short write to {self.path}")
                    os.fsync(fd)
            finally:
                os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """All complete records in file order (a torn last line is ignored)."""
        return list(iter_records(self.path))

    def latest(self) -> dict[str, dict[str, Any]]:
        """Per id, the last successful record, else the last record (a failure)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.records():
            prev = out.get(r["id"])
            if r["status"] == "ok" or prev is None or prev["status"] != "ok":
                out[r["id"]] = r
        return out

    def captions(self) -> dict[str, str]:
        """``{id: caption}`` of the successful records, the last one winning."""
        return {i: r["caption"] for i, r in self.latest().items() if r["status"] == "ok"}

    def failures(self) -> dict[str, str]:
        """``{id: reason}`` for ids whose every record failed (the last reason)."""
        return {i: r.get("error") or "failed" for i, r in self.latest().items() if r["status"] != "ok"}


def _repair_tail(fd: int) -> None:
    """Truncate an unterminated last line (a writer killed mid-write); call under the lock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - (1 << 20))
    tail = os.pread(fd, size - start, start)
    cut = tail.rfind(b"\n")
    new_size = 0 if cut < 0 and start == 0 else start + cut + 1
    warnings.warn(f"caption store: dropping a torn last line ({size - new_size} bytes) left by an interrupted write")
    os.ftruncate(fd, new_size)


def iter_records(path: str | os.PathLike) -> Iterable[dict[str, Any]]:
    """Complete records of a store; a torn last line is skipped, a corrupt inner line warned about and skipped."""
    path = Path(path)
    if not path.is_file():
        return
    data = path.read_bytes()
    lines = data.split(b"\n")
    # The piece after the last newline is empty for a clean file, a torn record otherwise.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}: line {number} is not valid JSON and is skipped")
            continue
        if isinstance(record, dict) and "id" in record and "status" in record:
            yield record
        else:
            warnings.warn(f"{path}: line {number} is not a caption record and is skipped")


def read_store(path: str | os.PathLike) -> dict[str, str]:
    """``{id: caption}`` of the successful captions in a store (the last record per id wins).

    Later notebooks use it to get captions in dataset order: ``[store[n] for n in ds.names]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no caption store at {path}: run notebooks/01_captioning.ipynb (or caption_images) first")
    return CaptionStore(path).captions()


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a store, in file order (failures and edits included)."""
    return list(iter_records(path))
