"""`radioalign neighbours`: the k nearest neighbours of every source against brute force
(exact index and HNSW graph), its refusals, and a run killed with kill -9 mid-way, then
rerun: the file is complete and correct, and the finished chunks were not redone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("faiss")

import pyarrow.parquet as pq  # noqa: E402
from test_survey_search_paths import GRAPH, WIDE, make_store  # noqa: E402

from radioalign.survey import ann  # noqa: E402
from radioalign.survey.cli import main  # noqa: E402
from radioalign.survey.neighbours import neighbours  # noqa: E402


def brute_force(content: dict, k: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """Every source's k nearest others: float64 cosines, ties by id."""
    ids = sorted(content)
    vectors = np.array([content[i][0] for i in ids], np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = vectors @ vectors.T
    out = {}
    for row, i in enumerate(ids):
        order = [j for j in np.lexsort((np.arange(len(ids)), -scores[row])) if j != row][:k]
        out[i] = ([ids[j] for j in order], 1.0 - scores[row, order])
    return out


def check_file(path, content, k):
    table = pq.read_table(path).to_pylist()
    assert sorted(r["id"] for r in table) == sorted(content), "every source once"
    want = brute_force(content, k)
    for r in table:
        ids, dist = want[r["id"]]
        assert r["neighbour_ids"] == ids, r["id"]
        np.testing.assert_allclose(r["distances"], dist, atol=1e-6)
        assert r["name"] == f"N{r['id']}"


@pytest.mark.parametrize("kind", ["exact", "hnsw_sq8"])
def test_neighbours_equal_brute_force(tmp_path, kind):
    store, content = make_store(tmp_path / "s", 400, duplicates=10)  # ties: a source and its twin at distance 0
    ann.index_for(store, exact_below=ann.EXACT_BELOW if kind == "exact" else GRAPH)
    summary = neighbours(store, tmp_path / "nn.parquet", k=7, chunk_rows=64, ef=WIDE, progress=False)
    assert summary.sources == 400 and summary.chunks == 7 and summary.kind == kind
    check_file(tmp_path / "nn.parquet", content, 7)
    assert pq.ParquetFile(tmp_path / "nn.parquet").num_row_groups == 7
    assert not (tmp_path / "nn.parquet.parts").exists()
    meta = json.loads(pq.read_schema(tmp_path / "nn.parquet").metadata[b"radioalign"])
    assert meta["k"] == 7 and meta["kind"] == kind


def test_neighbours_refusals_are_one_line(tmp_path, capsys):
    make_store(tmp_path / "s", 20)
    for args, words in (
        (["-k", "0"], "positive"), (["--chunk-size", "-3"], "positive"),
        (["--out", str(tmp_path / "no" / "such" / "dir.parquet")], "does not exist"),
        (["--store", str(tmp_path / "nowhere")], "no survey store"),
    ):  # fmt: skip
        base = {"--store": str(tmp_path / "s"), "--out": str(tmp_path / "o.parquet"), "-k": "3"}
        base.update(dict(zip(args[::2], args[1::2])))
        code = main(["neighbours", *[x for kv in base.items() for x in kv], "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_neighbours_resume_after_kill_9(tmp_path, env):
    n, k, chunk = 6000, 5, 20
    store, content = make_store(tmp_path / "s", n, duplicates=30)
    out = tmp_path / "nn.parquet"
    cmd = [sys.executable, "-m", "radioalign", "neighbours", "--store", str(tmp_path / "s"), "-k", str(k), "--out", str(out),
           "--chunk-size", str(chunk), "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = tmp_path / "nn.parquet.parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("part-*.parquet"))) >= 5:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = len(list(parts.glob("part-*.parquet")))
    assert not out.exists() and 5 <= done < n // chunk, f"killed mid-run ({done} chunks written)"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["chunks"] == n // chunk and summary["chunks_resumed"] >= done, summary
    assert "neighbours:" in rerun.stderr and "src" in rerun.stderr, "a progress bar on stderr"
    check_file(out, content, k)
    assert not parts.exists()
