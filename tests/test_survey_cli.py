"""The `radioalign` command end to end, as a user on a fresh clone runs it (`python -m
radioalign`, the tiny SigLIP on the CPU): ingest of a folder of good and bad FITS files,
search, classify, a catalogue with a mosaic, and a kill -9 in the middle of an ingest."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")
pytest.importorskip("reproject")

from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from radioalign.survey.cli import main  # noqa: E402
from radioalign.survey.images import png_image  # noqa: E402
from radioalign.survey.store import ERRORS, SOURCES, Store  # noqa: E402

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------
# Data: FITS cut-outs built here


def sky_wcs(ra: float, dec: float, scale_arcsec: float, n: int, axes=("RA---TAN", "DEC--TAN")) -> WCS:
    w = WCS(naxis=len(axes))
    w.wcs.ctype = list(axes)
    w.wcs.crval = [ra, dec] + [1.4e9, 1.0][: len(axes) - 2]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0] + [1.0, 1.0][: len(axes) - 2]
    w.wcs.cdelt = [-scale_arcsec / 3600.0, scale_arcsec / 3600.0] + [1e6, 1.0][: len(axes) - 2]
    return w


def radio_source(n: int, rng, kind: int) -> np.ndarray:
    """Noise (sigma 1) plus a double source whose shape depends on ``kind``."""
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    sep = n * (0.1 + 0.05 * (kind % 4))
    angle = 0.4 * kind
    dx, dy = sep * np.cos(angle), sep * np.sin(angle)
    blob = lambda x0, y0, s, a: a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s**2))  # noqa: E731
    image = blob(dx, dy, 3, 40) + blob(-dx, -dy, 3, 30) + blob(0, 0, 2, 15 * (kind % 2))
    return image + rng.normal(0, 1, (n, n))


def write_good_files(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` good cut-outs: FIRST-like 150 px at 1.8 arcsec, larger ones to crop, 4-D
    cubes with degenerate FREQ/STOKES axes at 3 arcsec/px (reprojected). Returns names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        ra, dec = (15.0 * i) % 360.0, -30.0 + 2.0 * (i % 30)
        if i % 3 == 0:
            data, w = radio_source(150, rng, i), sky_wcs(ra, dec, 1.8, 150)
        elif i % 3 == 1:
            data, w = radio_source(170, rng, i), sky_wcs(ra, dec, 1.8, 170)
        else:
            w = sky_wcs(ra, dec, 3.0, 96, axes=("RA---SIN", "DEC--SIN", "FREQ", "STOKES"))
            data = radio_source(96, rng, i)[None, None]
        name = f"J{i:04d}"
        fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(folder / f"{name}.fits")
        names.append(name)
    return names


def write_bad_files(folder: Path) -> dict[str, str]:
    """Bad inputs and the word their error reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = np.random.default_rng(9).normal(0, 1, (150, 150)).astype(np.float32)
    fits.PrimaryHDU(good, header=sky_wcs(1, 1, 1.8, 150).to_header()).writeto(folder / "whole.tmp")
    raw = (folder / "whole.tmp").read_bytes()
    (folder / "whole.tmp").unlink()
    (folder / "truncated.fits").write_bytes(raw[: len(raw) // 2])
    (folder / "empty.fits").write_bytes(b"")
    fits.PrimaryHDU(np.arange(50.0)).writeto(folder / "oned.fits")
    fits.PrimaryHDU(np.full((150, 150), np.nan, np.float32)).writeto(folder / "allnan.fits")
    (folder / "image.fits").write_text("this is not a FITS file\n" * 100)
    (folder / "readme.txt").write_text("cut-outs from a survey\n")
    return {"truncated": "reshape", "empty": "empty", "oned": "2-D", "allnan": "NaN", "image": "SIMPLE", "readme": "unsupported"}


# ---------------------------------------------------------------------------
# Running the command


def radioalign(env, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "radioalign", *map(str, args)], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"radioalign {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, env):
    """A folder of 9 good and 7 bad files ingested with `radioalign ingest`."""
    root = tmp_path_factory.mktemp("survey")
    good = write_good_files(root / "cutouts", 9)
    bad = write_bad_files(root / "cutouts")
    store = root / "store"
    proc = radioalign(env, "ingest", root / "cutouts", "--store", store, "--model", "tiny", "--workers", "1",
                      "--batch-size", "4", "--no-progress", "--json")  # fmt: skip
    return {"root": root, "store": store, "good": good, "bad": bad, "summary": json.loads(proc.stdout), "stderr": proc.stderr}


def test_ingest_stores_good_files_and_records_bad_ones(ingested):
    summary = ingested["summary"]
    assert summary["ok"] == len(ingested["good"]) and summary["embedded"] == len(ingested["good"])
    assert summary["failed"] == len(ingested["bad"]) and summary["skipped"] == 0
    assert "ok" in ingested["stderr"] and "failed" in ingested["stderr"]  # the human summary line
    store = Store(ingested["store"])
    rows = store.table(SOURCES).to_arrow().to_pylist()
    assert sorted(r["name"] for r in rows) == sorted(ingested["good"])
    meta = store.meta()
    for row in rows:
        assert row["model"] == meta["fingerprint"] and len(row["vector"]) == int(meta["dim"])
        assert np.linalg.norm(row["vector"]) == pytest.approx(1.0, abs=1e-5)
        assert row["thumbnail"][:4] == b"\x89PNG" and row["ra"] is not None and "mirabest" in row["preprocessing"]
    cubes = [r for r in rows if int(r["name"][1:]) % 3 == 2]
    assert cubes and all("reprojected" in r["preprocessing"] and "degenerate" in r["preprocessing"] for r in cubes)
    errors = {Path(r["source"]).stem: r["reason"] for r in store.table(ERRORS).to_arrow().to_pylist()}
    assert set(errors) == set(ingested["bad"])
    for name, word in ingested["bad"].items():
        assert word.lower() in errors[name].lower(), (name, errors[name])


def test_search_text_returns_json(ingested, env):
    proc = radioalign(env, "search", "--store", ingested["store"], "--text", "bent-tail radio galaxy with a bright core", "-k", "4")
    results = json.loads(proc.stdout)
    assert len(results) == 4
    for r in results:
        assert set(r) == {"id", "name", "ra", "dec", "score", "source"} and -1.0 <= r["score"] <= 1.0
        assert r["name"] in ingested["good"]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_classify_labels_every_source(ingested, env):
    proc = radioalign(env, "classify", "--store", ingested["store"], "--json")
    summary = json.loads(proc.stdout)
    assert summary["labelled"] == len(ingested["good"])
    assert set(summary["counts"]) <= {"FR-I", "FR-II"} and sum(summary["counts"].values()) == len(ingested["good"])


def test_search_by_name_with_a_cone_as_csv(ingested, capsys):
    store = Store(ingested["store"])
    target = store.rows_where("name = 'J0003'", ["id", "ra", "dec"], limit=1)[0]
    code = main(["search", "--store", str(ingested["store"]), "--like", "J0003", "--cone", str(target["ra"]),
                 str(target["dec"]), "60", "--format", "csv", "-k", "5"])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0] == "id,name,ra,dec,score,source,label,probability,p_FR_I,p_FR_II"  # classified above
    assert len(lines) == 2 and lines[1].startswith(target["id"] + ",J0003,")  # only the source itself lies within 60"


def test_a_store_refuses_another_model(ingested, tmp_path, capsys):
    from radioalign.model import build_tiny_siglip

    other = build_tiny_siglip(tmp_path / "other-tiny", seed=1)
    code = main(["search", "--store", str(ingested["store"]), "--text", "a jet", "--model", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and "fingerprint" in err and "built with" in err
    code = main(["search", "--store", str(ingested["store"]), "--like", "J0003", "--model", str(other)])
    assert code == 2 and "fingerprint" in capsys.readouterr().err
    code = main(["ingest", str(ingested["root"] / "cutouts"), "--store", str(ingested["store"]), "--model", str(other), "--workers", "0", "--no-progress"])
    assert code == 2 and "fingerprint" in capsys.readouterr().err
    code = main(["search", "--store", str(tmp_path / "nowhere"), "--text", "a jet"])
    assert code == 2 and "no survey store" in capsys.readouterr().err


def test_every_subcommand_has_help_with_an_example(capsys):
    for command in ("ingest", "classify", "search"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert info.value.code == 0 and "examples:" in out and f"radioalign {command} " in out


def test_catalogue_cut_from_a_mosaic(tmp_path, tiny_siglip_dir, capsys, monkeypatch):
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tiny_siglip_dir.parent))
    n = 500
    w = sky_wcs(150.0, 2.0, 3.0, n)  # 3 arcsec/px: the cut-outs are reprojected to 1.8
    rng = np.random.default_rng(5)
    data = rng.normal(0, 1, (n, n))
    rows = ["name,ra,dec"]
    for i, (x, y) in enumerate([(120, 130), (300, 250), (420, 400)]):
        data[y - 3 : y + 4, x - 3 : x + 4] += 30
        sky = w.pixel_to_world(x, y)
        rows.append(f"S{i},{sky.ra.deg},{sky.dec.deg}")
    rows += ["far,20.0,-60.0", "broken,abc,1.0"]
    fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(tmp_path / "mosaic.fits")
    (tmp_path / "cat.csv").write_text("\n".join(rows) + "\n")
    args = ["ingest", "--catalog", str(tmp_path / "cat.csv"), "--mosaic", str(tmp_path / "mosaic.fits"),
            "--store", str(tmp_path / "store"), "--model", "tiny", "--workers", "0", "--no-progress", "--json"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["ok"], summary["failed"]) == (3, 2)
    store = Store(tmp_path / "store")
    for row in store.table(SOURCES).to_arrow().to_pylist():
        ys, xs = np.nonzero(png_image(row["thumbnail"]) >= 128)  # the 21 arcsec square source, 12 px at 1.8 arcsec
        assert 50 < len(ys) < 400 and "reprojected" in row["preprocessing"]
        assert abs(ys.mean() - 74.5) <= 1.5 and abs(xs.mean() - 74.5) <= 1.5, "the source must sit at the cut-out's centre"
    reasons = " ".join(r["reason"] for r in store.table(ERRORS).to_arrow().to_pylist())
    assert "outside every mosaic" in reasons and "bad coordinates" in reasons


# ---------------------------------------------------------------------------
# kill -9 and rerun


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
        except (OSError, KeyError, ValueError):
            continue
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def wait_gone(pids: set[int], timeout: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if Path(f"/proc/{p}").exists()}
        time.sleep(0.2)
    return pids


def test_kill_during_ingest_then_rerun_adds_each_source_once(tmp_path, env):
    total = 60
    write_good_files(tmp_path / "many", total, seed=3)
    store_path = tmp_path / "store"
    args = [sys.executable, "-m", "radioalign", "ingest", str(tmp_path / "many"), "--store", str(store_path),
            "--model", "tiny", "--batch-size", "2", "--workers", "1", "--no-progress", "-v"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 300
        for line in proc.stderr:  # the first committed batch, then kill -9 at once
            if "wrote" in line or time.monotonic() > deadline:
                break
        helpers = descendants(proc.pid)  # the fork server and the DataLoader workers
        assert helpers or not Path("/proc").is_dir()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not wait_gone(helpers), "the workers of a killed ingest must exit, not linger as orphans"
    store = Store(store_path)
    before = {r["id"]: r["created_at"] for r in store.table(SOURCES).to_arrow().to_pylist()}
    assert 0 < len(before) < total, f"the kill must land mid-run ({len(before)} of {total} stored)"

    rerun = radioalign(env, *args[3:-1], "--json")  # the same command, without -v
    summary = json.loads(rerun.stdout)
    assert summary["embedded"] == total - len(before), "only the sources missing after the kill go through the model"
    assert summary["skipped"] == len(before) and summary["failed"] == 0
    rows = Store(store_path).table(SOURCES).to_arrow().to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == total, "each source exactly once"
    after = {r["id"]: r["created_at"] for r in rows}
    assert all(after[i] == t for i, t in before.items()), "rows written before the kill are untouched"

    third = json.loads(radioalign(env, *args[3:-1], "--json").stdout)
    assert (third["embedded"], third["skipped"]) == (0, total)
