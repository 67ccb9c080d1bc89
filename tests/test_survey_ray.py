"""Ingest with Ray Data (`radioalign ingest --ray`) on a local 2-CPU Ray instance, tiny
SigLIP: the same ids, vectors, thumbnails and failures as the single-process path, and a
rerun that embeds nothing."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")
pytest.importorskip("reproject")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from test_survey_cli import write_bad_files, write_good_files  # noqa: E402

from radioalign.survey.cli import main  # noqa: E402
from radioalign.survey.encoder import load_encoder  # noqa: E402
from radioalign.survey.ingest import ingest  # noqa: E402
from radioalign.survey.ray_ingest import ingest_ray, ray_session, read_batch, task_from_json, task_json  # noqa: E402
from radioalign.survey.store import ERRORS, SOURCES, Store  # noqa: E402


def stored(path) -> dict[str, dict]:
    rows = Store(path).table(SOURCES).to_arrow().to_pylist()
    return {r["id"]: r for r in rows}


def failed(path) -> dict[str, str]:
    return {r["id"]: r["reason"] for r in Store(path).table(ERRORS).to_arrow().to_pylist()}


def test_read_batch_keeps_failures_as_rows(tmp_path):
    from radioalign.survey.ingest import file_tasks

    names = write_good_files(tmp_path / "in", 2)
    tasks = list(file_tasks([tmp_path / "in" / f"{names[0]}.fits", tmp_path / "missing.fits"]))
    assert [task_from_json(task_json(t)) for t in tasks] == tasks
    out = read_batch({"task": np.array([task_json(t) for t in tasks], dtype=object)})
    assert out["ok"].tolist() == [True, False] and out["image"].shape == (2, 150, 150)
    assert out["thumbnail"][0][:4] == b"\x89PNG" and "no such file" in out["reason"][1]
    assert np.isfinite(out["ra"][0]) and np.isnan(out["ra"][1])


@pytest.mark.slow
def test_ray_ingest_matches_the_single_process_path(tmp_path, tiny_siglip_dir, one_thread):
    folder = tmp_path / "cutouts"
    names = write_good_files(folder, 8)
    bad = write_bad_files(folder / "bad")
    encoder = load_encoder(tiny_siglip_dir, device="cpu", dtype="float32")
    single = ingest([folder], tmp_path / "single", encoder=encoder, workers=0, batch_size=4, progress=False)
    assert (single.ok, single.failed) == (len(names), len(bad))

    with ray_session("local", num_cpus=2):
        first = ingest_ray([folder], tmp_path / "ray", encoder=encoder, batch_size=4, progress=False)
        again = ingest_ray([folder], tmp_path / "ray", encoder=encoder, batch_size=4, progress=False)
        cli = main(["ingest", str(folder), "--store", str(tmp_path / "cli"), "--model", str(tiny_siglip_dir), "--dtype",
                    "float32", "--batch-size", "4", "--no-progress", "--ray"])  # fmt: skip
        assert ray.is_initialized()
    assert not ray.is_initialized(), "the session shuts down the Ray instance it started"

    assert (first.ok, first.failed, first.skipped) == (single.ok, single.failed, 0)
    assert (again.embedded, again.failed, again.skipped) == (0, 0, len(names) + len(bad))
    a, b = stored(tmp_path / "single"), stored(tmp_path / "ray")
    assert sorted(a) == sorted(b)
    for i in a:
        assert a[i]["name"] == b[i]["name"] and a[i]["thumbnail"] == b[i]["thumbnail"]
        assert a[i]["preprocessing"] == b[i]["preprocessing"] and (a[i]["ra"], a[i]["dec"]) == (b[i]["ra"], b[i]["dec"])
        np.testing.assert_allclose(a[i]["vector"], b[i]["vector"], atol=1e-5)
    assert failed(tmp_path / "single") == failed(tmp_path / "ray") == failed(tmp_path / "cli")
    assert cli == 0 and sorted(stored(tmp_path / "cli")) == sorted(a), "`radioalign ingest --ray` stores the same sources"
    assert Store(tmp_path / "ray").meta()["fingerprint"] == encoder.fingerprint
