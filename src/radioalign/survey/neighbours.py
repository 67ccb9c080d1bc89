"""Batch neighbours: the ``k`` nearest sources of every source (``radioalign neighbours``).

The input of anomaly ranking and of the labelling loop's diversity. Every source of the
store is a query against the store's vector index (:mod:`.ann`: exact below
``ann.EXACT_BELOW`` sources, else the HNSW graph searched in batches on every core), its
candidates re-ranked exactly as a single query's are (cosine, ties by id), the source
itself left out. The Parquet file has one row per source: ``id``, ``name``,
``neighbour_ids`` (best first) and ``distances`` (cosine distance, ``1 - cos``).

Resumable, memory bounded: the sources go in chunks of ``chunk_rows`` (in the index's
order); each chunk is written to its own file in ``OUT.parts/`` (a rename, so a chunk is
either complete or absent after a ``kill -9``), and a rerun skips the chunks already
there, provided the store, ``k`` and the chunking are unchanged (``OUT.parts/manifest.json``
says so; otherwise it starts again). At the end the chunks are copied into ``OUT`` (one
Parquet row group each, through a temporary file and a rename) and ``OUT.parts/`` is
removed. Memory: the index, plus one chunk's candidates.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import ann
from .store import Store, open_store

CHUNK_ROWS = 10_000
RESCORE_ROWS = 256  # queries whose candidates are re-scored at once (256 x 44 x 768 float64: 69 MB)


@dataclass
class NeighboursSummary:
    sources: int = 0
    chunks: int = 0
    chunks_resumed: int = 0
    k: int = 10
    kind: str = "exact"
    seconds: float = 0.0
    out: str = ""

    def line(self) -> str:
        return (f"neighbours: {self.sources} sources, k={self.k} ({self.kind} index), {self.chunks} chunks "
                f"({self.chunks_resumed} already done) in {self.seconds:.1f} s -> {self.out}")  # fmt: skip


def schema(k: int, info: dict):
    import pyarrow as pa

    return pa.schema([pa.field("id", pa.string()), pa.field("name", pa.string()),
                      pa.field("neighbour_ids", pa.list_(pa.string())), pa.field("distances", pa.list_(pa.float32()))],
                     metadata={"radioalign": json.dumps({**info, "k": k})})  # fmt: skip


def plan(index: ann.VectorIndex, k: int, chunk_rows: int, ef: int | None) -> dict:
    """What a chunk file depends on: the sources in order, ``k``, the chunking, the index."""
    labels = np.flatnonzero(index.alive)
    order = hashlib.blake2b(index.ids[labels].tobytes(), digest_size=16).hexdigest()
    return {"sources": len(labels), "ids_in_order": order, "k": k, "chunk_rows": chunk_rows, "kind": index.kind,
            "ef": ef or ann.EF_SEARCH, "version": index.version}  # fmt: skip


def parts_folder(out: Path, manifest: dict) -> Path:
    """``OUT.parts/``, kept when its manifest matches this run (resume), else emptied."""
    parts = out.with_name(out.name + ".parts")
    path = parts / "manifest.json"
    same = {k: v for k, v in manifest.items() if k != "version"}
    if parts.is_dir():
        try:
            old = json.loads(path.read_text())
            if {k: v for k, v in old.items() if k != "version"} == same:
                return parts
        except (OSError, ValueError):
            pass
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    path.write_text(json.dumps(manifest, indent=1))
    return parts


def graph_candidates(index: ann.VectorIndex, queries: np.ndarray, want: int, ef: int | None) -> np.ndarray:
    """The graph's ``want`` candidates per query (``-1`` pads)."""
    import faiss

    params = faiss.SearchParametersHNSW()
    params.efSearch = max(ef or ann.EF_SEARCH, want)
    selector = index.selector()
    if selector is not None:
        params.sel = selector[0]
    _, found = index.graph.search(np.ascontiguousarray(queries, np.float32), want, params=params)
    return found


def exact_candidates(index: ann.VectorIndex, queries: np.ndarray, want: int) -> list[np.ndarray]:
    """Every live source within float32 rounding of each query's ``want``-th best."""
    labels = np.flatnonzero(index.alive)
    vectors = index.vectors(labels)
    scores = queries @ vectors.T
    return [labels[ann.top_with_ties(row, want)] for row in scores]


def best(index: ann.VectorIndex, label: int, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``candidates`` for source ``label`` (itself left out), ranked as a
    single query is (:func:`.ann.rank`)."""
    candidates = np.unique(candidates[(candidates >= 0) & (candidates != label)])
    q = ann.unit(index.vectors(np.array([label]))[0])
    return ann.rank(candidates, index.vectors(candidates), q, index.ids, k)


def chunk_table(index: ann.VectorIndex, labels: np.ndarray, k: int, ef: int | None, table_schema):
    """The neighbours of the sources ``labels`` as a pyarrow table of ``table_schema``."""
    import pyarrow as pa

    names = index.meta.column("name").take(pa.array(labels)).to_pylist()
    out_ids, out_dist = [], []
    for start in range(0, len(labels), RESCORE_ROWS):
        part = labels[start : start + RESCORE_ROWS]
        queries = index.vectors(part)
        if index.graph is None:
            cands = exact_candidates(index, queries, k + 1)
        else:
            cands = graph_candidates(index, queries, max(ann.REFINE * (k + 1), k + 11), ef)
        for label, c in zip(part, cands):
            got, scores = best(index, int(label), np.asarray(c), k)
            out_ids.append([i.decode() for i in index.ids[got]])
            out_dist.append((1.0 - scores).astype(np.float32))
    columns = [pa.array([i.decode() for i in index.ids[labels]]), pa.array(names, pa.string()),
               pa.array(out_ids, pa.list_(pa.string())), pa.array([d.tolist() for d in out_dist], pa.list_(pa.float32()))]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=table_schema)


def write_part(path: Path, table) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, str(tmp))
    os.replace(tmp, path)  # complete or absent, whatever kills the process


def combine(parts: Path, count: int, out: Path, table_schema) -> None:
    """The chunk files, in order, into ``out`` (a row group each; a rename at the end)."""
    import pyarrow.parquet as pq

    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(str(tmp), table_schema) as writer:
        for c in range(count):
            writer.write_table(pq.read_table(str(parts / f"part-{c:06d}.parquet")).cast(table_schema), row_group_size=1 << 30)
    os.replace(tmp, out)
    shutil.rmtree(parts)


def neighbours(store: str | os.PathLike | Store, out: str | os.PathLike, *, k: int = 10, chunk_rows: int = CHUNK_ROWS,
               ef: int | None = None, progress: bool = True) -> NeighboursSummary:  # fmt: skip
    """Write the ``k`` nearest neighbours of every source of ``store`` to the Parquet file
    ``out`` (see the module); rerunning after an interruption resumes."""
    import time

    from tqdm.auto import tqdm

    if k < 1 or chunk_rows < 1:
        raise ValueError("k and the chunk size must be >= 1")
    out = Path(out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder of --out does not exist: {out.parent}")
    started = time.perf_counter()
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    index = ann.index_for(store)
    manifest = plan(index, k, chunk_rows, ef)
    parts = parts_folder(out, manifest)
    labels = np.flatnonzero(index.alive)
    count = max(1, -(-len(labels) // chunk_rows))
    table_schema = schema(k, {"store": str(store.path), "kind": index.kind, "version": index.version})
    summary = NeighboursSummary(sources=len(labels), chunks=count, k=k, kind=index.kind, out=str(out))
    with tqdm(total=len(labels), unit="src", desc="neighbours", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for c in range(count):
            path, rows = parts / f"part-{c:06d}.parquet", labels[c * chunk_rows : (c + 1) * chunk_rows]
            if path.exists():
                summary.chunks_resumed += 1
            else:
                write_part(path, chunk_table(index, rows, k, ef, table_schema))
            bar.update(len(rows))
    combine(parts, count, out, table_schema)
    summary.seconds = time.perf_counter() - started
    return summary


def summary_dict(summary: NeighboursSummary) -> dict:
    return asdict(summary)
