"""Sources are what they are, not where they lie; several ingests may write one store at
once; every bad entry of a folder becomes an error row and the run goes on (the
`radioalign` command, as users run it, with the tiny SigLIP)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")

from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from radioalign.survey import ingest as I  # noqa: E402
from radioalign.survey.encoder import load_encoder  # noqa: E402
from radioalign.survey.images import png_image  # noqa: E402
from radioalign.survey.search import nearest  # noqa: E402
from radioalign.survey.store import ERRORS, FILES, SOURCES, Store  # noqa: E402

pytestmark = pytest.mark.slow


def cutout(seed: int, n: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 1, (n, n))
    y, x = rng.integers(8, n - 16, 2)
    data[y : y + 8, x : x + 12] += 20
    return data.astype(np.float32)


def sky_header(i: int) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [(10.0 * i) % 360.0, -20.0 + i % 40]
    w.wcs.crpix = [24.5, 24.5]
    w.wcs.cdelt = [-3.0 / 3600.0, 3.0 / 3600.0]
    return w.to_header()


def write_cutouts(folder: Path, seeds) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in seeds:
        fits.PrimaryHDU(cutout(i), header=sky_header(i)).writeto(folder / f"J{i:04d}.fits")


def ingest_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "radioalign", "ingest", *map(str, args), "--model", "tiny", "--workers", "0",
            "--no-progress", "--json"]  # fmt: skip


def test_concurrent_ingests_store_each_source_once(tmp_path, env):
    write_cutouts(tmp_path / "all", range(60))
    write_cutouts(tmp_path / "half", range(30, 60))  # copies of half of them, elsewhere
    store = tmp_path / "store"
    runs = [ingest_cmd(tmp_path / folder, "--store", store, "--batch-size", 4) for folder in ("all", "all", "half")]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in runs]
    searches = 0
    while any(p.poll() is None for p in procs):  # readers keep working during the ingests
        reader = Store(store) if (store / "sources.lance").exists() else None
        if reader is not None and reader.count() > 0:
            hits = nearest(reader, np.ones(reader.table(SOURCES).schema.field("vector").type.list_size, np.float32), k=3)
            assert 1 <= len(hits) <= 3
            searches += 1
        time.sleep(0.2)
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    summaries = [json.loads(out) for out, _ in outs]
    rows = Store(store).table(SOURCES).to_arrow().to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 60  # each source exactly once
    assert sum(s["ok"] for s in summaries) == 60  # and embedded into the store once
    assert Store(store).count(FILES) == 90  # every input remembered (the copies too)
    assert searches > 0


def test_copies_add_nothing_and_new_pixels_replace_the_row(tmp_path, tiny_siglip_dir, one_thread):
    encoder = load_encoder(tiny_siglip_dir, device="cpu", dtype="float32")
    write_cutouts(tmp_path / "a", range(6))
    run = dict(store=tmp_path / "store", encoder=encoder, workers=0, batch_size=4, progress=False)
    assert I.ingest([tmp_path / "a"], **run).ok == 6
    store = Store(tmp_path / "store")
    before = {r["name"]: r for r in store.table(SOURCES).to_arrow().to_pylist()}

    shutil.copytree(tmp_path / "a", tmp_path / "b")  # a copy ...
    os.rename(tmp_path / "b" / "J0001.fits", tmp_path / "b" / "renamed.fits")  # ... with a file renamed
    copied = I.ingest([tmp_path / "b"], **run)
    assert (copied.ok, copied.embedded, copied.skipped) == (0, 0, 6) and store.count() == 6
    paths = {r["id"]: r["source"] for r in store.table(SOURCES).to_arrow().to_pylist()}
    assert paths[before["J0001"]["id"]] == str((tmp_path / "b" / "renamed.fits").resolve())  # the last path seen

    target = tmp_path / "a" / "J0003.fits"
    fits.PrimaryHDU(cutout(99), header=sky_header(3)).writeto(target, overwrite=True)  # new pixels, same name
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new stamp even on a coarse clock
    replaced = I.ingest([tmp_path / "a"], **run)
    assert (replaced.ok, replaced.skipped) == (1, 5)
    rows = {r["id"]: r for r in store.table(SOURCES).to_arrow().to_pylist()}
    assert before["J0003"]["id"] in rows  # the copy in b/ still holds the old pixels: that source stays
    new = [r for r in rows.values() if r["source"] == str(target.resolve())]
    assert len(new) == 1 and new[0]["id"] != before["J0003"]["id"]

    os.unlink(tmp_path / "b" / "J0003.fits")  # the only other holder of the old pixels goes ...
    fits.PrimaryHDU(cutout(98), header=sky_header(3)).writeto(target, overwrite=True)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert I.ingest([tmp_path / "a"], **run).ok == 1
    rows = {r["id"]: r for r in store.table(SOURCES).to_arrow().to_pylist()}
    assert new[0]["id"] not in rows and store.count() == 7  # ... so the replaced row is gone, vector and all
    thumb = png_image([r for r in rows.values() if r["source"] == str(target.resolve())][0]["thumbnail"])
    assert not np.array_equal(thumb, png_image(new[0]["thumbnail"]))

    touched = tmp_path / "a" / "J0000.fits"
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 3 * 10**9))  # touched, same pixels: read, not embedded
    again = I.ingest([tmp_path / "a"], **run)
    assert (again.ok, again.embedded, again.skipped) == (0, 0, 6)


def write_bad_entries(folder: Path) -> dict[str, str]:
    """Every kind of bad entry, and a word its error reason must hold."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loop-a.fits").symlink_to(folder / "loop-b.fits")
    (folder / "loop-b.fits").symlink_to(folder / "loop-a.fits")
    (folder / "itself").symlink_to(folder, target_is_directory=True)
    os.mkfifo(folder / "pipe.fits")  # not a regular file: reading it would block
    (folder / "empty.fits").write_bytes(b"")
    fits.PrimaryHDU(cutout(5), header=sky_header(5)).writeto(folder / "whole.tmp")
    raw = (folder / "whole.tmp").read_bytes()
    (folder / "whole.tmp").unlink()
    (folder / "truncated.fits").write_bytes(raw[: len(raw) // 2])
    fits.PrimaryHDU(np.full((40, 40), np.nan, np.float32)).writeto(folder / "allnan.fits")
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.ones(5, np.float32))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(folder / "table.fits")
    bad = {"loop-a": "loop", "loop-b": "loop", "itself": "loop", "pipe": "not a regular file", "empty": "empty file",
           "truncated": "truncated", "allnan": "NaN", "table": "no 2-D image"}  # fmt: skip
    if os.geteuid() != 0:  # root reads any file: the unreadable case needs a normal user
        (folder / "secret.fits").write_bytes(raw)
        os.chmod(folder / "secret.fits", 0)
        bad["secret"] = "Permission"
    return bad


def test_every_bad_entry_is_an_error_row_and_the_run_goes_on(tmp_path, env):
    if os.geteuid() == 0:
        print("running as root: the unreadable-file case (chmod 000) is not checked here")
    folder = tmp_path / "cutouts"
    write_cutouts(folder, range(3))
    fits.PrimaryHDU(cutout(7)).writeto(folder / "nowcs.fits")  # no celestial WCS: ingested, flagged
    bad = write_bad_entries(folder)
    proc = subprocess.run(ingest_cmd(folder, "--store", tmp_path / "store", "--batch-size", 3), env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert (summary["ok"], summary["failed"]) == (4, len(bad))
    assert f"{len(bad)} failed" in proc.stderr and "Traceback" not in proc.stderr
    store = Store(tmp_path / "store")
    errors = {r["name"]: r["reason"] for r in store.table(ERRORS).to_arrow().to_pylist()}
    assert set(errors) == set(bad)
    for name, word in bad.items():
        assert word in errors[name], (name, errors[name])
    rows = {r["name"]: r for r in store.table(SOURCES).to_arrow().to_pylist()}
    assert rows["nowcs"]["ra"] is None and rows["nowcs"]["flags"] == "orientation-unknown"
    assert all(rows[f"J{i:04d}"]["flags"] == "" for i in range(3))
