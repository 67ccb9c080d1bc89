"""The survey store: an embedded LanceDB database on disk.

Tables:

``sources``  one row per source: ``id`` (:func:`content_id`: what the source is, not
             where its file lies), ``name``, ``ra``, ``dec`` (degrees, null when
             unknown), ``source`` (the last path seen, or ``catalogue#name`` for a
             cut-out from a mosaic), ``thumbnail`` (PNG bytes of the 150 x 150 model
             input, north up), ``vector`` (the L2-normalised image embedding), ``model``
             (fingerprint), ``adapter``, ``preprocessing``, ``flags`` (e.g.
             ``orientation-unknown`` for a FITS without a celestial WCS) and ``created_at``;
``files``    one row per input seen: ``key`` (the resolved path, or the catalogue row),
             ``stamp`` (size and modification time, or the row's position and its
             mosaics' stamps), ``id`` (the source it gave) and ``seen_at``: a rerun skips
             an input whose stamp is unchanged without reading it again;
``errors``   one row per input that failed: ``id`` (:func:`source_id` of the key),
             ``key``, ``name``, ``source``, ``stamp``, ``reason``, ``created_at``;
``labels``   zero-shot labels: ``id``, ``prompts`` (the prompt set), ``label``,
             ``score``, ``probabilities`` (JSON ``{class: p}``), ``created_at``;
``meta``     ``key``/``value`` strings: the model fingerprint, model, adapter, model
             input preprocessing, dimension, provenance stamp.

A write is one LanceDB commit: a process killed mid-write leaves the table at its
previous version, so a source is either fully stored or absent. Writers take the
store's lock (:meth:`Store.writing`, an ``flock`` that the kernel releases when a
writer dies, so a killed ingest never leaves it stuck) around each check-and-write, so
two ingests into one store never store a source twice; readers take no lock (Lance
reads a committed version). Above ``ann_threshold``
rows the vector column gets LanceDB's IVF-PQ index (cosine), for readers of the store
alone; radioalign's own searches go through the index of :mod:`.ann`, kept beside the store.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..metrics.arrays import l2_normalize

log = logging.getLogger(__name__)

SOURCES, FILES, ERRORS, LABELS, META = "sources", "files", "errors", "labels", "meta"
LOCK_FILE = ".radioalign-write.lock"
DEFAULT_ANN_THRESHOLD = 100_000
MIN_ANN_ROWS = 256  # IVF-PQ trains 2**8 centroids per sub-vector: it needs at least this many rows


class StoreError(RuntimeError):
    """A store that cannot be used as asked (missing, or built with another model)."""


class ModelMismatchError(StoreError):
    """A query or ingest with a model other than the one the store was built with."""


def source_id(key: str) -> str:
    """The id of an input that failed (its pixels unread): the first 16 hex digits of the
    SHA-1 of its key (a file's resolved path, or ``<catalogue path>#<name>``)."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def content_id(data: np.ndarray, wcs=None, extra: str = "") -> str:
    """A source's id from what it is: the first 16 hex digits of the BLAKE2b hash of its
    pixels (shape, then the float64 values with NaN made canonical), its celestial WCS
    (the header astropy writes for it) and ``extra`` (a catalogue row's name and
    position). Copies and renamed files get the same id; new pixels a new one."""
    data = np.ascontiguousarray(data, dtype=np.float64)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr(data.shape).encode())
    digest.update(np.where(np.isnan(data), np.nan, data).tobytes())  # one NaN bit pattern
    if wcs is not None:
        digest.update(wcs.to_header_string(relax=True).encode())
    digest.update(extra.encode("utf-8"))
    return digest.hexdigest()


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def in_list(column: str, values: Iterable[str]) -> str:
    """A SQL ``column IN (...)`` filter with quoted values."""
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def sources_schema(dim: int):
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("ra", pa.float64()),
            pa.field("dec", pa.float64()),
            pa.field("source", pa.string()),
            pa.field("thumbnail", pa.binary()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("model", pa.string()),
            pa.field("adapter", pa.string()),
            pa.field("preprocessing", pa.string()),
            pa.field("flags", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def files_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("stamp", pa.string()),
            pa.field("id", pa.string()),
            pa.field("seen_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def errors_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("key", pa.string()),
            pa.field("name", pa.string()),
            pa.field("source", pa.string()),
            pa.field("stamp", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def labels_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("prompts", pa.string()),
            pa.field("label", pa.string()),
            pa.field("score", pa.float32()),
            pa.field("probabilities", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


class Store:
    """A LanceDB survey store at ``path`` (a folder, created on first write).

    Reads always see the latest committed version (``read_consistency_interval=0``), so a
    long-lived store object sees rows that another process or object has written since."""

    def __init__(self, path: str | os.PathLike):
        import lancedb

        self.path = Path(path)
        self.db = lancedb.connect(str(self.path), read_consistency_interval=_dt.timedelta(0))
        self._tables: dict = {}
        self._lock_depth = 0
        self._waited = False

    @contextlib.contextmanager
    def writing(self):
        """Hold the store's write lock for the block (re-entrant within this object).

        A second writer waits, saying so once on the log; the lock is an ``flock`` on
        ``LOCK_FILE``, which the kernel drops when its process ends, even by ``kill -9``."""
        import fcntl

        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # said once per store object: a concurrent ingest waits at every batch
                log.log(logging.DEBUG if self._waited else logging.WARNING,
                        "waiting for another process writing to the store at %s", self.path)  # fmt: skip
                self._waited = True
                fcntl.flock(handle, fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- tables -------------------------------------------------------------

    def has(self, name: str) -> bool:
        return name in self.db.list_tables().tables

    def table(self, name: str):
        if name not in self._tables:
            if not self.has(name):
                raise StoreError(f"the store at {self.path} has no {name!r} table (run `radioalign ingest` first)")
            self._tables[name] = self.db.open_table(name)
        return self._tables[name]

    def _create(self, name: str, schema):
        if not self.has(name):
            self.db.create_table(name, schema=schema, exist_ok=True)
        self._tables.pop(name, None)
        return self.table(name)

    def count(self, name: str = SOURCES) -> int:
        return self.table(name).count_rows() if self.has(name) else 0

    # -- metadata -----------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (empty for a new store)."""
        if not self.has(META):
            return {}
        rows = self.table(META).to_arrow().to_pylist()
        return {r["key"]: r["value"] for r in rows}

    def init_meta(self, values: dict[str, str]) -> None:
        """Write the metadata of a new store (the first ingest)."""
        import pyarrow as pa

        schema = pa.schema([pa.field("key", pa.string()), pa.field("value", pa.string())])
        table = self._create(META, schema)
        table.add(pa.table({"key": list(values), "value": [str(v) for v in values.values()]}, schema=schema))

    def check_model(self, fingerprint: str, what: str) -> None:
        """Refuse ``fingerprint`` when the store was built with another model."""
        meta = self.meta()
        stored = meta.get("fingerprint")
        if stored is not None and stored != fingerprint:
            raise ModelMismatchError(
                f"the store at {self.path} was built with model {meta.get('model')!r} adapter "
                f"{meta.get('adapter') or 'none'} (fingerprint {stored[:12]}), but this {what} uses a model with "
                f"fingerprint {fingerprint[:12]}. Use the store's model (omit --model/--adapter) or another store."
            )

    # -- rows ---------------------------------------------------------------

    def _lookup(self, name: str, column: str, values: Sequence[str], columns: Sequence[str]) -> list[dict]:
        """The rows of table ``name`` whose ``column`` is in ``values`` (a filtered scan; the
        BTREE indices on ``id`` and ``key`` make it a lookup)."""
        if not values or not self.has(name):
            return []
        query = self.table(name).search().where(in_list(column, values)).select(list(columns))
        return query.limit(len(values) * 64 + 1).to_arrow().to_pylist()

    def existing_ids(self, ids: Sequence[str], tables: Sequence[str] = (SOURCES, ERRORS)) -> set[str]:
        """Which of ``ids`` are already in ``tables``."""
        return {row["id"] for name in tables for row in self._lookup(name, "id", list(ids), ["id"])}

    def files_for(self, keys: Sequence[str]) -> dict[str, dict]:
        """``{key: {"stamp", "id"}}`` of the inputs among ``keys`` seen before."""
        return {r["key"]: r for r in self._lookup(FILES, "key", list(keys), ["key", "stamp", "id"])}

    def errors_for(self, keys: Sequence[str]) -> dict[str, str]:
        """``{key: stamp}`` of the inputs among ``keys`` that failed before."""
        return {r["key"]: r["stamp"] for r in self._lookup(ERRORS, "key", list(keys), ["key", "stamp"])}

    def ids_in_use(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` some input (a file or a catalogue row) still gives."""
        return {r["id"] for r in self._lookup(FILES, "id", list(ids), ["id"])}

    def add_sources(self, rows: list[dict], dim: int) -> None:
        import pyarrow as pa

        if rows:
            table = self._create(SOURCES, sources_schema(dim))
            table.add(pa.Table.from_pylist(rows, schema=sources_schema(dim)))

    def set_source_paths(self, paths: dict[str, str]) -> None:
        """Record ``{id: path}`` as the last path seen of those sources."""
        import pyarrow as pa

        if paths and self.has(SOURCES):
            update = pa.table({"id": list(paths), "source": list(paths.values())})
            self.table(SOURCES).merge_insert("id").when_matched_update_all().execute(update)

    def delete_sources(self, ids: Sequence[str]) -> None:
        if ids and self.has(SOURCES):
            self.table(SOURCES).delete(in_list("id", ids))

    def record_files(self, rows: list[dict]) -> None:
        """Insert or update ``files`` rows (``key``, ``stamp``, ``id``, ``seen_at``) by key."""
        import pyarrow as pa

        if rows:
            table = self._create(FILES, files_schema())
            data = pa.Table.from_pylist(rows, schema=files_schema())
            table.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(data)

    def add_errors(self, rows: list[dict]) -> None:
        """Record failures, replacing an earlier failure of the same input (key)."""
        import pyarrow as pa

        if rows:
            table = self._create(ERRORS, errors_schema())
            self.delete_errors([r["key"] for r in rows])
            table.add(pa.Table.from_pylist(rows, schema=errors_schema()))

    def delete_errors(self, keys: Sequence[str]) -> None:
        if keys and self.has(ERRORS):
            self.table(ERRORS).delete(in_list("key", keys))

    def clear_errors(self) -> int:
        """Delete every error row; returns how many."""
        n = self.count(ERRORS)
        if n:
            self.table(ERRORS).delete("true")
        return n

    def replace_labels(self, prompts: str, batches: Iterable[list[dict]]) -> int:
        """Replace the labels of prompt set ``prompts`` by the rows of ``batches``."""
        import pyarrow as pa

        table = self._create(LABELS, labels_schema())
        table.delete(f"prompts = {quote(prompts)}")
        n = 0
        for rows in batches:
            table.add(pa.Table.from_pylist(rows, schema=labels_schema()))
            n += len(rows)
        return n

    def rows_where(self, where: str, columns: Sequence[str], table: str = SOURCES, limit: int | None = None) -> list[dict]:
        if not self.has(table):
            return []
        query = self.table(table).search().where(where).select(list(columns))
        return query.limit(limit).to_arrow().to_pylist() if limit else query.to_arrow().to_pylist()

    def scan(self, columns: Sequence[str], batch_size: int = 4096, table: str = SOURCES):
        """The table's rows as pyarrow record batches of ``columns`` (bounded memory)."""
        if not self.has(table):
            return iter(())
        return self.table(table).search().select(list(columns)).to_batches(batch_size=batch_size)

    # -- maintenance --------------------------------------------------------

    def has_vector_index(self) -> bool:
        return self.has(SOURCES) and any("vector" in i.columns for i in self.table(SOURCES).list_indices())

    def ensure_id_index(self) -> None:
        """BTREE indices on the columns the ingest looks rows up by (``sources.id``,
        ``files.key``); built once, :meth:`optimize` keeps them current."""
        from lancedb.index import BTree

        for name, column in ((SOURCES, "id"), (FILES, "key")):
            if self.has(name):
                table = self.table(name)
                if not any(i.columns == [column] for i in table.list_indices()):
                    table.create_index(column, config=BTree(), replace=True)

    def optimize(self) -> None:
        """Compact the small fragments that batch writes leave and fold new rows into the
        indices (LanceDB ``optimize``)."""
        for name in (SOURCES, FILES, ERRORS):
            if self.has(name):
                self.table(name).optimize()

    def ensure_vector_index(self, ann_threshold: int = DEFAULT_ANN_THRESHOLD, **ivf_pq) -> str:
        """Build the IVF-PQ index once the store holds ``ann_threshold`` rows (at least
        ``MIN_ANN_ROWS``); returns ``"ivf_pq"`` or ``"exact"``. ``ivf_pq``: arguments of
        ``lancedb.index.IvfPq`` (``num_partitions``, ``num_sub_vectors`` ...; LanceDB's
        defaults otherwise)."""
        from lancedb.index import IvfPq

        n = self.count()
        if self.has_vector_index():
            return "ivf_pq"
        if n < max(ann_threshold, MIN_ANN_ROWS):
            return "exact"
        dim = len(self.table(SOURCES).search().select(["vector"]).limit(1).to_arrow().column("vector")[0])
        # 8 dimensions per sub-vector: at 768-d, 96 sub-vectors reached recall@10 = 1.00 with
        # nprobes 10 and refine 10 on 10^6 clustered vectors, where LanceDB's default 48 gave 0.93.
        ivf_pq.setdefault("num_sub_vectors", sub_vectors(dim))
        log.info("building the IVF-PQ index over %d vectors (%s)", n, ivf_pq)
        self.table(SOURCES).create_index("vector", config=IvfPq(distance_type="cosine", **ivf_pq), replace=True)
        return "ivf_pq"


def sub_vectors(dim: int, per: int = 8) -> int:
    """PQ sub-vectors for ``dim``-d vectors: about ``per`` dimensions each, dividing ``dim``."""
    n = max(1, dim // per)
    while dim % n:
        n -= 1
    return n


def open_store(path: str | os.PathLike, *, must_exist: bool = False) -> Store:
    """The store at ``path``; with ``must_exist`` a missing or empty store is an error."""
    path = Path(path)
    if must_exist and not (path.is_dir() and Store(path).has(SOURCES)):
        raise StoreError(f"no survey store at {path} (create one with `radioalign ingest ... --store {path}`)")
    return Store(path)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return l2_normalize(vectors, dtype=np.float32, zero_rows="keep")


def meta_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
