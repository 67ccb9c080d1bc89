"""Survey benchmark: ``python -m radioalign.survey.bench`` (``make bench-survey``).

Two measurements, on this machine, nothing downloaded:

**Ingest.** FITS cut-outs written to a temporary folder (a third FIRST-like 150 px at
1.8 arcsec, a third larger to crop, a third 4-D cubes at 3 arcsec reprojected), ingested
by :func:`radioalign.survey.ingest.ingest` with its DataLoader workers, against the
embedding-only rate of the same model on images already in memory. Both rates are
steady-state: from the end of the first batch to the end of the last (start-up, which a
long run amortises, is reported apart). The model is the SigLIP 2 base architecture
(ViT-B/16 at 224 px) with random weights: speed does not depend on the weights. The
goal: ingest at >= 0.9 of the embedding-only rate (reading hidden behind the model).

**Search.** ``n`` L2-normalised ``dim``-d vectors with cluster structure (below) in a
survey store, the IVF-PQ index that ``radioalign ingest`` builds
(:meth:`~radioalign.survey.store.Store.ensure_vector_index`: cosine, LanceDB's defaults of
``sqrt(n)`` partitions and ``dim / 16`` sub-vectors of 8 bits), and queries that are
stored vectors plus noise. For each setting of
``nprobes`` and ``refine_factor``: p50/p95 latency of :func:`radioalign.survey.search.nearest`
(the ``radioalign search`` path) and recall@10 against the exact top 10 (numpy, every
vector). The goal on 2 cores at 10^6 vectors of 768: p95 <= 20 ms with recall@10 >= 0.95.

The vectors: 1,000 per cluster; a cluster's centre is ``normalise(m + 0.8 r_c)`` with a
mean direction ``m`` shared by all (so that clusters sit about 60 degrees apart, as
SigLIP's image embeddings share a large common component) and a random unit ``r_c``; a
point is ``normalise(centre + 0.35 U_c z / 4 + e)`` with ``z`` ~ N(0, I_16) on a random
16-d subspace ``U_c`` of the cluster (embeddings have a low intrinsic dimension) and
isotropic noise ``e`` of norm about 0.1. A query is a stored vector plus isotropic noise
of norm about 0.1, normalised.

``--quick``: 20,000 vectors, 50 queries, 10 k-means iterations for the index, the tiny
SigLIP and 24 files (the test). The table is
printed and the JSON written to ``build/bench-survey.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

PER_CLUSTER = 1000
INTRINSIC_DIM = 16
SPREAD, NOISE, QUERY_NOISE = 0.35, 0.1, 0.1
SETTINGS = ((20, 1), (10, 10), (20, 10), (20, 20), (40, 20), (20, 50), (40, 50))  # (nprobes, refine_factor)
K = 10


# ---------------------------------------------------------------------------
# The machine and the models


def machine() -> dict:
    """CPU model, cores, library versions."""
    import lancedb
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "lancedb": lancedb.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "load_average_1min": os.getloadavg()[0],  # other work on the machine slows the measurements
    }  # fmt: skip


def base_encoder(batch_size: int, seed: int = 0):
    """An :class:`~radioalign.survey.encoder.Encoder` of the SigLIP 2 base architecture
    (``model.random_base_siglip``: ViT-B/16 at 224 px, random weights), on the CPU."""
    from ..model import random_base_siglip
    from .encoder import Encoder

    model = random_base_siglip("cpu", seed)
    return Encoder(model=model, processor=None, model_id="siglip-base-architecture (random weights)", batch_size=batch_size)


def tiny_encoder(folder: Path, batch_size: int):
    from ..model import build_tiny_siglip
    from .encoder import load_encoder

    return load_encoder(build_tiny_siglip(folder / "tiny-siglip"), device="cpu", batch_size=batch_size)


# ---------------------------------------------------------------------------
# Ingest


def write_cutouts(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` FITS cut-outs: noise plus a double source; native, to crop, or to reproject."""
    from astropy.io import fits

    from .images import target_wcs

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        size, scale = [(150, 1.8), (170, 1.8), (96, 3.0)][i % 3]
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
        dx, dy = size * 0.15 * np.cos(0.4 * i), size * 0.15 * np.sin(0.4 * i)
        data = rng.normal(0, 1, (size, size))
        for sx, amp in ((1, 40), (-1, 30)):
            data += amp * np.exp(-((xx - sx * dx) ** 2 + (yy - sx * dy) ** 2) / 18.0)
        header = target_wcs((7.5 * i) % 360.0, -30.0 + (i % 60), size, scale).to_header()
        if i % 3 == 2:  # a cube with degenerate FREQ and STOKES axes, as interferometer images come
            data = data[None, None]
            header.update(NAXIS=4, CTYPE3="FREQ", CRVAL3=1.4e9, CDELT3=1e6, CRPIX3=1.0, CTYPE4="STOKES", CRVAL4=1.0,
                          CDELT4=1.0, CRPIX4=1.0)  # fmt: skip
        fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(folder / f"B{i:05d}.fits")


def embedding_rate(encoder, n: int, batch_size: int) -> dict:
    """Sources per second through the model alone, images already in memory (after a
    warm-up batch)."""
    images = np.random.default_rng(1).integers(0, 256, (n + batch_size, 150, 150), dtype=np.uint8)
    encoder.images(images[:batch_size])  # warm-up: kernel selection, first touch
    start = time.perf_counter()
    for i in range(batch_size, len(images), batch_size):
        encoder.images(images[i : i + batch_size])
    seconds = time.perf_counter() - start
    return {"sources": n, "seconds": seconds, "per_s": n / seconds}


class _Commits(logging.Handler):
    """The times of the ingest loop's batch commits (its "wrote ..." log records)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.times: list[tuple[float, int]] = []

    def emit(self, record):
        if record.getMessage().startswith("wrote "):
            self.times.append((time.perf_counter(), int(record.args[0])))


def ingest_rate(encoder, folder: Path, store: Path, batch_size: int, workers: int) -> dict:
    """The ingest of ``folder``: whole-run and steady-state sources per second."""
    from .ingest import ingest

    commits = _Commits()
    logger = logging.getLogger("radioalign.survey.ingest")
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level =: it clears the logger's cached isEnabledFor answers
    logger.addHandler(commits)
    try:
        start = time.perf_counter()
        summary = ingest([folder], store, encoder=encoder, batch_size=batch_size, workers=workers, progress=False)
        seconds = time.perf_counter() - start
    finally:
        logger.removeHandler(commits)
        logger.setLevel(level)
    if not commits.times:
        raise RuntimeError("the ingest logged no batch commits: its logger is disabled")
    (t0, _), *rest = commits.times
    steady = sum(n for _, n in rest) / (rest[-1][0] - t0) if rest else float("nan")
    return {
        "workers": workers, "sources": summary.ok, "failed": summary.failed, "seconds": seconds,
        "per_s": summary.ok / seconds, "steady_per_s": steady, "first_batch_s": t0 - start,
    }  # fmt: skip


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def bench_ingest(encoder, tmp: Path, n: int, batch_size: int, workers: int) -> dict:
    """Embedding-only vs ingest rates, and the store's size per source."""
    from .store import Store

    write_cutouts(tmp / "cutouts", n)
    embed = embedding_rate(encoder, n, batch_size)
    full = ingest_rate(encoder, tmp / "cutouts", tmp / "ingest.lance", batch_size, workers)
    thumbs = [t for batch in Store(tmp / "ingest.lance").scan(["thumbnail"]) for t in batch.column("thumbnail").to_pylist()]
    return {
        "model": encoder.model_id, "dtype": encoder.dtype, "files": n, "batch_size": batch_size, "embedding_only": embed,
        "ingest": full, "fraction": full["steady_per_s"] / embed["per_s"], "fraction_whole_run": full["per_s"] / embed["per_s"],
        "store_bytes_per_source": folder_bytes(tmp / "ingest.lance") / max(full["sources"], 1),
        "thumbnail_bytes_mean": float(np.mean([len(t) for t in thumbs])) if thumbs else float("nan"),
    }  # fmt: skip


# ---------------------------------------------------------------------------
# Search: the vectors


def normalise_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def cluster_vectors(c: int, dim: int, seed: int) -> np.ndarray:
    """The ``PER_CLUSTER`` vectors of cluster ``c`` (deterministic in ``seed`` and ``c``)."""
    mean = np.random.default_rng([seed, 0]).normal(size=dim)
    mean /= np.linalg.norm(mean)
    rng = np.random.default_rng([seed, 1, c])
    r = rng.normal(size=dim)
    centre = mean + 0.8 * r / np.linalg.norm(r)
    centre /= np.linalg.norm(centre)
    basis = rng.normal(size=(INTRINSIC_DIM, dim)) / math.sqrt(dim)  # rows of norm ~1
    z = rng.normal(size=(PER_CLUSTER, INTRINSIC_DIM))
    noise = rng.normal(size=(PER_CLUSTER, dim)) * (NOISE / math.sqrt(dim))
    return normalise_rows(centre + (SPREAD / math.sqrt(INTRINSIC_DIM)) * z @ basis + noise)


def iter_vectors(n: int, dim: int, seed: int, chunk_clusters: int = 50):
    """``(first row, vectors)`` chunks of the ``n`` vectors, cluster by cluster."""
    clusters = math.ceil(n / PER_CLUSTER)
    for first in range(0, clusters, chunk_clusters):
        block = np.concatenate([cluster_vectors(c, dim, seed) for c in range(first, min(first + chunk_clusters, clusters))])
        start = first * PER_CLUSTER
        yield start, block[: n - start]


def write_vectors(path: Path, n: int, dim: int, seed: int) -> float:
    """A survey store of ``n`` vectors (ids ``v0000000``...; no thumbnails); seconds taken."""
    import pyarrow as pa

    from .store import SOURCES, Store, now, sources_schema

    schema = sources_schema(dim)
    table = Store(path).db.create_table(SOURCES, schema=schema)
    start = time.perf_counter()
    rng = np.random.default_rng([seed, 2])
    for first, block in iter_vectors(n, dim, seed):
        m = len(block)
        columns = {
            "id": pa.array([f"v{first + i:07d}" for i in range(m)]), "name": pa.array([f"V{first + i}" for i in range(m)]),
            "ra": pa.array(rng.uniform(0, 360, m)), "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-1, 1, m)))),
            "source": pa.array(["synthetic"] * m), "thumbnail": pa.nulls(m, pa.binary()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), dim),
            "model": pa.array(["bench"] * m), "adapter": pa.array([""] * m), "preprocessing": pa.array([""] * m),
            "flags": pa.array([""] * m), "created_at": pa.array([now()] * m, pa.timestamp("us", tz="UTC")),
        }  # fmt: skip
        table.add(pa.table(columns, schema=schema))
    return time.perf_counter() - start


def make_queries(n: int, dim: int, seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` stored vectors (their row numbers) plus noise, normalised."""
    rng = np.random.default_rng([seed, 3])
    rows = np.sort(rng.choice(n, size=count, replace=False))
    base = np.concatenate([cluster_vectors(c, dim, seed)[rows[rows // PER_CLUSTER == c] % PER_CLUSTER]
                           for c in np.unique(rows // PER_CLUSTER)])  # fmt: skip
    return rows, normalise_rows(base + rng.normal(size=base.shape) * (QUERY_NOISE / math.sqrt(dim)))


def exact_top(queries: np.ndarray, n: int, dim: int, seed: int, k: int = K) -> np.ndarray:
    """The row numbers of the exact ``k`` nearest vectors (largest dot product) per query,
    over all ``n`` vectors (regenerated chunk by chunk)."""
    best_score = np.full((len(queries), k), -np.inf, np.float32)
    best_row = np.zeros((len(queries), k), np.int64)
    for first, block in iter_vectors(n, dim, seed):
        scores = queries @ block.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else np.tile(np.arange(scores.shape[1]), (len(queries), 1))
        all_scores = np.concatenate([best_score, np.take_along_axis(scores, top, axis=1)], axis=1)
        all_rows = np.concatenate([best_row, top + first], axis=1)
        keep = np.argsort(-all_scores, axis=1)[:, :k]
        best_score, best_row = np.take_along_axis(all_scores, keep, axis=1), np.take_along_axis(all_rows, keep, axis=1)
    return best_row


# ---------------------------------------------------------------------------
# Search: the measurements


def run_queries(store, queries: np.ndarray, truth: np.ndarray, nprobes: int, refine_factor: int) -> dict:
    """Latency percentiles (ms) of :func:`nearest` and mean recall@10 against ``truth``."""
    from .search import nearest

    times, recalls = [], []
    for q, exact in zip(queries, truth):
        start = time.perf_counter()
        hits = nearest(store, q, K, nprobes=nprobes, refine_factor=refine_factor)
        times.append(1000 * (time.perf_counter() - start))
        found = {int(h["id"][1:]) for h in hits}
        recalls.append(len(found & set(exact.tolist())) / K)
    return {
        "nprobes": nprobes, "refine_factor": refine_factor, "queries": len(queries), "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)), "recall_at_10": float(np.mean(recalls)),
    }  # fmt: skip


def flat_check(store, queries: np.ndarray, truth: np.ndarray) -> dict:
    """LanceDB's exact (index-bypassing) search on a few queries: its latency, and that it
    agrees with the numpy top 10 (a check of the ground truth)."""
    from .store import SOURCES

    table, times, recalls = store.table(SOURCES), [], []
    for q, exact in zip(queries, truth):
        start = time.perf_counter()
        rows = table.search(q, vector_column_name="vector").distance_type("cosine").bypass_vector_index().select(["id", "_distance"]).limit(K).to_arrow()
        times.append(1000 * (time.perf_counter() - start))
        recalls.append(len({int(i[1:]) for i in rows.column("id").to_pylist()} & set(exact.tolist())) / K)
    return {"queries": len(queries), "p50_ms": float(np.percentile(times, 50)), "recall_at_10": float(np.mean(recalls))}


def index_details(store) -> dict:
    """What LanceDB reports of the vector index (sub-vectors, k-means iterations ...)."""
    from .store import SOURCES

    table = store.table(SOURCES)
    config = next(i for i in table.list_indices() if "vector" in i.columns)
    details = dict(getattr(config, "index_details", None) or {})
    return {"size_bytes": getattr(config, "size_bytes", None), **details}


def bench_search(tmp: Path, n: int, dim: int, queries: int, seed: int = 0, index_iterations: int | None = None) -> dict:
    """The store, its index, the exact answers and every setting's latency and recall."""
    from .store import Store

    path = tmp / "vectors.lance"
    write_s = write_vectors(path, n, dim, seed)
    store = Store(path)
    start = time.perf_counter()
    store.ensure_vector_index(0, **({"max_iterations": index_iterations} if index_iterations else {}))
    index_s = time.perf_counter() - start
    rows, q = make_queries(n, dim, seed, queries)
    start = time.perf_counter()
    truth = exact_top(q, n, dim, seed)
    truth_s = time.perf_counter() - start
    assert all(r in t for r, t in zip(rows, truth)), "a query's own source must be among its exact top 10"
    run_queries(store, q[: min(20, len(q))], truth, *SETTINGS[0])  # warm-up: the index into memory
    results = [run_queries(store, q, truth, nprobes, refine) for nprobes, refine in SETTINGS]
    index_dir = next(path.rglob("_indices"), None)
    return {
        "vectors": n, "dim": dim, "clusters": math.ceil(n / PER_CLUSTER), "num_partitions": round(math.sqrt(n)),
        "index": index_details(store), "write_s": write_s, "index_s": index_s, "exact_numpy_s": truth_s,
        "flat": flat_check(store, q[:5], truth[:5]), "settings": results,
        "store_bytes_per_source": folder_bytes(path) / n,
        "index_bytes_per_source": (folder_bytes(index_dir) / n) if index_dir else 0.0,
    }  # fmt: skip


# ---------------------------------------------------------------------------
# The report


GOALS = {"ingest_fraction": 0.9, "p95_ms": 20.0, "recall_at_10": 0.95}


def best_setting(settings: list[dict]) -> dict | None:
    """The fastest (p95) setting that reaches the recall goal, if any."""
    good = [s for s in settings if s["recall_at_10"] >= GOALS["recall_at_10"]]
    return min(good, key=lambda s: s["p95_ms"]) if good else None


def table(report: dict) -> str:
    """The report as a text table."""
    ing, sea = report["ingest"], report["search"]
    lines = [
        f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch {report['machine']['torch']}; "
        f"load average {report['machine']['load_average_1min_start']:.1f} at the start, {report['machine']['load_average_1min']:.1f} at the end",
        f"ingest ({ing['model']}, {ing['files']} FITS files, batches of {ing['batch_size']}, {ing['ingest']['workers']} workers):",
        f"  embedding only     {ing['embedding_only']['per_s']:8.2f} sources/s",
        f"  ingest (steady)    {ing['ingest']['steady_per_s']:8.2f} sources/s   fraction {ing['fraction']:.3f} (goal >= {GOALS['ingest_fraction']})",
        f"  ingest (whole run) {ing['ingest']['per_s']:8.2f} sources/s   fraction {ing['fraction_whole_run']:.3f}; first batch after {ing['ingest']['first_batch_s']:.1f} s",
        f"  store on disk      {ing['store_bytes_per_source'] / 1024:8.1f} KiB per source (thumbnail {ing['thumbnail_bytes_mean'] / 1024:.1f} KiB)",
        f"search ({sea['vectors']:,} x {sea['dim']}-d, {sea['clusters']} clusters; IVF-PQ: about {sea['num_partitions']} partitions, "
        f"{sea['index'].get('compression', {}).get('num_sub_vectors', '?')} sub-vectors; built in {sea['index_s']:.0f} s):",
        f"  {'nprobes':>8} {'refine':>7} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10}",
    ]  # fmt: skip
    for s in sea["settings"]:
        lines.append(f"  {s['nprobes']:>8} {s['refine_factor']:>7} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f} {s['recall_at_10']:>10.3f}")
    lines += [
        f"  exact (no index): p50 {sea['flat']['p50_ms']:.0f} ms, recall@10 {sea['flat']['recall_at_10']:.3f} ({sea['flat']['queries']} queries)",
        f"  store on disk {sea['store_bytes_per_source']:.0f} bytes per source without thumbnail (index {sea['index_bytes_per_source']:.0f})",
    ]
    best = report["best_setting"]
    lines.append(f"goals: ingest {'met' if report['goals_met']['ingest_fraction'] else 'NOT met'}; search "
                 + (f"met at nprobes={best['nprobes']} refine={best['refine_factor']}" if report["goals_met"]["search"] else "NOT met"))  # fmt: skip
    return "\n".join(lines)


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m radioalign.survey.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="stored vectors for the search benchmark (default 1,000,000)")
    p.add_argument("--dim", type=int, default=768, help="vector dimension (default 768)")
    p.add_argument("--queries", type=int, default=300, help="queries per setting (default 300)")
    p.add_argument("--files", type=int, default=160, help="FITS files for the ingest benchmark (default 160)")
    p.add_argument("--batch-size", type=int, default=16, help="ingest batch size (default 16)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the ingest's own default)")
    p.add_argument("--quick", action="store_true", help="20,000 vectors, 50 queries, 24 files, the tiny SigLIP")
    p.add_argument("--out", default="build/bench-survey.json", help="the JSON report (default build/bench-survey.json)")
    p.add_argument("--tmp", default=None, help="where to write the files and stores (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.files = min(args.n, 20_000), min(args.queries, 50), min(args.files, 24)
    return args


def run(args: argparse.Namespace) -> dict:
    """Both benchmarks; the report as a dict."""
    from .ingest import default_workers

    workers = default_workers() if args.workers is None else args.workers
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="radioalign-bench-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        free = shutil.disk_usage(tmp).free
        if free < args.n * args.dim * 4 * 2:
            raise SystemExit(f"{tmp} has {free / 2**30:.1f} GiB free; the vectors need about {args.n * args.dim * 8 / 2**30:.1f}")
        encoder = tiny_encoder(tmp, args.batch_size) if args.quick else base_encoder(args.batch_size)
        ingest = bench_ingest(encoder, tmp, args.files, args.batch_size, workers)
        search = bench_search(tmp, args.n, args.dim, args.queries, index_iterations=10 if args.quick else None)
    best = best_setting(search["settings"])
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "machine": {**machine(), "load_average_1min_start": load},
        "quick": args.quick,
        "goals": GOALS, "ingest": ingest, "search": search, "best_setting": best,
        "goals_met": {"ingest_fraction": ingest["fraction"] >= GOALS["ingest_fraction"],
                      "search": best is not None and best["p95_ms"] <= GOALS["p95_ms"]},
    }  # fmt: skip


def main(argv=None) -> dict:
    args = _args(argv)
    report = run(args)
    print(table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out}")
    return report


if __name__ == "__main__":
    main()
