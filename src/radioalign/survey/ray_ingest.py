"""Ingest across machines with Ray Data (``radioalign ingest --ray [ADDRESS]``).

The same three stages as :mod:`radioalign.survey.ingest`, on a Ray cluster:

1. the driver walks the inputs and drops those already in the store (sources or
   errors), exactly as the single-process path does (:class:`~.ingest.TodoBatches`);
2. ``ray.data.from_items`` spreads the remaining tasks over CPU workers that read and
   preprocess them (:func:`read_batch`, ``map_batches`` with Ray tasks);
3. a pool of :class:`Embedder` actors, one GPU each where the cluster has GPUs, embeds
   them (``map_batches`` with a callable class);
4. the driver writes each embedded batch to the Lance store (:func:`~.ingest.store_batch`,
   one commit per batch), so resuming, duplicates and the errors table behave as without
   Ray, and only the driver needs to reach the store.

Every worker must be able to import radioalign and load the model: install the package
in the cluster's image (KubeRay) or share the virtual environment and the model folder
(SLURM). The driver loads the model too (on its CPU), for the fingerprint that the store
records; each actor's fingerprint is checked against it.

Inputs go to Ray in windows of ``window`` tasks, so the driver's memory stays bounded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict
from typing import Iterator, Sequence

import numpy as np

from .images import MIRABEST_SIZE
from .ingest import (
    Failure, IngestSummary, Item, Task, TodoBatches, check_inputs, finish, prologue, read_task, resolve_encoder, retry_mode,
    store_batch,
)  # fmt: skip
from .store import DEFAULT_ANN_THRESHOLD, ModelMismatchError, Store

log = logging.getLogger(__name__)

LOCAL = "local"  # --ray without an address: a Ray instance on this machine


def task_json(task: Task) -> str:
    return json.dumps(asdict(task))


def task_from_json(text: str) -> Task:
    fields = json.loads(text)
    fields["mosaics"] = tuple(fields["mosaics"])
    return Task(**fields)


def _nan_if_none(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def read_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stage 1 on a CPU worker: :func:`~.ingest.read_task` for each task of the batch.

    Columns out: ``task`` (JSON), ``ok``, ``id`` (the content id), ``image``
    (``(N, 150, 150)`` uint8, zeros where reading failed), ``thumbnail``, ``ra``, ``dec``
    (NaN when unknown), ``preprocessing``, ``flags`` and ``reason`` (empty for the rows
    read)."""
    results = [read_task(task_from_json(t)) for t in batch["task"]]
    items = [r if isinstance(r, Item) else None for r in results]
    blank = np.zeros((MIRABEST_SIZE, MIRABEST_SIZE), np.uint8)
    return {
        "task": np.asarray(batch["task"], dtype=object),
        "ok": np.array([it is not None for it in items], dtype=bool),
        "id": np.array([it.id if it else "" for it in items], dtype=object),
        "image": np.stack([it.image if it else blank for it in items]) if items else np.zeros((0, *blank.shape), np.uint8),
        "thumbnail": np.array([it.thumbnail if it else b"" for it in items], dtype=object),
        "ra": _nan_if_none(it.ra if it else None for it in items),
        "dec": _nan_if_none(it.dec if it else None for it in items),
        "preprocessing": np.array([it.preprocessing if it else "" for it in items], dtype=object),
        "flags": np.array([it.flags if it else "" for it in items], dtype=object),
        "reason": np.array(["" if isinstance(r, Item) else r.reason for r in results], dtype=object),
    }


class Embedder:
    """Stage 2 on an actor: the model, loaded once per actor (on its GPU when Ray gave it
    one), turns the batch's images into L2-normalised vectors. The images leave the
    batch; ``vector`` (zeros for rows that failed to read) and ``fingerprint`` join it."""

    def __init__(self, model: str, adapter: str | None, preprocessing: str, lowercase, dtype: str, batch_size: int):
        import torch

        from .encoder import load_encoder

        if not torch.cuda.is_available():
            # Ray sets OMP_NUM_THREADS=1 in a 1-CPU worker, so torch would run the model on one
            # core: a CPU embedder is the only one on its node, and reading is light beside it.
            torch.set_num_threads(os.cpu_count() or 1)
        self.encoder = load_encoder(model, adapter, dtype=dtype, batch_size=batch_size, preprocessing=preprocessing,
                                    lowercase=lowercase)  # fmt: skip

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray(batch["ok"], dtype=bool)
        vectors = np.zeros((len(ok), self.encoder.dim), np.float32)
        if ok.any():
            vectors[ok] = self.encoder.images(np.asarray(batch["image"])[ok])
        out = {key: value for key, value in batch.items() if key != "image"}
        out["vector"] = vectors
        out["fingerprint"] = np.array([self.encoder.fingerprint] * len(ok), dtype=object)
        return out


def unpack(batch: dict[str, np.ndarray]) -> tuple[list[Item], np.ndarray, list[Failure], set[str]]:
    """An embedded batch back to the single-process path's items, vectors and failures
    (and the fingerprints of the actors that embedded it)."""
    items, rows, failures = [], [], []
    for i, text in enumerate(batch["task"]):
        task = task_from_json(text)
        if batch["ok"][i]:
            ra, dec = (float(batch[c][i]) for c in ("ra", "dec"))
            # the image stays on the actor: the store keeps the thumbnail and the vector
            items.append(Item(task, str(batch["id"][i]), None, bytes(batch["thumbnail"][i]), None if np.isnan(ra) else ra,
                              None if np.isnan(dec) else dec, str(batch["preprocessing"][i]), str(batch["flags"][i])))  # fmt: skip
            rows.append(i)
        else:
            failures.append(Failure(task, str(batch["reason"][i])))
    vectors = np.asarray(batch["vector"], np.float32)[rows]
    return items, vectors, failures, {str(f) for f, ok in zip(batch["fingerprint"], batch["ok"]) if ok}


@contextlib.contextmanager
def ray_session(address: str | None = LOCAL, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration of the block: a local instance (``address`` None or
    ``"local"``, ``num_cpus`` cores) or the cluster at ``address`` (``"auto"``, a
    ``host:port`` of a head node, or ``ray://host:10001``). A Ray already initialised by
    the caller is used as it is and left running."""
    import ray

    if ray.is_initialized():
        yield
        return
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address in (None, LOCAL):
        ray.init(num_cpus=num_cpus or os.cpu_count(), **options)
    else:
        ray.init(address=address, **options)
    try:
        yield
    finally:
        ray.shutdown()


def embedder_pool(num_gpus_each: float) -> tuple[int, float]:
    """``(actors, gpus per actor)``: one actor per GPU of the cluster, else one on CPU."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0)) if num_gpus_each else 0
    return (gpus, num_gpus_each) if gpus else (1, 0.0)


def pipeline(tasks: Sequence[Task], encoder, batch_size: int, actors: int | None = None, gpus_each: float = 1.0):
    """The Ray Data plan of one window of tasks: read on CPU workers, embed on actors."""
    import ray

    pool, gpus = embedder_pool(gpus_each)
    ds = ray.data.from_items([{"task": task_json(t)} for t in tasks], override_num_blocks=max(1, len(tasks) // batch_size))
    # Half a CPU per read task: reading then stays a task operator beside the embedding actor
    # (Ray Data fuses a map into the next actor map when their resources agree, and the
    # actor would then read and embed in turn instead of at once).
    ds = ds.map_batches(read_batch, batch_size=batch_size, batch_format="numpy", num_cpus=0.5)
    spec = dict(model=encoder.model_id, adapter=encoder.adapter, preprocessing=encoder.preprocessing,
                lowercase=encoder.lowercase, dtype=encoder.dtype, batch_size=batch_size)  # fmt: skip
    resources = {"num_gpus": gpus} if gpus else {"num_cpus": 1}  # Ray warns when a map asks for both
    return ds.map_batches(
        Embedder, fn_constructor_kwargs=spec, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors or pool), **resources,
    )  # fmt: skip


def windows(store: Store, tasks, batch_size: int, window: int, summary: IngestSummary, retry=None) -> Iterator[list[Task]]:
    """The tasks not yet in the store, in lists of about ``window``."""
    todo: list[Task] = []
    for batch in TodoBatches(store, tasks, batch_size, summary, retry):
        todo.extend(batch)
        if len(todo) >= window:
            yield todo
            todo = []
    if todo:
        yield todo


def ingest_ray(
    sources: Sequence = (),
    store: str | os.PathLike | Store = "survey.lance",
    *,
    address: str | None = LOCAL,
    model: str | None = None,
    adapter: str | None = None,
    encoder=None,
    catalog=None,
    mosaics: Sequence = (),
    catalog_columns: dict | None = None,
    batch_size: int = 64,
    actors: int | None = None,
    num_cpus: int | None = None,
    window: int = 100_000,
    ann_threshold: int = DEFAULT_ANN_THRESHOLD,
    retry_failed: bool | str | None = None,
    dtype: str = "auto",
    progress: bool = True,
) -> IngestSummary:
    """:func:`~radioalign.survey.ingest.ingest` on Ray (see the module's docstring).

    ``address``: ``"local"`` (a Ray instance on this machine with ``num_cpus`` cores),
    ``"auto"`` or a head node's address. ``actors``: embedding actors (default: one per
    GPU of the cluster, else one). The driver's ``encoder`` (else ``model``/``adapter``,
    else the store's model) names the model the actors load."""
    from concurrent.futures import ThreadPoolExecutor

    if batch_size < 1 or window < 1:
        raise ValueError("batch_size and window must be >= 1")
    retry_mode(retry_failed)
    check_inputs(sources, catalog, mosaics, catalog_columns)
    started = time.perf_counter()
    store = store if isinstance(store, Store) else Store(store)
    with ThreadPoolExecutor(1) as pool:  # the driver's model loads while Ray starts (each takes seconds)
        loading = None if encoder else pool.submit(resolve_encoder, store, model, adapter, device="cpu", dtype=dtype,
                                                   batch_size=batch_size)  # fmt: skip
        with ray_session(address, num_cpus):
            store, encoder, summary, tasks, retry = prologue(
                sources, store, catalog=catalog, mosaics=mosaics, catalog_columns=catalog_columns, batch_size=batch_size,
                retry_failed=retry_failed, encoder=encoder, load=lambda _: loading.result())  # fmt: skip
            run_windows(store, encoder, tasks, summary, retry, batch_size, window, actors, progress)
    return finish(store, summary, ann_threshold, started)


def run_windows(store: Store, encoder, tasks, summary: IngestSummary, retry, batch_size: int, window: int, actors, progress: bool):
    """Every window of tasks through the Ray pipeline, each embedded batch written by the driver."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = progress
    for todo in windows(store, tasks, batch_size, window, summary, retry):
        for batch in pipeline(todo, encoder, batch_size, actors).iter_batches(batch_size=batch_size, batch_format="numpy"):
            items, vectors, failures, fingerprints = unpack(batch)
            if fingerprints - {encoder.fingerprint}:
                raise ModelMismatchError(f"a Ray actor loaded {encoder.model_id!r} as another model (fingerprint "
                                         f"{sorted(fingerprints)[0][:12]}, expected {encoder.fingerprint[:12]})")  # fmt: skip
            store_batch(store, encoder, items, vectors, failures, summary)
        with store.writing():
            store.optimize()  # as the single-process path does every 20,000 sources
            store.ensure_id_index()
