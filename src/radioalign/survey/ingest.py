"""Ingest: survey inputs -> model input -> image vectors -> the store.

Three stages over batches, kept apart so that another executor (Ray, a cluster) can
run them: :func:`read_task` (read and preprocess one input, in DataLoader workers),
:func:`embed_items` (the model, in the main process) and :func:`write_batch` (one
LanceDB commit under the store's write lock). :func:`ingest` chains them with a PyTorch
``DataLoader`` whose batch sampler (:class:`TodoBatches`) walks the inputs lazily and
drops those already seen unchanged, so memory stays bounded whatever the number of
sources, reading overlaps the model, and a rerun after a crash (even ``kill -9``)
stores each source exactly once and recomputes nothing that was written.

Identity: a source's id is a hash of what it is (its pixels and WCS; a catalogue row's
name, position and cut-out pixels: :func:`~.store.content_id`), computed from the
pixels the worker has just read, so it costs no second read of the file. Copying or
renaming files adds nothing (the source's path becomes the last one seen); new pixels
in a file re-embed it and replace its row. The ``files`` table remembers each input's
size and modification time, so a rerun skips an unchanged file without reading it.
Two ingests into one store may run at once: each write re-checks under the store's
lock, so no source is stored twice.

Bad input never stops a run: any failure while walking, reading or preprocessing one
input is recorded in the ``errors`` table with its reason, and the run goes on. A failed
input is retried by later runs only with ``retry_failed`` (``"changed"``: when its file
changed since; ``"all"``: every one). A mistake in the run itself (a folder or pattern
that matches nothing, a catalogue without coordinates, a store made by another model)
is an :class:`InputError` or a ``StoreError`` before anything is written.
"""

from __future__ import annotations

import errno
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
from .images import RECIPE, BadImageError, model_image, png_bytes
from .readers import best_mosaic, cut_from_mosaic, read_file, source_name
from .store import DEFAULT_ANN_THRESHOLD, SOURCES, Store, StoreError, content_id, meta_json, now, source_id

log = logging.getLogger(__name__)


class InputError(ValueError):
    """A mistake in the run itself (not in one input): nothing is written."""


@dataclass(frozen=True)
class Task:
    """One input to ingest: a file, or a catalogue row to cut from ``mosaics``.

    ``key`` names the input (a file's resolved path, ``<catalogue>#<name>``); ``stamp``
    says whether it changed (a file's size and modification time; a row's position and
    its mosaics' stamps); ``problem``, when set, is why it cannot be read at all (a
    symlink loop, a file that vanished), found while walking."""

    key: str
    name: str
    source: str
    kind: str  # "file" or "catalog"
    stamp: str = ""
    ra: float | None = None
    dec: float | None = None
    mosaics: tuple[str, ...] = ()
    problem: str = ""

    @property
    def failure_id(self) -> str:
        return source_id(self.key)


@dataclass
class Item:
    """A task read and preprocessed: the model input and what the store records."""

    task: Task
    id: str  # from the content (store.content_id)
    image: np.ndarray | None  # (150, 150) uint8, north up
    thumbnail: bytes
    ra: float | None
    dec: float | None
    preprocessing: str
    flags: str = ""


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


def _walk(folder: Path) -> Iterator[tuple[Path, str]]:
    """``(path, problem)`` for the files under ``folder``, sorted, hidden entries skipped;
    folder links are followed, but a link back into a folder already walked (a loop)
    is reported as a problem instead."""
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True, onerror=None):
        st = os.stat(root)
        seen.add((st.st_dev, st.st_ino))
        keep = []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            try:
                target = os.stat(os.path.join(root, d))
            except OSError as err:
                yield Path(root) / d, f"unreadable folder: {err.strerror or err}"
                continue
            if (target.st_dev, target.st_ino) in seen or Path(root, d).resolve() in Path(root).resolve().parents:
                yield Path(root) / d, "symlink loop: a folder link back into a folder being walked"
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(f for f in files if not f.startswith(".")):
            yield Path(root) / name, ""


def iter_paths(sources: Iterable[str | os.PathLike], problems: bool = False) -> Iterator:
    """Files named by ``sources``: files as given, folders walked recursively in sorted
    order (hidden entries skipped, links followed, loops reported), glob patterns
    expanded. With ``problems``, ``(path, problem)`` pairs (``problem`` empty when the
    entry looked fine)."""
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = _walk(path)
        elif not path.exists() and glob.has_magic(str(source)):
            found = ((Path(p), "") for p in sorted(glob.iglob(str(path), recursive=True)) if not Path(p).is_dir())
        else:
            found = iter([(path, "")])
        for item in found:
            yield item if problems else item[0]


def check_sources(sources: Iterable[str | os.PathLike]) -> None:
    """Raise :class:`InputError` when a source matches nothing: a missing file or folder,
    an empty folder, a glob pattern without a match."""
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            if next(iter_paths([path]), None) is None:
                raise InputError(f"the folder {source} holds no files")
        elif not path.exists() and not os.path.islink(path):
            if glob.has_magic(str(source)):
                if next(iter_paths([source]), None) is None:
                    raise InputError(f"the pattern {source!r} matches no file")
            else:
                raise InputError(f"no such file or folder: {source}")


def file_stamp(path: str | os.PathLike) -> str:
    """``size:mtime_ns`` of a file (raises ``OSError`` when it cannot be seen)."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_task(path: Path, problem: str = "") -> Task:
    """The task of one walked path; what cannot be resolved or seen becomes its problem."""
    name = source_name(path)
    try:
        resolved = str(path.resolve(strict=False))
    except (RuntimeError, OSError) as err:  # Python raises RuntimeError on a symlink loop
        return Task(key=os.path.abspath(path), name=name, source=os.path.abspath(path), kind="file",
                    problem=f"symlink loop or unresolvable path ({err})")  # fmt: skip
    if not problem:
        try:
            return Task(key=resolved, name=name, source=resolved, kind="file", stamp=file_stamp(resolved))
        except OSError as err:
            problem = "symlink loop" if err.errno == errno.ELOOP else "no such file" if err.errno == errno.ENOENT else (
                f"cannot stat the file: {err.strerror}")  # fmt: skip
    return Task(key=resolved, name=name, source=resolved, kind="file", problem=problem)


def file_tasks(sources: Iterable[str | os.PathLike]) -> Iterator[Task]:
    for path, problem in iter_paths(sources, problems=True):
        yield file_task(path, problem)


def mosaic_stamps(mosaics: Sequence[str]) -> str:
    """The mosaics' paths and stamps: a catalogue row is redone when a mosaic changes."""
    parts = []
    for m in mosaics:
        try:
            parts.append(f"{m}:{file_stamp(m)}")
        except OSError:
            parts.append(f"{m}:missing")
    return "|".join(parts)


def catalog_tasks(catalog: str | os.PathLike, mosaics: Sequence[str | os.PathLike], columns: dict | None = None) -> Iterator[Task]:
    """One task per catalogue row; the mosaic is chosen when the row is read."""
    from .catalogs import read_catalog

    catalog = str(Path(catalog).expanduser().resolve())
    mosaics = tuple(str(Path(m).expanduser().resolve()) for m in mosaics)
    stamps = mosaic_stamps(mosaics)
    for name, ra, dec in read_catalog(catalog, **catalog_options(columns)):
        ra, dec = _float_or_none(ra), _float_or_none(dec)
        yield Task(key=f"{catalog}#{name}", name=name, source=f"{catalog}#{name}", kind="catalog",
                   stamp=f"{ra!r},{dec!r}|{stamps}", ra=ra, dec=dec, mosaics=mosaics)  # fmt: skip


def catalog_options(columns: dict | None) -> dict:
    """``--ra-col/--dec-col/--name-col`` as the catalogue reader's keywords."""
    columns = columns or {}
    return {f"{k}_col": v for k, v in columns.items() if v and k in ("ra", "dec", "name")}


def _float_or_none(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def check_inputs(sources: Sequence = (), catalog=None, mosaics: Sequence = (), columns: dict | None = None) -> None:
    """Every run-level mistake, before a store is opened (:class:`InputError`)."""
    check_sources(sources)
    if catalog is not None:
        from .catalogs import open_catalog

        if not mosaics:
            raise InputError("a catalogue needs at least one mosaic (--mosaic FITS ...)")
        missing = [str(m) for m in mosaics if not Path(m).expanduser().is_file()]
        if missing:
            raise InputError(f"no such mosaic: {missing[0]}")
        open_catalog(Path(catalog).expanduser(), **catalog_options(columns))  # raises on missing columns


def iter_tasks(sources: Sequence = (), catalog=None, mosaics: Sequence = (), columns: dict | None = None) -> Iterator[Task]:
    """Every input: the files of ``sources``, then the rows of ``catalog``."""
    yield from file_tasks(sources)
    if catalog is not None:
        if not mosaics:
            raise InputError("a catalogue needs at least one mosaic (--mosaic FITS ...)")
        yield from catalog_tasks(catalog, mosaics, columns)


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
    """Read one input, make its model input and its content id; never raises: a failure
    is returned with its reason (the exception's type and message)."""
    try:
        if task.problem:
            raise OSError(task.problem)
        if task.kind == "file":
            if not Path(task.source).is_file():
                raise FileNotFoundError("no such file" if not os.path.exists(task.source) else "not a regular file")
            if os.path.getsize(task.source) == 0:
                raise BadImageError("empty file (0 bytes)")
        picture = read_file(task.source) if task.kind == "file" else _read_catalog_row(task)
        extra = f"{task.name}@{task.ra!r},{task.dec!r}" if task.kind == "catalog" else ""
        image, preprocessing = model_image(picture)
        flags = "orientation-unknown" if picture.fits and picture.wcs is None else ""
        return Item(task, content_id(picture.data, picture.wcs, extra), image, png_bytes(image), picture.ra, picture.dec,
                    preprocessing, flags)  # fmt: skip
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


def new_items(store: Store, items: Sequence[Item]) -> list[Item]:
    """The items whose source is not in the store yet (one per id): those to embed."""
    present = store.existing_ids([it.id for it in items], (SOURCES,))
    fresh: dict[str, Item] = {}
    for it in items:
        if it.id not in present:
            fresh.setdefault(it.id, it)
    return list(fresh.values())


def source_rows(items: Sequence[Item], vectors: np.ndarray, encoder) -> list[dict]:
    created = now()
    return [
        {
            "id": it.id, "name": it.task.name, "ra": it.ra, "dec": it.dec, "source": it.task.source,
            "thumbnail": it.thumbnail, "vector": vec.tolist(), "model": encoder.fingerprint,
            "adapter": encoder.adapter or "", "preprocessing": f"{it.preprocessing}; model input {encoder.preprocessing}",
            "flags": it.flags, "created_at": created,
        }  # fmt: skip
        for it, vec in zip(items, vectors)
    ]


def error_rows(failures: Sequence[Failure]) -> list[dict]:
    created = now()
    return [
        {"id": f.task.failure_id, "key": f.task.key, "name": f.task.name, "source": f.task.source,
         "stamp": f.task.stamp, "reason": f.reason, "created_at": created}  # fmt: skip
        for f in failures
    ]


def write_batch(store: Store, encoder, items: Sequence[Item], vectors: np.ndarray, failures: Sequence[Failure],
                embedded: Sequence[Item] | None = None) -> int:  # fmt: skip
    """Store a batch under the store's write lock, and return the number of new sources.

    ``embedded`` are the items that ``vectors`` belong to (default: all of ``items``).
    Under the lock, sources that reached the store since they were embedded (another
    ingest, a copy) are not written again; every item's input is recorded in ``files``,
    the last path of a source already stored is updated, and a source whose file now
    holds other pixels (and that no other input gives) is deleted."""
    embedded = items if embedded is None else embedded
    with store.writing():
        present = store.existing_ids([it.id for it in embedded], (SOURCES,))
        keep, seen = [], set(present)
        for i, it in enumerate(embedded):
            if it.id not in seen:
                keep.append(i)
                seen.add(it.id)
        store.add_sources(source_rows([embedded[i] for i in keep], vectors[keep], encoder), encoder.dim)
        written = {embedded[i].id for i in keep}
        store.set_source_paths({it.id: it.task.source for it in items if it.id not in written and it.task.kind == "file"})
        before = store.files_for([it.task.key for it in items])
        stamp_time = now()
        store.record_files([{"key": it.task.key, "stamp": it.task.stamp, "id": it.id, "seen_at": stamp_time} for it in items])
        replaced = {row["id"] for key, row in before.items() if row["id"]} - {it.id for it in items}
        store.delete_sources(sorted(replaced - store.ids_in_use(sorted(replaced))))
        store.delete_errors([it.task.key for it in items])
        store.add_errors(error_rows(failures))
    return len(keep)


# ---------------------------------------------------------------------------
# The loop


RETRY = (None, "changed", "all")


def retry_mode(retry_failed) -> str | None:
    """``retry_failed`` as one of ``RETRY`` (``True`` means ``"changed"``)."""
    mode = {False: None, True: "changed"}.get(retry_failed, retry_failed) if isinstance(retry_failed, bool) else retry_failed
    if mode not in RETRY:
        raise ValueError(f"retry_failed must be one of {RETRY}, not {retry_failed!r}")
    return mode


class TodoBatches:
    """The DataLoader's batch sampler: batches of ``batch_size`` tasks drawn lazily from
    ``tasks``, less those seen before with the same stamp, and less earlier failures
    unless ``retry`` says to try them again (counted in ``summary.skipped``). It runs in
    the main process, the only one that opens the store."""

    def __init__(self, store: Store, tasks: Iterable[Task], batch_size: int, summary: IngestSummary, retry: str | None = None):
        self.store, self.tasks, self.batch_size, self.summary, self.retry = store, tasks, batch_size, summary, retry

    def wanted(self, task: Task, seen: dict, failed: dict) -> bool:
        if task.key in failed:
            return self.retry == "all" or (self.retry == "changed" and failed[task.key] != task.stamp)
        return not task.stamp or task.key not in seen or seen[task.key]["stamp"] != task.stamp

    def __iter__(self) -> Iterator[list[Task]]:
        for chunk in batched(self.tasks, self.batch_size):
            unique = list({t.key: t for t in chunk}.values())
            keys = [t.key for t in unique]
            seen, failed = self.store.files_for(keys), self.store.errors_for(keys)
            todo = [t for t in unique if self.wanted(t, seen, failed)]
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


def _loader(store, tasks, batch_size: int, workers: int, summary, retry: str | None = None):
    from torch.utils.data import DataLoader

    sampler = TodoBatches(store, tasks, batch_size, summary, retry)
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
    """Record the model in a new store, or check that an existing store used the same
    model and the same preprocessing recipe (a store of another recipe holds vectors of
    other pictures: mixing them would make searches wrong)."""
    with store.writing():
        meta = store.meta()
        if meta:
            store.check_model(encoder.fingerprint, "ingest")
            if meta.get("recipe", RECIPE) != RECIPE:
                raise StoreError(
                    f"the store at {store.path} was made with preprocessing {meta.get('recipe')!r}, this version uses "
                    f"{RECIPE!r} (FITS images now reach the model north up): ingest into a new store"
                )
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


def prologue(sources, store, *, catalog=None, mosaics: Sequence = (), catalog_columns: dict | None = None, batch_size: int = 64,
             retry_failed=None, encoder=None, load=None):  # fmt: skip
    """What every ingest does first, with or without Ray: check the run's inputs and
    options (nothing written yet), open the store, resolve the model (``load()`` when no
    ``encoder`` is given; it may already be running), record it in the store or check it
    against the store's, and lazily walk the inputs. Returns ``(store, encoder, summary,
    tasks, retry)``."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    retry = retry_mode(retry_failed)
    check_inputs(sources, catalog, mosaics, catalog_columns)
    store = store if isinstance(store, Store) else Store(store)
    encoder = encoder or load(store)
    prepare_store(store, encoder)
    summary = IngestSummary(store=str(store.path))
    return store, encoder, summary, iter_tasks(sources, catalog, mosaics, catalog_columns), retry


def finish(store: Store, summary: IngestSummary, ann_threshold: int, started: float) -> IngestSummary:
    """Compact the store, build its indices, and complete ``summary``."""
    if store.has(SOURCES):
        with store.writing():
            store.optimize()
            store.ensure_id_index()
            store.ensure_vector_index(ann_threshold)  # LanceDB's own IVF-PQ, for readers of the store alone
        from .ann import ensure_saved

        summary.search = ensure_saved(store)  # the index radioalign's searches use, saved beside the store
    summary.sources_in_store = store.count(SOURCES)
    summary.seconds = time.perf_counter() - started
    return summary


def store_batch(store, encoder, items: Sequence[Item], vectors: np.ndarray, failures: Sequence[Failure], summary: IngestSummary,
                embedded: Sequence[Item] | None = None) -> int:  # fmt: skip
    """Write an embedded batch (:func:`write_batch`) and count it in ``summary``: new
    sources as ``ok``, inputs whose source was already stored (a copy, a touched file)
    as ``skipped``; returns the number of sources written."""
    written = write_batch(store, encoder, items, vectors, failures, embedded)
    summary.ok += written
    summary.skipped += len(items) - written
    summary.failed += len(failures)
    for f in failures:
        log.warning("failed: %s: %s", f.task.source, f.reason)
        key = f.reason.split(":", 1)[0]
        summary.reasons[key] = summary.reasons.get(key, 0) + 1
    log.info("wrote %d sources, %d failures", written, len(failures))
    return written


def run_batches(store, encoder, loader, summary: IngestSummary, bar, optimize_every: int) -> None:
    """Embed the new sources of each batch the loader yields and write the batch."""
    since_optimize = 0
    for batch in loader:
        items = [r for r in batch if isinstance(r, Item)]
        failures = [r for r in batch if isinstance(r, Failure)]
        fresh = new_items(store, items)  # copies and touched files are not embedded again
        written = store_batch(store, encoder, items, embed_items(encoder, fresh), failures, summary, fresh)
        since_optimize += written
        if since_optimize >= optimize_every:
            with store.writing():
                store.optimize()  # compacts the small fragments of batch writes, refreshes indices
                store.ensure_id_index()  # so that the per-batch lookups stay lookups
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
    catalog_columns: dict | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    ann_threshold: int = DEFAULT_ANN_THRESHOLD,
    retry_failed: bool | str | None = None,
    optimize_every: int = 20_000,
    device=None,
    dtype: str = "auto",
    progress: bool = True,
) -> IngestSummary:
    """Embed the images of ``sources`` (files, folders, glob patterns) and of ``catalog``
    rows cut from ``mosaics`` into the store, and return the run's counts.

    The model is ``encoder``, else ``model``/``adapter`` (see ``encoder.load_encoder``),
    else the store's own model, else the base SigLIP 2. A store built with another
    model refuses the run (:class:`~radioalign.survey.store.ModelMismatchError`), and a
    source or catalogue that matches nothing is an :class:`InputError`, both before
    anything is written. ``catalog_columns``: ``{"ra", "dec", "name"}`` column names
    that override the catalogue reader's guesses. ``retry_failed``: None (earlier
    failures stay failed), ``"changed"`` (retry those whose file changed) or ``"all"``.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    retry_mode(retry_failed)
    check_inputs(sources, catalog, mosaics, catalog_columns)  # before the workers start
    started = time.perf_counter()
    workers = default_workers() if workers is None else workers
    start_workers_early(workers)

    def load(st):
        return resolve_encoder(st, model, adapter, device=device, dtype=dtype, batch_size=batch_size)

    store, encoder, summary, tasks, retry = prologue(sources, store, catalog=catalog, mosaics=mosaics, catalog_columns=catalog_columns,
                                                     batch_size=batch_size, retry_failed=retry_failed, encoder=encoder, load=load)  # fmt: skip
    total = sum(1 for _ in iter_paths(sources)) + (sum(1 for _ in _catalog_rows(catalog, catalog_columns)) if catalog else 0)
    loader = _loader(store, tasks, batch_size, workers, summary, retry)
    with tqdm(total=total, unit="src", desc="ingest", disable=not progress, dynamic_ncols=True) as bar:
        run_batches(store, encoder, loader, summary, bar, optimize_every)
        bar.n = summary.ok + summary.failed + summary.skipped
        bar.refresh()
    return finish(store, summary, ann_threshold, started)


def _catalog_rows(catalog, columns):
    from .catalogs import read_catalog

    return read_catalog(Path(catalog).expanduser(), **catalog_options(columns))
