"""`make paper PROFILE=smoke` end to end, offline, with an API key in the environment.

One run of the six notebooks (about two minutes on 2 cores): the table and the five
figures appear, every output has a stamp, a second run skips every step, and the key
that sat in the environment is written to no file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SENTINEL_KEY = "fake-gemini-key-radioalign-sentinel-0123456789abcdef"


@pytest.mark.slow
def test_smoke_paper_run_writes_table_and_figures_and_no_key(tmp_path):
    results = tmp_path / "results"
    build = tmp_path / "build"
    env = dict(
        os.environ,
        GOOGLE_API_KEY=SENTINEL_KEY,
        GEMINI_API_KEY=SENTINEL_KEY,
        RADIOALIGN_RESULTS_DIR=str(results),
        RADIOALIGN_DATA_DIR=str(tmp_path / "data"),
        HF_HUB_OFFLINE="1",
    )
    code = f"from pathlib import Path; from radioalign.study.pipeline import run; print('RAN', run('smoke', build=Path({str(build)!r})))"
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    out = results / "smoke"
    for name in ("metrics.csv", "table1.md", "table1.tex"):
        assert (out / name).is_file(), name
        assert (out / f"{name}.stamp.json").is_file(), f"{name} has no stamp"
    for n in range(1, 6):
        for ext in ("png", "pdf"):
            fig = out / "figures" / f"fig{n}.{ext}"
            assert fig.is_file() and fig.stat().st_size > 1000, fig
            stamp = json.loads((fig.parent / f"{fig.name}.stamp.json").read_text())
            assert stamp["profile"] == "smoke" and stamp["commit"] and stamp["versions"]["torch"]
    assert "Frozen" in (out / "table1.md").read_text()

    # The key must not appear in anything the run wrote: results, executed notebooks, logs.
    leaks = [
        str(p)
        for base in (results, build, tmp_path / "data")
        for p in base.rglob("*")
        if p.is_file() and SENTINEL_KEY.encode() in p.read_bytes()
    ]
    assert not leaks, f"the API key was written to {leaks}"
    assert SENTINEL_KEY not in first.stdout + first.stderr

    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "RAN []" in second.stdout, "a second run with unchanged inputs must skip every step"
