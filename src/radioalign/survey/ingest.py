"""Ingest: survey inputs -> model input -> image vectors -> the store.

Three stages over batches, kept apart so that another executor (Ray, a cluster) can
run them: :func:`read_task` (read and preprocess one input, in DataLoader workers),
:func:`embed_items` (the model, in the main process) and :func:`write_batch` (one
LanceDB commit). :func:`ingest` chains them with a PyTorch ``DataLoader`` whose batch
sampler (:class:`TodoBatches`) walks the inputs lazily and drops those already in the
store, so memory stays bounded whatever the number of sources, reading overlaps the
model, and a rerun after a crash (even ``kill -9``) stores each source exactly once
and recomputes nothing that was written.

Bad input never stops a run: any failure while reading or preprocessing one input is
recorded in the ``errors`` table with its reason, and the run goes on. An input that
failed is not retried by later runs unless ``retry_failed``.
"""

from __future__ import annotations

import functools
import glob
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..provenance import stamp
from .images import RECIPE, model_image, png_bytes
from .readers import best_mosaic, cut_from_mosaic, read_catalog, read_file, source_name
from .store import DEFAULT_ANN_THRESHOLD, SOURCES, Store, meta_json, now, source_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One input to ingest: a file, or a catalogue row to cut from ``mosaics``."""

    id: str
    name: str
    source: str
    kind: str  # "file" or "catalog"
    ra: float | None = None
    dec: float | None = None
    mosaics: tuple[str, ...] = ()


@dataclass
class Item:
    """A task read and preprocessed: the model input and what the store records."""

    task: Task
    image: np.ndarray  # (150, 150) uint8
    thumbnail: bytes
    ra: float | None
    dec: float | None
    preprocessing: str


@dataclass
class Failure:
    task: Task
    reason: str


@dataclass
class IngestSummary:
    """Counts of one ingest run: ``ok`` sources embedded and stored, ``failed`` inputs
    recorded in the errors table, ``skipped`` inputs already in the store (or already
    failed). ``embedded`` equals ``ok``: only new sources go through the model."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    sources_in_store: int = 0
    search: str = "exact"
    store: str = ""
    reasons: dict = field(default_factory=dict)

    @property
    def embedded(self) -> int:
        return self.ok

    def to_dict(self) -> dict:
        return {**asdict(self), "embedded": self.embedded}

    def line(self) -> str:
        rate = self.ok / self.seconds if self.seconds > 0 else 0.0
        return (
            f"ingest: {self.ok} ok, {self.failed} failed, {self.skipped} skipped in {self.seconds:.1f} s "
            f"({rate:.1f} sources/s); the store holds {self.sources_in_store} sources ({self.search} search)"
        )


# ---------------------------------------------------------------------------
# Walking the inputs


def iter_paths(sources: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files named by ``sources``: files as given, folders walked recursively in sorted
    order (hidden entries skipped), glob patterns expanded; a missing path is yielded
    as is so that it is recorded as a failure."""
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        yield Path(root) / name
        elif not path.exists() and glob.has_magic(str(source)):
            yield from (Path(p) for p in sorted(glob.iglob(str(path), recursive=True)) if Path(p).is_file())
        else:
            yield path


def file_tasks(sources: Iterable[str | os.PathLike]) -> Iterator[Task]:
    for path in iter_paths(sources):
        resolved = str(path.resolve())
        yield Task(id=source_id(resolved), name=source_name(path), source=resolved, kind="file")


def catalog_tasks(catalog: str | os.PathLike, mosaics: Sequence[str | os.PathLike]) -> Iterator[Task]:
    """One task per catalogue row; the mosaic is chosen when the row is read."""
    catalog = str(Path(catalog).expanduser().resolve())
    mosaics = tuple(str(Path(m).expanduser().resolve()) for m in mosaics)
    for name, ra, dec in read_catalog(catalog):
        yield Task(
            id=source_id(f"{catalog}#{name}"), name=name, source=f"{catalog}#{name}", kind="catalog",
            ra=_float_or_none(ra), dec=_float_or_none(dec), mosaics=mosaics,
        )  # fmt: skip


def _float_or_none(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def iter_tasks(sources: Sequence = (), catalog=None, mosaics: Sequence = ()) -> Iterator[Task]:
    """Every input: the files of ``sources``, then the rows of ``catalog``."""
    yield from file_tasks(sources)
    if catalog is not None:
        if not mosaics:
            raise ValueError("a catalogue needs at least one mosaic (--mosaic FITS ...)")
        yield from catalog_tasks(catalog, mosaics)


def batched(iterable: Iterable, n: int) -> Iterator[list]:
    it = iter(iterable)
    while chunk := list(islice(it, n)):
        yield chunk


# ---------------------------------------------------------------------------
# Stage 1: read and preprocess (DataLoader workers)


def _read_catalog_row(task: Task):
    if task.ra is None or task.dec is None or not -90.0 <= task.dec <= 90.0:
        raise ValueError(f"bad coordinates ra={task.ra!r} dec={task.dec!r}")
    mosaic = best_mosaic(list(task.mosaics), task.ra % 360.0, task.dec)
    if mosaic is None:
        raise ValueError("the position lies outside every mosaic")
    return cut_from_mosaic(mosaic, task.ra % 360.0, task.dec)


def read_task(task: Task) -> Item | Failure:
    """Read one input and make its model input; never raises: a failure is returned with
    its reason (the exception's type and message)."""
    try:
        if task.kind == "file" and not Path(task.source).is_file():
            raise FileNotFoundError("no such file")
        picture = read_file(task.source) if task.kind == "file" else _read_catalog_row(task)
        image, preprocessing = model_image(picture)
        return Item(task, image, png_bytes(image), picture.ra, picture.dec, preprocessing)
    except Exception as err:  # noqa: BLE001 - bad input must never stop a run
        return Failure(task, f"{type(err).__name__}: {err}")


class _Reader:
    """A map-style dataset whose 'indices' are tasks (sent to the workers by the sampler)."""

    def __getitem__(self, task: Task) -> Item | Failure:
        return read_task(task)


def _as_list(batch: list) -> list:
    return batch


# ---------------------------------------------------------------------------
# Stage 2 and 3: embed and write (main process)


def embed_items(encoder, items: Sequence[Item]) -> np.ndarray:
    """The L2-normalised image vectors ``(len(items), D)`` of a batch."""
    if not items:
        return np.zeros((0, encoder.dim), np.float32)
    return encoder.images(np.stack([item.image for item in items]))


def source_rows(items: Sequence[Item], vectors: np.ndarray, encoder) -> list[dict]:
    created = now()
    return [
        {
            "id": it.task.id, "name": it.task.name, "ra": it.ra, "dec": it.dec, "source": it.task.source,
            "thumbnail": it.thumbnail, "vector": vec.tolist(), "model": encoder.fingerprint,
            "adapter": encoder.adapter or "", "preprocessing": f"{it.preprocessing}; model input {encoder.preprocessing}",
            "created_at": created,
        }  # fmt: skip
        for it, vec in zip(items, vectors)
    ]


def error_rows(failures: Sequence[Failure]) -> list[dict]:
    created = now()
    return [
        {"id": f.task.id, "name": f.task.name, "source": f.task.source, "reason": f.reason, "created_at": created}
        for f in failures
    ]


def write_batch(store: Store, encoder, items: Sequence[Item], vectors: np.ndarray, failures: Sequence[Failure]) -> int:
    """Store a batch: one commit for its sources, one for its failures. Ids that reached
    the store since the batch was planned (a duplicate input) are dropped; returns the
    number of sources written."""
    present = store.existing_ids([it.task.id for it in items] + [f.task.id for f in failures])
    keep = [i for i, it in enumerate(items) if it.task.id not in present]
    store.add_sources(source_rows([items[i] for i in keep], vectors[keep], encoder), encoder.dim)
    store.add_errors(error_rows([f for f in failures if f.task.id not in present]))
    return len(keep)


# ---------------------------------------------------------------------------
# The loop


class TodoBatches:
    """The DataLoader's batch sampler: batches of ``batch_size`` tasks drawn lazily from
    ``tasks``, less those already in the store's sources or errors (counted in
    ``summary.skipped``). It runs in the main process, the only one that opens the store."""

    def __init__(self, store: Store, tasks: Iterable[Task], batch_size: int, summary: IngestSummary):
        self.store, self.tasks, self.batch_size, self.summary = store, tasks, batch_size, summary

    def __iter__(self) -> Iterator[list[Task]]:
        for chunk in batched(self.tasks, self.batch_size):
            unique = list({t.id: t for t in chunk}.values())
            done = self.store.existing_ids([t.id for t in unique])
            todo = [t for t in unique if t.id not in done]
            self.summary.skipped += len(chunk) - len(todo)
            if todo:
                yield todo


def worker_context():
    """The workers' start method: a fork server that has imported the readers (and torch)
    once. Plain ``fork`` would copy LanceDB's runtime threads mid-operation, which LanceDB
    warns can deadlock; ``spawn`` would import everything again in every worker."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "radioalign.survey.ingest"])
    return context


def start_workers_early(workers: int) -> None:
    """Start the fork server now, so that its imports overlap the model's loading.

    A script that calls ``ingest`` with workers must do so under
    ``if __name__ == "__main__":`` (as any multiprocessing code with the fork server or
    spawn): the workers import the script, and an unguarded call would run again there."""
    import multiprocessing
    import sys

    main = sys.modules.get("__main__")
    if workers > 0 and multiprocessing.parent_process() is not None and getattr(main, "__name__", "") == "__mp_main__":
        raise RuntimeError(
            "ingest() with workers ran while a worker process imported your script: "
            "call it under `if __name__ == \"__main__\":` (or pass workers=0)"
        )
    if workers > 0:
        context = worker_context()
        if context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()


def exit_with_parent(parent_pid: int, worker_id: int = 0, interval: float = 1.0) -> None:
    """A worker's ``worker_init_fn``: exit when the ingest process is gone.

    Workers started by a fork server are its children, not the ingest process's, so
    PyTorch's own check (the worker's parent pid) never fires after a ``kill -9`` of the
    ingest; and each worker holds the fork server's lifeline, so neither would exit.
    A daemon thread polls ``parent_pid`` and ends the worker when it has gone."""
    import threading

    def watch():
        while True:
            time.sleep(interval)
            try:
                os.kill(parent_pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (or its pid reused by another user)
                os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _loader(store, tasks, batch_size: int, workers: int, summary):
    from torch.utils.data import DataLoader

    sampler = TodoBatches(store, tasks, batch_size, summary)
    extra = {}
    if workers > 0:
        extra = {
            "prefetch_factor": 2, "multiprocessing_context": worker_context(),
            "worker_init_fn": functools.partial(exit_with_parent, os.getpid()),
        }  # fmt: skip
    return DataLoader(_Reader(), batch_sampler=sampler, num_workers=workers, collate_fn=_as_list, **extra)


def default_workers() -> int:
    """DataLoader workers: one core left for the model, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def prepare_store(store: Store, encoder) -> None:
    """Record the model in a new store, or check that an existing store used the same one."""
    if store.meta():
        store.check_model(encoder.fingerprint, "ingest")
        return
    store.init_meta({**encoder.describe(), "recipe": RECIPE, "created": now().isoformat(), "stamp": meta_json(stamp())})


def resolve_encoder(store: Store, model=None, adapter=None, **kwargs):
    """The model of an ingest: ``model``/``adapter`` when given, else the store's own model,
    else the base SigLIP 2 (``kwargs``: ``device``, ``dtype``, ``batch_size``)."""
    from ..model import BASE_MODEL
    from .encoder import encoder_for_store, load_encoder

    meta = store.meta()
    if model is None and adapter is None and meta:
        return encoder_for_store(meta, **kwargs)
    return load_encoder(model or BASE_MODEL, adapter, **kwargs)


def finish(store: Store, summary: IngestSummary, ann_threshold: int, started: float) -> IngestSummary:
    """Compact the store, build its indices, and complete ``summary``."""
    if store.has(SOURCES):
        store.optimize()
        store.ensure_id_index()
        summary.search = store.ensure_vector_index(ann_threshold)
    summary.sources_in_store = store.count(SOURCES)
    summary.seconds = time.perf_counter() - started
    return summary


def store_batch(store, encoder, items: Sequence[Item], vectors: np.ndarray, failures: Sequence[Failure], summary: IngestSummary) -> int:
    """Write an embedded batch (:func:`write_batch`) and count it in ``summary``; returns
    the number of sources written."""
    written = write_batch(store, encoder, items, vectors, failures)
    summary.ok += written
    summary.failed += len(failures)
    for f in failures:
        log.warning("failed: %s: %s", f.task.source, f.reason)
        key = f.reason.split(":", 1)[0]
        summary.reasons[key] = summary.reasons.get(key, 0) + 1
    log.info("wrote %d sources, %d failures", written, len(failures))
    return written


def run_batches(store, encoder, loader, summary: IngestSummary, bar, optimize_every: int) -> None:
    """Embed and write each batch the loader yields (stages 2 and 3)."""
    since_optimize = 0
    for batch in loader:
        items = [r for r in batch if isinstance(r, Item)]
        failures = [r for r in batch if isinstance(r, Failure)]
        written = store_batch(store, encoder, items, embed_items(encoder, items), failures, summary)
        since_optimize += written
        if since_optimize >= optimize_every:
            store.optimize()  # compacts the small fragments of batch writes, refreshes indices
            store.ensure_id_index()  # so that the per-batch "already stored?" lookups stay lookups
            since_optimize = 0
        bar.n = summary.ok + summary.failed + summary.skipped
        bar.set_postfix(ok=summary.ok, failed=summary.failed, skipped=summary.skipped, refresh=False)
        bar.refresh()


def ingest(
    sources: Sequence[str | os.PathLike] = (),
    store: str | os.PathLike | Store = "survey.lance",
    *,
    model: str | None = None,
    adapter: str | None = None,
    encoder=None,
    catalog: str | os.PathLike | None = None,
    mosaics: Sequence[str | os.PathLike] = (),
    batch_size: int = 64,
    workers: int | None = None,
    ann_threshold: int = DEFAULT_ANN_THRESHOLD,
    retry_failed: bool = False,
    optimize_every: int = 20_000,
    device=None,
    dtype: str = "auto",
    progress: bool = True,
) -> IngestSummary:
    """Embed the images of ``sources`` (files, folders, glob patterns) and of ``catalog``
    rows cut from ``mosaics`` into the store, and return the run's counts.

    The model is ``encoder``, else ``model``/``adapter`` (see ``encoder.load_encoder``),
    else the store's own model, else the base SigLIP 2. A store built with another
    model refuses the run (:class:`~radioalign.survey.store.ModelMismatchError`).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    started = time.perf_counter()
    workers = default_workers() if workers is None else workers
    start_workers_early(workers)
    store = store if isinstance(store, Store) else Store(store)
    encoder = encoder or resolve_encoder(store, model, adapter, device=device, dtype=dtype, batch_size=batch_size)
    prepare_store(store, encoder)
    if retry_failed:
        log.info("retrying %d failed inputs", store.clear_errors())
    summary = IngestSummary(store=str(store.path))
    total = sum(1 for _ in iter_tasks(sources, catalog, mosaics))  # a cheap first pass, for the ETA
    loader = _loader(store, iter_tasks(sources, catalog, mosaics), batch_size, workers, summary)
    with tqdm(total=total, unit="src", desc="ingest", disable=not progress, dynamic_ncols=True) as bar:
        run_batches(store, encoder, loader, summary, bar, optimize_every)
        bar.n = summary.ok + summary.failed + summary.skipped
        bar.refresh()
    return finish(store, summary, ann_threshold, started)
