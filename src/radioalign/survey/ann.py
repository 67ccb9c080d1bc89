"""The store's vector index: held in memory, persisted beside the store, kept in step with it.

LanceDB stays the store of record; this index answers the queries. Below ``EXACT_BELOW``
sources a query is scored against every vector (numpy, the vectors in memory: about 3 ms
at 10^4 x 768 on one core). From ``EXACT_BELOW`` on, a FAISS ``IndexHNSWSQ`` (HNSW graph,
``M`` 32, over 8-bit scalar-quantised vectors: 768 bytes per 768-d vector and some 260 of
graph links; the saved graph took 1.0 KB per source at 10^5) proposes ``max(ef, REFINE * k)``
candidates, which are re-scored exactly on their float32 vectors, read from
``vectors.f32``, a copy beside the index, with ``pread`` (:class:`VectorFile`: the vectors
stay in the page cache, not in the process). Chosen by ``make bench-survey``: at 10^5 the HNSW graphs (FAISS, hnswlib)
answered at recall@10 >= 0.95 on both data sets with p95 under 0.5 ms, where IVF-PQ with
exact refinement needed 16 of its lists on the hard set; of the two, FAISS puts 8-bit codes
under the graph (hnswlib keeps float32: 3.2 KB per source), which is what holds 10^6
sources within the 1.5 GB goal.

**One ranking everywhere.** Every path (exact, HNSW, cone) ends in :func:`rank`: each
candidate's score is the cosine of the normalised query with the stored vector, summed in
float64 row by row (so it does not depend on which other rows were scored with it), and
ties are broken by id. Where the index's candidates hold the exact top k, the results
equal exact search's, ties included.

**In step with the store.** The index records the ``sources`` table's version, row count
and a digest of its ids (an id is a hash of a source's content, so the sorted ids name the
vectors). Before each query, a ``stat`` of the table's ``_versions`` folder tells whether
anything was committed since (LanceDB's own version check costs about 0.4 ms; the ``stat``
about 2 us, and the version is asked as well while that folder's time is under
``RECENT_S`` old, in case two commits share its time stamp). On a new version the ids and
positions are read again (not the vectors: about 0.5 s at 10^6): unchanged ids refresh names
and paths; added sources are fetched and added to the graph, deleted ones are masked out of
every search (a FAISS ``IDSelectorBitmap``); past ``REBUILD_FRACTION`` of changes, or across
``EXACT_BELOW``, the index is built again. An index on disk is loaded only if its format,
dimension and model match, and is then brought up to the store's version the same way, so
a stale index is never served.

Cones: rows are picked from the in-memory positions (a Dec band by binary search in a
Dec-sorted order, an RA window, then the exact haversine separation); a cone holding at
most ``CONE_EXACT`` sources is scored exactly, a larger one through the graph restricted
to the cone's rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from ..metrics.arrays import l2_normalize
from .store import SOURCES, Store

log = logging.getLogger(__name__)

FORMAT = 1
DIRNAME = "_radioalign_ann"  # beside the store's tables (LanceDB lists only *.lance folders)
EXACT_BELOW = 10_000
HNSW_M = 32
EF_CONSTRUCTION = 80
EF_SEARCH = 64  # make bench-survey at 10^5 tuned ef to 24 (clustered) and 32 (hard) for recall@10 >= 0.95: a margin
REFINE = 2  # candidates re-ranked exactly: REFINE * k (8-bit codes order them nearly as the float vectors do)
CONE_EXACT = 20_000
REBUILD_FRACTION = 0.1
RECENT_S = 2.0
META_COLUMNS = ("id", "name", "ra", "dec", "source")
READ_ROWS = 16_384  # rows per page when the vectors are read from the store


# ---------------------------------------------------------------------------
# Reading the store


def pinned_sources(store: Store):
    """The ``sources`` table fixed at its latest version, and that version."""
    table = store.db.open_table(SOURCES)
    version = table.version
    table.checkout(version)
    return table, version


def read_meta(table):
    """``id, name, ra, dec, source`` of every row (a pyarrow Table; no vectors)."""
    return table.search().select(list(META_COLUMNS)).to_arrow().combine_chunks()


def ids_digest(ids: np.ndarray) -> str:
    """A digest of a set of ids (order ignored): the vectors they name."""
    return hashlib.blake2b(np.sort(ids).tobytes(), digest_size=16).hexdigest()


def id_bytes(column) -> np.ndarray:
    return np.array(column.to_pylist(), dtype="S16")


def vectors_of(table, ids: list[str], dim: int) -> dict[bytes, np.ndarray]:
    """The stored vectors of ``ids`` (``{id: vector}``), read 1,000 ids at a time."""
    from .store import in_list

    found = {}
    for i in range(0, len(ids), 1000):
        rows = table.search().where(in_list("id", ids[i : i + 1000])).select(["id", "vector"]).limit(1_000_000).to_arrow()
        vecs = rows.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        found.update(zip(id_bytes(rows.column("id")), vecs.astype(np.float32)))
    return found


class VectorFile:
    """The rows of a float32 ``n x dim`` file, read on demand with ``pread`` (a run of
    consecutive labels in one call). The vectors stay in the kernel's page cache, shared and
    reclaimable, and out of this process's resident memory: a memory map would count every
    page a query touched (with the kernel's fault-around, some 64 KB per 3 KB row) as this
    process's, growing with each query towards the whole file (3 GB at 10^6 sources)."""

    def __init__(self, path: Path, rows: int, dim: int):
        self.path, self.shape, self.dtype = Path(path), (rows, dim), np.dtype(np.float32)
        self._fd = os.open(path, os.O_RDONLY)  # kept open: a file replaced or removed later still reads
        weakref.finalize(self, os.close, self._fd)
        self._row = dim * 4
        if os.fstat(self._fd).st_size < rows * self._row:
            raise ValueError(f"{path} holds fewer than {rows} vectors")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, labels) -> np.ndarray:
        labels = np.arange(len(self))[labels] if isinstance(labels, slice) else np.asarray(labels, np.int64).ravel()
        out = np.empty((len(labels), self.shape[1]), np.float32)
        if not len(labels):
            return out
        breaks = np.flatnonzero(np.diff(labels) != 1) + 1
        for start, end in zip(np.r_[0, breaks], np.r_[breaks, len(labels)]):
            size = int(end - start) * self._row
            data = os.pread(self._fd, size, int(labels[start]) * self._row)
            if len(data) != size:
                raise OSError(f"{self.path} was cut short: the index must be built again")
            out[start:end] = np.frombuffer(data, np.float32).reshape(-1, self.shape[1])
        return out


def vector_file(path: Path, rows: int, dim: int):
    """Stored vectors read on demand (:class:`VectorFile`); a memory map where the
    platform has no ``pread`` (Windows)."""
    if hasattr(os, "pread"):
        return VectorFile(path, rows, dim)
    return np.memmap(path, np.float32, "r", shape=(rows, dim))


def copy_vectors(table, path: Path | None, dim: int):
    """Every row's ``id, name, ra, dec, source`` and vector, in the table's order: the
    vectors into ``path`` (float32, ``n x dim``) when given, else into memory."""
    import pyarrow as pa

    metas, blocks = [], []
    out = open(path, "wb") if path is not None else None
    try:
        for batch in table.search().select([*META_COLUMNS, "vector"]).to_batches(READ_ROWS):
            vecs = batch.column("vector").flatten().to_numpy().reshape(-1, dim).astype(np.float32, copy=False)
            out.write(vecs.tobytes()) if out is not None else blocks.append(vecs.copy())
            metas.append(pa.RecordBatch.from_arrays([batch.column(c) for c in META_COLUMNS], names=list(META_COLUMNS)))
    finally:
        if out is not None:
            out.close()
    meta = pa.Table.from_batches(metas).combine_chunks() if metas else None
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    return meta, (None if path is not None else vectors)


# ---------------------------------------------------------------------------
# Ranking


def canonical_scores(vectors: np.ndarray, query64: np.ndarray) -> np.ndarray:
    """Cosines of rows with the normalised query, summed in float64 along each row: a
    row's score does not depend on the other rows scored with it (BLAS's would)."""
    return (np.asarray(vectors, np.float64) * query64).sum(axis=1)


def rank(labels: np.ndarray, vectors: np.ndarray, query64: np.ndarray, ids: np.ndarray, k: int):
    """``(labels, scores)`` of the best ``k`` of the candidates, by score, then by id."""
    scores = canonical_scores(vectors, query64)
    order = np.lexsort((ids[labels], -scores))[:k]
    return labels[order], scores[order]


def top_with_ties(scores: np.ndarray, k: int) -> np.ndarray:
    """The positions of the ``k`` largest of ``scores`` and of every score within float32
    rounding of the k-th (those :func:`rank` may order differently)."""
    if len(scores) <= k:
        return np.arange(len(scores))
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    return np.flatnonzero(scores >= kth - 1e-5 * max(1.0, abs(float(kth))))


def unit(vector: np.ndarray) -> np.ndarray:
    """The query as a float64 unit vector (zero stays zero): scores are cosines."""
    return l2_normalize(np.ravel(vector), zero_rows="keep")[0]


# ---------------------------------------------------------------------------
# The index


class VectorIndex:
    """The vectors of one store version, searched exactly or through an HNSW graph.

    ``meta`` (pyarrow: ``id, name, ra, dec, source``) and the vectors are in label order;
    ``alive`` masks out labels whose source has been deleted since the graph was built."""

    def __init__(self, path: Path, dim: int, version: int, meta, vectors, graph=None, fingerprint: str = ""):
        self.path, self.dim, self.version, self.fingerprint = path, dim, version, fingerprint
        self.graph = graph
        self._set_meta(meta)
        self.base = vectors  # ndarray, VectorFile or memmap
        self.extra = np.zeros((0, dim), np.float32)  # sources added since the graph was built
        self.alive = np.ones(len(self.ids), bool)
        self._selector = None
        self._by_dec = None

    def _set_meta(self, meta) -> None:
        self.meta = meta
        self.ids = id_bytes(meta.column("id"))
        self.ra = meta.column("ra").to_numpy(zero_copy_only=False).astype(np.float64)
        self.dec = meta.column("dec").to_numpy(zero_copy_only=False).astype(np.float64)
        self.names, self.sources = (meta.column(c).combine_chunks() for c in ("name", "source"))
        self._by_dec = None

    @property
    def kind(self) -> str:
        return "exact" if self.graph is None else "hnsw_sq8"

    @property
    def live(self) -> int:
        return int(self.alive.sum())

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        """The float32 vectors of ``labels`` (from memory, the vector file, or the additions)."""
        labels = np.asarray(labels, np.int64)
        n = len(self.base)
        if labels.max(initial=-1) < n:
            return np.asarray(self.base[labels], np.float32)
        out = np.empty((len(labels), self.dim), np.float32)
        low = labels < n
        out[low] = self.vectors(labels[low])
        out[~low] = self.extra[labels[~low] - n]
        return out

    # -- searching ------------------------------------------------------------

    def search(self, query, k: int, cone=None, ef: int | None = None):
        """``(labels, scores)`` of the ``k`` nearest live sources (within ``cone``)."""
        q = unit(query)
        if cone is not None:
            rows = self.cone_rows(cone)
            if self.graph is None or len(rows) <= CONE_EXACT:
                return self._exact(q, k, rows)
            return self._graph(q, k, ef, rows)
        if self.graph is None:
            return self._exact(q, k, None)
        return self._graph(q, k, ef, None)

    def _exact(self, q: np.ndarray, k: int, rows: np.ndarray | None):
        if rows is None:
            rows = np.flatnonzero(self.alive) if not self.alive.all() else None
            vecs = self.base if rows is None else self.vectors(rows)
        else:
            vecs = self.vectors(rows)
        labels = np.arange(len(vecs)) if rows is None else rows
        if not len(labels):
            return labels, np.zeros(0)
        keep = top_with_ties(np.asarray(vecs, np.float32) @ q.astype(np.float32), k)
        return rank(labels[keep], vecs[keep], q, self.ids, k)

    def _graph(self, q: np.ndarray, k: int, ef: int | None, rows: np.ndarray | None):
        import faiss

        want = min(max(REFINE * k, k + 10), max(1, self.live if rows is None else len(rows)))
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef or EF_SEARCH, want)
        selector = self._cone_selector(rows) if rows is not None else self.selector()
        if selector is not None:
            params.sel = selector[0]
            if rows is not None:  # a filtered graph walk visits more nodes per hit found
                params.efSearch = int(min(4096, params.efSearch * max(1.0, self.live / max(len(rows), 1)) ** 0.5))
        _, found = self.graph.search(q.astype(np.float32)[None], want, params=params)
        labels = found[0][found[0] >= 0]
        return rank(labels, self.vectors(labels), q, self.ids, k)

    def selector(self):
        """A FAISS selector of the live labels (None when every label is live)."""
        if self.alive.all():
            return None
        if self._selector is None:
            self._selector = _bitmap_selector(self.alive)
        return self._selector

    def _cone_selector(self, rows: np.ndarray):
        mask = np.zeros(len(self.alive), bool)
        mask[rows] = True
        return _bitmap_selector(mask)

    def cone_rows(self, cone) -> np.ndarray:
        """The live labels inside ``cone`` (sorted)."""
        from .cone import dec_band, ra_window, separation_arcsec

        if self._by_dec is None:
            order = np.argsort(self.dec, kind="stable")  # NaN (unknown) last
            self._by_dec = (order, self.dec[order])
        order, dec = self._by_dec
        lo, hi = dec_band(cone)
        band = order[np.searchsorted(dec, lo, "left") : np.searchsorted(dec, hi, "right")]
        window = ra_window(cone)
        if window is not None:
            ra = self.ra[band] % 360.0
            a, b = window
            band = band[((ra >= a) | (ra <= b)) if a > b else ((ra >= a) & (ra <= b))]
        band = band[self.alive[band]]
        inside = separation_arcsec(cone.ra, cone.dec, self.ra[band], self.dec[band]) <= cone.radius_arcsec
        return np.sort(band[inside])

    def rows(self, labels: np.ndarray, scores: np.ndarray) -> list[dict]:
        """The result records (``id, name, ra, dec, score, source``) of ``labels``."""
        labels = np.asarray(labels, np.int64)
        names, sources = (column.take(labels).to_pylist() for column in (self.names, self.sources))
        ra, dec = (np.where(np.isnan(a[labels]), None, a[labels]) for a in (self.ra, self.dec))  # unknown: None
        return [{"id": i.decode(), "name": n, "ra": None if r is None else float(r), "dec": None if d is None else float(d),
                 "score": float(s), "source": p}
                for i, n, r, d, s, p in zip(self.ids[labels], names, ra, dec, scores, sources)]  # fmt: skip


def _bitmap_selector(mask: np.ndarray):
    import faiss

    bits = np.packbits(mask, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    return selector, bits  # the bitmap must outlive the selector


# ---------------------------------------------------------------------------
# Building, saving, loading


def new_graph(dim: int, m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION):
    import faiss

    graph = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    graph.hnsw.efSearch = EF_SEARCH
    return graph


def fill_graph(graph, vectors: np.ndarray, chunk: int = 65_536) -> None:
    """Train the 8-bit quantiser on a sample (at most 10^5 rows) and add every vector."""
    n = len(vectors)
    sample = np.sort(np.random.default_rng(0).choice(n, size=min(n, 100_000), replace=False))
    graph.train(np.ascontiguousarray(vectors[sample], np.float32))
    for i in range(0, n, chunk):
        graph.add(np.ascontiguousarray(vectors[i : i + chunk], np.float32))


def build(store: Store, exact_below: int = EXACT_BELOW, persist: bool = True) -> VectorIndex:
    """The index of the store's latest version: exact below ``exact_below`` sources (in
    memory only: reading them again is quick), else an HNSW graph, saved beside the store."""
    table, version = pinned_sources(store)
    n, dim = table.count_rows(), table.schema.field("vector").type.list_size
    fingerprint = store.meta().get("fingerprint", "")
    folder = Path(store.path) / DIRNAME
    if n < max(exact_below, 1):
        meta, vectors = copy_vectors(table, None, dim)
        return VectorIndex(folder, dim, version, meta or _empty_meta(), vectors, None, fingerprint)
    started = time.perf_counter()
    tmp = Path(store.path) / f"{DIRNAME}.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta, _ = copy_vectors(table, tmp / "vectors.f32", dim)
    vectors = np.memmap(tmp / "vectors.f32", np.float32, "r", shape=(len(meta), dim))
    graph = new_graph(dim)
    fill_graph(graph, vectors)
    log.info("built the HNSW index of %d vectors in %.1f s", len(meta), time.perf_counter() - started)
    index = VectorIndex(folder, dim, version, meta, vectors, graph, fingerprint)
    if persist and save(index, tmp):
        index.base = vector_file(folder / "vectors.f32", len(meta), dim)
    return index  # unsaved, ``base`` maps the temporary file: its pages stay mapped after it is removed


def _empty_meta():
    import pyarrow as pa

    return pa.table({"id": pa.array([], pa.string()), "name": pa.array([], pa.string()), "ra": pa.array([], pa.float64()),
                     "dec": pa.array([], pa.float64()), "source": pa.array([], pa.string())})  # fmt: skip


def save(index: VectorIndex, tmp: Path) -> bool:
    """Write the graph, positions and manifest into ``tmp`` (which holds ``vectors.f32``)
    and put it in place of the store's index folder (a rename: readers see old or new).
    False when another process put its own in place meanwhile (``tmp`` is removed)."""
    import faiss
    import pyarrow.feather as feather

    faiss.write_index(index.graph, str(tmp / "graph.faiss"))
    feather.write_feather(index.meta, str(tmp / "meta.arrow"), compression="uncompressed")
    manifest = {"format": FORMAT, "kind": index.kind, "dim": index.dim, "rows": len(index.ids), "version": index.version,
                "ids_digest": ids_digest(index.ids), "fingerprint": index.fingerprint, "m": HNSW_M,
                "ef_construction": EF_CONSTRUCTION, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    old = index.path.with_name(f"{DIRNAME}.old-{os.getpid()}-{threading.get_ident()}")
    try:
        if index.path.exists():
            os.replace(index.path, old)
        os.replace(tmp, index.path)
    except OSError as err:  # two processes saved at once: one index is in place, as good as ours
        log.info("another process saved the index first (%s)", err)
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return True


def _replace(path: Path, write) -> None:
    """``write(tmp)``, then ``tmp`` renamed over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_positions(index: VectorIndex) -> None:
    """Rewrite the saved positions (``meta.arrow``), live mask (``alive.npy``) and manifest of
    an index whose graph is unchanged, the manifest last. Each file is replaced by a rename:
    a reader that loads between them finds them inconsistent (their digests, counts) and
    builds the index itself."""
    import pyarrow.feather as feather

    manifest_path = index.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("version") == index.version:
        return
    _replace(index.path / "meta.arrow", lambda t: feather.write_feather(index.meta, str(t), compression="uncompressed"))
    _replace(index.path / "alive.npy", lambda t: t.write_bytes(_npy_bytes(index.alive)))
    fields = {"version": index.version, "rows": len(index.ids), "ids_digest": ids_digest(index.ids), "live": index.live}
    _replace(manifest_path, lambda t: t.write_text(json.dumps({**manifest, **fields}, indent=1)))


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def save_additions(index: VectorIndex) -> None:
    """Save sources added since the graph was built without building it again: their
    vectors appended to ``vectors.f32`` (rows past the manifest's count are ignored, so a
    crash here leaves the saved index as it was), the graph rewritten, then the positions
    and the manifest (:func:`save_positions`)."""
    import faiss

    rows = int(json.loads((index.path / "manifest.json").read_text())["rows"])
    with open(index.path / "vectors.f32", "r+b") as f:
        f.truncate(rows * index.dim * 4)  # drop what an interrupted save may have left
        f.seek(0, os.SEEK_END)
        f.write(index.vectors(np.arange(rows, len(index.ids))).astype(np.float32).tobytes())
    _replace(index.path / "graph.faiss", lambda t: faiss.write_index(index.graph, str(t)))
    save_positions(index)


def usable_manifest(store: Store) -> dict | None:
    """The saved index's manifest, or None when there is none, it cannot be read, or it
    was made for another format or model."""
    try:
        manifest = json.loads((Path(store.path) / DIRNAME / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        log.info("no usable index manifest in %s (%s)", store.path, err)
        return None
    if manifest.get("format") != FORMAT or manifest.get("fingerprint") != store.meta().get("fingerprint", ""):
        return None
    return manifest


def load(store: Store) -> VectorIndex | None:
    """The index saved beside the store, as built (None when absent, unreadable, or made
    for another format, dimension or model); :func:`sync` brings it up to date."""
    import faiss
    import pyarrow.feather as feather

    folder = Path(store.path) / DIRNAME
    manifest = usable_manifest(store)
    if manifest is None:
        return None
    try:
        meta = feather.read_table(str(folder / "meta.arrow"), memory_map=True)
        dim, rows = int(manifest["dim"]), int(manifest["rows"])
        graph = faiss.read_index(str(folder / "graph.faiss"))
        vectors = vector_file(folder / "vectors.f32", rows, dim)
    except (OSError, ValueError, KeyError, RuntimeError) as err:  # RuntimeError: FAISS on a damaged file
        log.info("no usable index at %s (%s)", folder, err)
        return None
    index = VectorIndex(folder, dim, int(manifest["version"]), meta, vectors, graph, manifest["fingerprint"])
    if len(index.ids) != rows or ids_digest(index.ids) != manifest["ids_digest"] or graph.ntotal != rows:
        return None
    if (folder / "alive.npy").exists():  # sources deleted since the graph was built
        alive = np.load(folder / "alive.npy")
        if len(alive) != rows or int(alive.sum()) != manifest.get("live", rows):
            return None
        index.alive = alive
    return index


# ---------------------------------------------------------------------------
# Keeping the index in step with the store


def refreshed(store: Store, index: VectorIndex | None, exact_below: int = EXACT_BELOW) -> VectorIndex:
    """``index`` (else the one saved beside the store, else a new one) brought up to the
    store's latest version: see the module's docstring."""
    if index is None:
        index = load(store) if store.count(SOURCES) >= exact_below else None
        if index is None:
            return build(store, exact_below)
    table, version = pinned_sources(store)
    if version == index.version:
        return index
    meta = read_meta(table)
    ids = id_bytes(meta.column("id"))
    if index.graph is None or (len(ids) < exact_below):
        return build(store, exact_below)
    fresh = ~np.isin(ids, index.ids[index.alive])
    present = np.isin(index.ids, ids)
    changes = int(fresh.sum()) + int((index.alive & ~present).sum())
    if changes > REBUILD_FRACTION * max(len(ids), 1):
        return build(store, exact_below)
    _apply(index, table, meta, ids, fresh, present)
    index.version = version
    return index


def _apply(index: VectorIndex, table, meta, ids: np.ndarray, fresh: np.ndarray, present: np.ndarray) -> None:
    """Mask out the deleted labels, refresh the kept ones' names and positions, and add
    the new sources to the graph (and their vectors to ``extra``)."""
    import pyarrow as pa

    sorter = np.argsort(ids, kind="stable")
    where = sorter[np.minimum(np.searchsorted(ids[sorter], index.ids), len(ids) - 1)]
    take = np.where(present, where, len(ids) + np.arange(len(index.ids)))  # a deleted label keeps its old row
    both = pa.concat_tables([meta.select(list(META_COLUMNS)), index.meta.select(list(META_COLUMNS)).cast(meta.schema)])
    new_rows = np.flatnonzero(fresh)
    added = meta.take(new_rows)
    index.alive = np.concatenate([index.alive & present, np.ones(len(new_rows), bool)])
    index._set_meta(pa.concat_tables([both.take(take), added]).combine_chunks())
    index._selector = None
    if len(new_rows):
        got = vectors_of(table, [i.decode() for i in ids[new_rows]], index.dim)
        vecs = np.stack([got[i] for i in ids[new_rows]]).astype(np.float32)
        index.graph.add(vecs)
        index.extra = np.concatenate([index.extra, vecs])


class _Live:
    """One store's index in this process, and what was last seen of the store's versions."""

    def __init__(self):
        self.index: VectorIndex | None = None
        self.token = None
        self.exact_below = EXACT_BELOW
        self.lock = threading.RLock()


_LIVE: dict[str, _Live] = {}
_LIVE_LOCK = threading.Lock()


def _live(store: Store) -> _Live:
    key = store.__dict__.get("_ann_key")
    if key is None:  # resolved once per store object (a path resolve costs tens of microseconds)
        key = store.__dict__["_ann_key"] = str(Path(store.path).resolve())
    with _LIVE_LOCK:
        return _LIVE.setdefault(key, _Live())


def versions_token(store: Store):
    """The modification time (ns) of the ``sources`` table's ``_versions`` folder: every
    LanceDB commit adds a file there. None when it cannot be seen (then ask LanceDB)."""
    folder = store.__dict__.get("_ann_versions")
    if folder is None:  # built once per store object: a pathlib join costs more than the stat
        folder = store.__dict__["_ann_versions"] = os.path.join(str(store.path), f"{SOURCES}.lance", "_versions")
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def current(store: Store, live: _Live) -> VectorIndex:
    """The live index, checked against the store first (call with ``live.lock`` held)."""
    token = versions_token(store)
    quiet = token is not None and token == live.token and time.time_ns() - token > RECENT_S * 1e9
    if live.index is not None and quiet:
        return live.index
    if live.index is not None and store.table(SOURCES).version == live.index.version:
        live.token = token
        return live.index
    live.index = refreshed(store, live.index, live.exact_below)
    live.token = token
    return live.index


def index_for(store: Store, exact_below: int | None = None) -> VectorIndex:
    """This process's index of ``store``, in step with it (built or loaded at first use).
    ``exact_below`` changes the store's threshold for this process (tests, the benchmark)."""
    store.table(SOURCES)  # a store without sources: StoreError, saying so
    live = _live(store)
    with live.lock:
        if exact_below is not None and exact_below != live.exact_below:
            live.exact_below, live.index = exact_below, None
        return current(store, live)


def query(store: Store, vector, k: int, cone=None, ef: int | None = None) -> list[dict]:
    """The ``k`` nearest sources as result records (see :func:`radioalign.survey.search.nearest`)."""
    if SOURCES not in store._tables:
        store.table(SOURCES)  # a store without sources: StoreError, saying so
    live = _live(store)
    with live.lock:  # a search never meets an update of the same graph
        index = current(store, live)
        labels, scores = index.search(vector, k, cone, ef)
        return index.rows(labels, scores)


def forget(store: Store) -> None:
    """Drop this process's index of ``store`` (its memory; the saved copy stays)."""
    with _LIVE_LOCK:
        _LIVE.pop(str(Path(store.path).resolve()), None)


def saved_state(store: Store, exact_below: int = EXACT_BELOW) -> dict:
    """The search index as ``store info`` reports it, from the saved manifest (nothing is
    loaded): ``kind`` (``exact`` below ``exact_below`` sources, else ``hnsw_sq8``), the
    sources it does not hold yet and whether it is up to date with the store's version. A
    query never waits on this: a stale index is brought up to date at the next query."""
    n = store.count(SOURCES) if store.has(SOURCES) else 0
    if n < exact_below:
        return {"kind": "exact", "unindexed_rows": 0, "up_to_date": True}
    manifest = usable_manifest(store)
    if manifest is None:
        return {"kind": "hnsw_sq8", "unindexed_rows": n, "up_to_date": False}
    current = manifest.get("version") == store.db.open_table(SOURCES).version
    live = int(manifest.get("live", manifest.get("rows", 0)))
    return {"kind": "hnsw_sq8", "unindexed_rows": 0 if current else max(0, n - live), "up_to_date": current}


def ensure_saved(store: Store, exact_below: int = EXACT_BELOW) -> str:
    """Bring the saved index up to the store (``radioalign ingest`` ends with it) and free
    its memory; returns the kind of search the store now gets (``exact`` or ``hnsw_sq8``)."""
    if not store.has(SOURCES):
        return "exact"
    with store.writing():  # one saver at a time: two would append the same vectors twice
        index = refreshed(store, load(store) if store.count(SOURCES) >= exact_below else None, exact_below)
        if index.graph is not None and len(index.extra):
            save_additions(index)  # the additions and deletions were applied in memory: save them
        elif index.graph is not None:
            save_positions(index)  # deletions, names, paths or only the version changed (a compaction)
    forget(store)
    return index.kind
