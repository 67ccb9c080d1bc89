"""The survey benchmark (`make bench-survey`): its synthetic vectors and exact answers, and
a `--quick` run end to end (20,000 vectors, the tiny SigLIP)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")

from radioalign.survey import bench  # noqa: E402


def test_vectors_are_deterministic_unit_and_clustered():
    a, b = bench.cluster_vectors(3, 64, seed=1), bench.cluster_vectors(3, 64, seed=1)
    assert a.shape == (bench.PER_CLUSTER, 64) and a.dtype == np.float32 and np.array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    other = bench.cluster_vectors(4, 64, seed=1)
    within = (a[:200] @ a[200:400].T).mean()
    across = (a[:200] @ other[:200].T).mean()
    assert within > across, "points of a cluster are closer to each other than to another cluster's"
    chunks = list(bench.iter_vectors(2500, 64, seed=1, chunk_clusters=2))
    assert [first for first, _ in chunks] == [0, 2000] and sum(len(v) for _, v in chunks) == 2500
    np.testing.assert_array_equal(chunks[0][1][1000:2000], bench.cluster_vectors(1, 64, seed=1))


def test_exact_top_matches_a_full_sort():
    n, dim = 2500, 32
    rows, queries = bench.make_queries(n, dim, seed=2, count=7)
    everything = np.concatenate([v for _, v in bench.iter_vectors(n, dim, seed=2)])
    expected = np.argsort(-(queries @ everything.T), axis=1)[:, : bench.K]
    np.testing.assert_array_equal(bench.exact_top(queries, n, dim, seed=2), expected)
    assert all(r in e for r, e in zip(rows, expected)), "a query is a stored vector plus small noise"


@pytest.mark.slow
def test_quick_benchmark_writes_its_report(tmp_path, capsys, one_thread):
    out = tmp_path / "bench-survey.json"
    report = bench.main(["--quick", "--out", str(out), "--tmp", str(tmp_path)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    printed = capsys.readouterr().out
    assert "goals:" in printed and "recall@10" in printed and "fraction" in printed

    ingest = report["ingest"]
    assert ingest["ingest"]["sources"] == ingest["files"] == 24 and ingest["ingest"]["failed"] == 0
    assert ingest["embedding_only"]["per_s"] > 0 and ingest["ingest"]["steady_per_s"] > 0
    assert ingest["fraction"] == pytest.approx(ingest["ingest"]["steady_per_s"] / ingest["embedding_only"]["per_s"])
    assert ingest["store_bytes_per_source"] > ingest["thumbnail_bytes_mean"] > 0

    search = report["search"]
    assert search["vectors"] == 20_000 and search["dim"] == 768
    assert search["flat"]["recall_at_10"] == 1.0, "LanceDB's exact search agrees with the numpy ground truth"
    assert len(search["settings"]) == len(bench.SETTINGS)
    for s in search["settings"]:
        assert 0.0 <= s["recall_at_10"] <= 1.0 and 0 < s["p50_ms"] <= s["p95_ms"] and s["queries"] == 50
    by = {(s["nprobes"], s["refine_factor"]): s["recall_at_10"] for s in search["settings"]}
    assert by[(20, 50)] >= by[(20, 1)], "re-ranking more candidates exactly does not lose neighbours"
    assert search["store_bytes_per_source"] >= 4 * 768, "the store holds at least the float32 vectors"
    assert report["best_setting"] in (None, *search["settings"])
    assert report["goals_met"]["search"] == (report["best_setting"] is not None and report["best_setting"]["p95_ms"] <= 20.0)
