"""Search side by side: radioalign's search path against FAISS, hnswlib and exact numpy.

``make bench-survey`` runs it, on the same vectors and the same queries for every method.

For each data set (``clustered``: :func:`cluster_vectors`, every query's exact top
10 inside its own cluster; ``hard``: :func:`hard_vectors`, overlapping neighbourhoods) at
``n`` vectors of 768 dimensions:

- the vectors go into a survey store; radioalign's index is built as ``radioalign ingest``
  builds it (:func:`.ann.ensure_saved`) and queried through :func:`.search.nearest` (the
  path of ``radioalign search``, ``serve`` and ``Survey.search``); its batch path is
  ``radioalign neighbours``' (:func:`.neighbours.chunk_table`);
- FAISS ``IndexHNSWFlat`` (M 32, efConstruction 80, as radioalign's own graph), FAISS ``IndexIVFPQ`` (sqrt(n) lists,
  96 sub-vectors of 8 bits) behind ``IndexRefineFlat`` (10 k candidates re-ranked exactly),
  hnswlib (M 32, ef_construction 80, rows added in a random order), and exact numpy (the floor) are built on the same
  vectors; build time, resident memory (the process's RSS before and after the build)
  and bytes on disk are recorded;
- each method's search parameter (``ef``, ``nprobe``) is tuned to the smallest value of
  its grid that reaches recall@10 >= 0.95 on the held-out queries (new draws from the
  data's clusters, not in the store); then all are timed one query at a time in
  interleaved rounds (so the machine's noise hits them alike), on the held-out queries and
  on queries drawn from the store, and in batch (``batch`` stored vectors, k = 10);
- radioalign's cone + vector queries are timed at radii of 1 arcmin, 1 deg and 10 deg,
  with their recall against numpy restricted to the cone.

The hard set's difficulty is reported: the share of each held-out query's exact top 10
outside its own cluster, and the relative contrast (mean distance / nearest distance).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..metrics.arrays import l2_normalize

PER_CLUSTER = 1000
INTRINSIC_DIM = 16
SPREAD, NOISE = 0.35, 0.1
K = 10
RECALL_GOAL = 0.95
HNSW_M, EF_CONSTRUCTION = 32, 80  # the same graph settings for every HNSW method (the store's own: ann.HNSW_M, ann.EF_CONSTRUCTION)
EF_GRID = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)
NPROBE_GRID = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
LATENT, HARD_SPREAD, HARD_SEPARATION, HARD_ALPHA = 64, 0.6, (0.2, 1.0), 0.5
EXACT_TIMED = 50  # queries per set and round for exact numpy, the floor (each takes tens of ms)
CONES_ARCSEC = {"1 arcmin": 60.0, "1 deg": 3600.0, "10 deg": 36000.0}


# ---------------------------------------------------------------------------
# The vectors


def normalise_rows(x: np.ndarray) -> np.ndarray:
    return l2_normalize(x, zero_rows="keep").astype(np.float32)


def cluster_vectors(c: int, dim: int, seed: int, count: int = PER_CLUSTER, draw: int = 0) -> np.ndarray:
    """The ``PER_CLUSTER`` vectors of cluster ``c`` (deterministic in ``seed`` and ``c``);
    ``draw`` 1: ``count`` held-out points of the same cluster (not among the stored ones)."""
    mean = np.random.default_rng([seed, 0]).normal(size=dim)
    mean /= np.linalg.norm(mean)
    rng = np.random.default_rng([seed, 1, c])
    r = rng.normal(size=dim)
    centre = mean + 0.8 * r / np.linalg.norm(r)
    centre /= np.linalg.norm(centre)
    basis = rng.normal(size=(INTRINSIC_DIM, dim)) / math.sqrt(dim)  # rows of norm ~1
    rng = rng if draw == 0 else np.random.default_rng([seed, 4, c])
    count = PER_CLUSTER if draw == 0 else count
    z = rng.normal(size=(count, INTRINSIC_DIM))
    noise = rng.normal(size=(count, dim)) * (NOISE / math.sqrt(dim))
    return normalise_rows(centre + (SPREAD / math.sqrt(INTRINSIC_DIM)) * z @ basis + noise)


def _hard_space(dim: int, seed: int):
    """A mean direction, a 64-d latent basis shared by every cluster, and its decaying
    spectrum (variance ~ 1/i along latent axis i): neighbourhoods overlap, as real
    embeddings' do, because every cluster lives in the same few directions."""
    rng = np.random.default_rng([seed, 10])
    mean = rng.normal(size=dim)
    mean /= np.linalg.norm(mean)
    basis = rng.normal(size=(LATENT, dim)) / math.sqrt(dim)
    spectrum = np.arange(1, LATENT + 1) ** -HARD_ALPHA
    return mean, basis, spectrum / np.linalg.norm(spectrum)


def hard_vectors(c: int, dim: int, seed: int, count: int = PER_CLUSTER, draw: int = 0) -> np.ndarray:
    """``count`` vectors of hard cluster ``c``: its centre lies at a separation drawn from
    ``HARD_SEPARATION`` along the shared spectrum, its points spread by ``HARD_SPREAD``
    over the same spectrum, plus a little isotropic noise. ``draw`` 0: the stored points;
    1: held-out points of the same cluster."""
    mean, basis, spectrum = _hard_space(dim, seed)
    rng = np.random.default_rng([seed, 11, c])
    a = HARD_SEPARATION[0] + (HARD_SEPARATION[1] - HARD_SEPARATION[0]) * rng.uniform()
    centre = mean + a * (rng.normal(size=LATENT) * spectrum) @ basis
    points = rng if draw == 0 else np.random.default_rng([seed, 12, c])
    z = points.normal(size=(count, LATENT)) * spectrum
    noise = points.normal(size=(count, dim)) * (0.05 / math.sqrt(dim))
    return normalise_rows(centre + HARD_SPREAD * z @ basis + noise)


GENERATORS = {"clustered": cluster_vectors, "hard": hard_vectors}


def dataset(kind: str, n: int, dim: int, seed: int) -> np.ndarray:
    """The ``n`` stored vectors of data set ``kind`` (row ``i`` in cluster ``i // 1000``)."""
    make = GENERATORS[kind]
    clusters = math.ceil(n / PER_CLUSTER)
    out = np.empty((n, dim), np.float32)
    for c in range(clusters):
        block = make(c, dim, seed)
        out[c * PER_CLUSTER : min(n, (c + 1) * PER_CLUSTER)] = block[: n - c * PER_CLUSTER]
    return out


def held_out(kind: str, n: int, dim: int, seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` new points of random clusters (not in the store), and their clusters."""
    clusters = np.random.default_rng([seed, 5]).integers(0, math.ceil(n / PER_CLUSTER), count)
    make = GENERATORS[kind]
    points = [make(int(c), dim, seed, count=int((clusters == c).sum()), draw=1) for c in np.unique(clusters)]
    return np.concatenate(points), np.sort(clusters)


def exact_top(x: np.ndarray, queries: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores of the exact ``k`` best per query (numpy, in blocks of queries)."""
    rows, scores = [], []
    for i in range(0, len(queries), 256):
        s = queries[i : i + 256] @ x.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1)
        rows.append(np.take_along_axis(top, order, 1))
        scores.append(np.take_along_axis(s, rows[-1], 1))
    return np.concatenate(rows), np.concatenate(scores)


def difficulty(x: np.ndarray, queries: np.ndarray, clusters: np.ndarray, truth: np.ndarray, seed: int) -> dict:
    """Share of the exact top 10 outside the query's cluster; relative contrast (mean
    Euclidean distance to the data / distance to the nearest point, averaged)."""
    sample = x[np.random.default_rng([seed, 6]).choice(len(x), size=min(len(x), 20_000), replace=False)]
    mean_d = np.sqrt(np.maximum(2 - 2 * (queries @ sample.T), 0)).mean(axis=1)
    nearest_d = np.sqrt(np.maximum(2 - 2 * np.einsum("ij,ij->i", queries, x[truth[:, 0]]), 1e-12))
    return {"outside_own_cluster": float(np.mean(truth // PER_CLUSTER != clusters[:, None])),
            "relative_contrast": float(np.mean(mean_d / nearest_d))}  # fmt: skip


# ---------------------------------------------------------------------------
# Measuring


def rss() -> int:
    """This process's resident memory in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


def write_store(path: Path, x: np.ndarray) -> None:
    """A survey store of ``x`` (ids ``v0000000``..., random sky positions, no thumbnails)."""
    import pyarrow as pa

    from .store import SOURCES, Store, now, sources_schema

    store = Store(path)
    store.init_meta({"fingerprint": "bench", "model": "bench", "adapter": "", "dim": str(x.shape[1])})
    schema = sources_schema(x.shape[1])
    table = store.db.create_table(SOURCES, schema=schema)
    rng = np.random.default_rng(7)
    for first in range(0, len(x), 50_000):
        block = x[first : first + 50_000]
        m = len(block)
        columns = {
            "id": pa.array([f"v{first + i:07d}" for i in range(m)]), "name": pa.array([f"V{first + i}" for i in range(m)]),
            "ra": pa.array(rng.uniform(0, 360, m)), "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-1, 1, m)))),
            "source": pa.array(["synthetic"] * m), "thumbnail": pa.nulls(m, pa.binary()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), x.shape[1]),
            "model": pa.array(["bench"] * m), "adapter": pa.array([""] * m), "preprocessing": pa.array([""] * m),
            "flags": pa.array([""] * m), "created_at": pa.array([now()] * m, pa.timestamp("us", tz="UTC")),
        }  # fmt: skip
        table.add(pa.table(columns, schema=schema))


# ---------------------------------------------------------------------------
# The methods: build(), search(q, param) -> rows, batch(queries, param) -> rows


class Method:
    """One way of answering queries; ``grid`` holds its search parameter's settings."""

    name, grid, label = "", (None,), ""

    def __init__(self, x: np.ndarray, tmp: Path):
        self.x, self.tmp = x, tmp
        self.info: dict = {}

    def build(self) -> None:
        before, start = rss(), time.perf_counter()
        self._build()
        self.info.update(build_s=time.perf_counter() - start, resident_bytes=max(0, rss() - before), disk_bytes=self._disk())

    def _disk(self) -> int:
        return 0


class Exact(Method):
    name, label = "exact numpy", "-"

    def _build(self):
        pass

    def search(self, q, param):
        s = self.x @ q
        top = np.argpartition(-s, K - 1)[:K]
        return top[np.argsort(-s[top])]

    def batch(self, queries, param):
        return exact_top(self.x, queries)[0]


class FaissMethod(Method):
    def _disk(self) -> int:
        import faiss

        path = self.tmp / f"{self.name.replace(' ', '_')}.faiss"
        faiss.write_index(self.index, str(path))
        size = path.stat().st_size
        path.unlink()
        return size

    def search(self, q, param):
        self.set(param)
        return self.index.search(q[None], K)[1][0]

    def batch(self, queries, param):
        self.set(param)
        return self.index.search(queries, K)[1]


class FaissHNSW(FaissMethod):
    name, grid, label = "FAISS IndexHNSWFlat", EF_GRID, "efSearch"

    def _build(self):
        import faiss

        self.index = faiss.IndexHNSWFlat(self.x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.index.add(self.x)

    def set(self, param):
        self.index.hnsw.efSearch = param


class FaissIVFPQ(FaissMethod):
    name, grid, label = "FAISS IVFPQ+RefineFlat", NPROBE_GRID, "nprobe"

    def _build(self):
        import faiss

        dim = self.x.shape[1]
        lists = max(16, round(math.sqrt(len(self.x))))
        self.ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, dim // 8, 8, faiss.METRIC_INNER_PRODUCT)
        self.index = faiss.IndexRefineFlat(self.ivf)
        self.index.k_factor = 10
        sample = np.random.default_rng(0).choice(len(self.x), size=min(len(self.x), 50_000), replace=False)
        self.index.train(self.x[np.sort(sample)])
        self.index.add(self.x)
        self.info["lists"] = lists

    def set(self, param):
        self.ivf.nprobe = param


class Hnswlib(Method):
    name, grid, label = "hnswlib", EF_GRID, "ef"

    def _build(self):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.x.shape[1])
        self.index.init_index(max_elements=len(self.x), ef_construction=EF_CONSTRUCTION, M=HNSW_M)
        # in a random order: added cluster by cluster (the rows' order), hnswlib's graph links
        # the clusters poorly (FAISS adds by level, which mixes them)
        order = np.random.default_rng(0).permutation(len(self.x))
        self.index.add_items(self.x[order], order, num_threads=os.cpu_count() or 1)

    def _disk(self) -> int:
        path = self.tmp / "hnswlib.bin"
        self.index.save_index(str(path))
        size = path.stat().st_size
        path.unlink()
        return size

    def search(self, q, param):
        self.index.set_ef(param)
        return self.index.knn_query(q[None], k=K, num_threads=1)[0][0].astype(np.int64)

    def batch(self, queries, param):
        self.index.set_ef(param)
        return self.index.knn_query(queries, k=K, num_threads=os.cpu_count() or 1)[0].astype(np.int64)


class Radioalign(Method):
    """The store's own search: the index ``radioalign ingest`` saves, queried through
    :func:`.search.nearest`; its batch is ``radioalign neighbours``' chunk function."""

    # the graph walk keeps at least ann.REFINE * k = 20 candidates for the exact re-rank: a smaller ef changes nothing
    name, grid, label = "radioalign (HNSW-SQ8 + exact re-rank)", (20, *(e for e in EF_GRID if e > 20)), "ef"

    def __init__(self, x, tmp):
        super().__init__(x, tmp)
        write_store(tmp / "vectors.lance", x)
        from .store import Store

        self.store = Store(tmp / "vectors.lance")

    def _build(self):
        from . import ann

        self.info["kind"] = ann.ensure_saved(self.store)  # build and save, as an ingest ends
        start = time.perf_counter()
        self.index = ann.index_for(self.store)  # load, as search/serve/Survey do at their first query
        self.info["load_s"] = time.perf_counter() - start

    def build(self) -> None:
        super().build()
        self.info["resident_bytes_build_process"] = self.info["resident_bytes"]
        self.info["resident_bytes"] = resident_in_fresh_process(self.tmp / "vectors.lance", self.x[:200])

    def _disk(self) -> int:
        from . import ann

        return folder_bytes(self.tmp / "vectors.lance" / ann.DIRNAME)

    def search(self, q, param):
        from .query import nearest

        return np.array([int(r["id"][1:]) for r in nearest(self.store, q, K, ef=param)])

    def batch(self, queries, param):
        """Neighbours of the first ``len(queries)`` stored sources (itself left out, as
        ``radioalign neighbours`` writes them): the batch path of the store."""
        from .neighbours import chunk_table, schema

        labels = np.arange(len(queries))
        table = chunk_table(self.index, labels, K, param, schema(K, {}))
        return [np.array([int(i[1:]) for i in row]) for row in table.column("neighbour_ids").to_pylist()]


METHODS = (Radioalign, FaissHNSW, FaissIVFPQ, Hnswlib, Exact)
# Short names for ``--methods``; radioalign's own path always runs (the cones and the
# neighbours go through it).
METHOD_KEYS = {"faiss-hnsw": FaissHNSW, "faiss-ivfpq": FaissIVFPQ, "hnswlib": Hnswlib, "exact": Exact}


def resident_in_fresh_process(store: Path, queries: np.ndarray) -> int:
    """The resident memory that loading the store's index and answering ``queries`` adds
    to a new Python process (the vectors' file is read with pread, into the page cache, not the process)."""
    import subprocess
    import sys

    np.save(store.parent / "rss_queries.npy", queries)
    code = (
        "import numpy as np, sys\n"
        "from radioalign.survey import bench_ann as b, search as s\n"
        "from radioalign.survey.store import Store\n"
        "store = Store(sys.argv[1]); q = np.load(sys.argv[2]); store.table('sources')\n"
        "import faiss, pyarrow, lancedb\n"
        "before = b.rss(); [s.nearest(store, v, 10) for v in q]; print(b.rss() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store), str(store.parent / "rss_queries.npy")], capture_output=True,
                         text=True, timeout=1800, check=True)  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Tuning, timing, cones


def tune(method: Method, queries: np.ndarray, truth: np.ndarray) -> dict:
    """The smallest setting of the method's grid with recall@10 >= RECALL_GOAL on the
    held-out queries (the largest, marked, when none reaches it)."""
    tried = []
    for param in method.grid:
        found = [method.search(q, param) for q in queries] if isinstance(method, Radioalign) else method.batch(queries, param)
        tried.append({"param": param, "recall_at_10": recall(found, truth)})
        if tried[-1]["recall_at_10"] >= RECALL_GOAL:
            return {"param": param, "reached": True, "tried": tried}
    return {"param": method.grid[-1], "reached": method.grid == (None,), "tried": tried}


def timed_rounds(methods: list[Method], params: dict, sets: dict, rounds: int) -> dict:
    """Single-query latencies (ms) and recall@10 per method and query set, the methods
    taking turns within each round (the order rotating)."""
    times = {(m.name, s): [] for m in methods for s in sets}
    found = {}
    for r in range(rounds):
        for m in methods[r % len(methods) :] + methods[: r % len(methods)]:
            for set_name, (queries, _) in sets.items():
                got = []
                for q in queries if not isinstance(m, Exact) else queries[:EXACT_TIMED]:
                    start = time.perf_counter()
                    got.append(m.search(q, params[m.name]))
                    times[(m.name, set_name)].append(1000 * (time.perf_counter() - start))
                found[(m.name, set_name)] = got
    return {m.name: {s: {"p50_ms": float(np.percentile(times[(m.name, s)], 50)), "p95_ms": float(np.percentile(times[(m.name, s)], 95)),
                         "recall_at_10": recall(found[(m.name, s)], sets[s][1]), "queries": len(found[(m.name, s)])}
                     for s in sets} for m in methods}  # fmt: skip


def batch_rate(method: Method, queries: np.ndarray, param) -> dict:
    start = time.perf_counter()
    method.batch(queries, param)
    seconds = time.perf_counter() - start
    return {"queries": len(queries), "seconds": seconds, "per_s": len(queries) / seconds}


def cone_queries(method: Radioalign, queries: np.ndarray, seed: int, per_radius: int = 50) -> dict:
    """Cone + vector queries through :func:`.search.nearest`: latency, sources in the
    cone, and recall@10 against numpy over the cone's sources."""
    from .cone import Cone, separation_arcsec
    from .query import nearest

    index = method.index
    rows = np.array([int(i[1:]) for i in index.ids.astype(str)])
    ra, dec = np.empty(len(rows)), np.empty(len(rows))
    ra[rows], dec[rows] = index.ra, index.dec
    rng = np.random.default_rng([seed, 8])
    out = {}
    for label, radius in CONES_ARCSEC.items():
        times, recalls, counts = [], [], []
        for i in range(per_radius):
            centre = rng.integers(len(rows))
            cone, q = Cone(float(ra[centre]), float(dec[centre]), radius), queries[i % len(queries)]
            start = time.perf_counter()
            hits = nearest(method.store, q, K, cone)
            times.append(1000 * (time.perf_counter() - start))
            inside = np.flatnonzero(separation_arcsec(cone.ra, cone.dec, ra, dec) <= radius)
            best = inside[np.argsort(-(method.x[inside] @ q))[:K]]
            counts.append(len(inside))
            recalls.append(len({int(h["id"][1:]) for h in hits} & set(best.tolist())) / max(1, min(K, len(inside))))
        out[label] = {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
                      "sources_in_cone_mean": float(np.mean(counts)), "recall_at_10": float(np.mean(recalls))}  # fmt: skip
    return out


def neighbours_of_all(method: Radioalign, folder: Path) -> dict:
    """``radioalign neighbours`` (k = 10) over every source of the method's store, its
    index already saved and loaded, as after an ingest."""
    from .neighbours import neighbours

    start = time.perf_counter()
    summary = neighbours(method.store, folder / "nn.parquet", k=K, progress=False)
    return {"sources": summary.sources, "seconds": time.perf_counter() - start, "kind": summary.kind}


def bench_dataset(kind: str, n: int, dim: int, queries: int, batch: int, rounds: int, seed: int, tmp: Path,
                  others=tuple(METHOD_KEYS), neighbours: bool = False) -> dict:  # fmt: skip
    """radioalign and the ``others`` (keys of :data:`METHOD_KEYS`) on one data set: build,
    tune, time, batch, cones (see the module); with ``neighbours``, the neighbours of every
    stored source through radioalign's saved index (``radioalign neighbours``)."""
    x = dataset(kind, n, dim, seed)
    held, clusters = held_out(kind, n, dim, seed, queries)
    drawn = np.sort(np.random.default_rng([seed, 9]).choice(n, size=queries, replace=False))
    sets = {"held_out": (held, exact_top(x, held)[0]), "store_drawn": (x[drawn], exact_top(x, x[drawn])[0])}
    methods, report = [], {"vectors": n, "dim": dim, "difficulty": difficulty(x, held, clusters, sets["held_out"][1], seed)}
    folder = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=tmp))
    for make in (Radioalign, *(METHOD_KEYS[key] for key in others)):
        method = make(x, folder)
        method.build()
        methods.append(method)
    params = {}
    for m in methods:
        m.info["tuning"] = tune(m, *sets["held_out"])
        params[m.name] = m.info["tuning"]["param"]
    report["single"] = timed_rounds(methods, params, sets, rounds)
    batch_queries = x[:batch]
    report["methods"] = {m.name: {**m.info, "param_name": m.label, "param": params[m.name],
                                  "batch": batch_rate(m, batch_queries if not isinstance(m, Exact) else batch_queries[: max(1, batch // 10)], params[m.name])}
                         for m in methods}  # fmt: skip
    report["cones"] = cone_queries(methods[0], held, seed)
    if neighbours:
        report["neighbours_all"] = neighbours_of_all(methods[0], folder)
    from . import ann

    ann.forget(methods[0].store)
    shutil.rmtree(folder, ignore_errors=True)
    return report
