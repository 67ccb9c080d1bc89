"""The store commands (`radioalign store info | errors | export | delete`) and the Python
API (`radioalign.survey.Survey`): a folder of good and bad FITS files ingested and
classified with the tiny SigLIP, then described, exported in the four formats (the
VOTable strictly parsed, with its UCDs), pruned and searched; the export's memory
bounded on a synthetic store; fast checks on synthetic stores without a model."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")
pytest.importorskip("reproject")

from astropy.io import fits  # noqa: E402
from astropy.io.votable import parse  # noqa: E402
from test_survey_cli import write_bad_files, write_good_files  # noqa: E402
from test_survey_store import fake_store  # noqa: E402

from radioalign.survey import Cone, Results, Survey  # noqa: E402
from radioalign.survey.api import as_cone  # noqa: E402
from radioalign.survey.cli import main  # noqa: E402
from radioalign.survey.store import ERRORS, FILES, LABELS, SOURCES, Store, StoreError  # noqa: E402
from radioalign.survey.zeroshot import label_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["FR-I", "FR-II"]
UCDS = {"id": "meta.id;meta.main", "name": "meta.id", "ra": "pos.eq.ra;meta.main", "dec": "pos.eq.dec;meta.main",
        "source": "meta.ref", "label": "src.class", "probability": "stat.probability", "p_FR_I": "stat.probability",
        "p_FR_II": "stat.probability", "created_at": "time.processing", "flags": "meta.code.qual"}  # fmt: skip


def run(*args) -> subprocess.CompletedProcess:
    """`python -m radioalign ARGS` (the store commands need no model)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "radioalign", *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def store_rows(path, columns=("id", "name", "vector")) -> dict[str, dict]:
    return {r["id"]: r for r in Store(path).table(SOURCES).search().select(list(columns)).to_arrow().to_pylist()}


# ---------------------------------------------------------------------------
# A folder ingested and classified with the tiny SigLIP


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, tiny_siglip_dir):
    """9 good FITS files and 6 bad inputs, `radioalign ingest` then `radioalign classify`; the
    tiny SigLIP is found as `tiny` through RADIOALIGN_MODELS_DIR for the whole module."""
    root = tmp_path_factory.mktemp("api")
    good = write_good_files(root / "cutouts", 9)
    bad = write_bad_files(root / "cutouts")
    store = root / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADIOALIGN_MODELS_DIR", str(tiny_siglip_dir.parent))
        args = ["ingest", root / "cutouts", "--store", store, "--model", "tiny", "--workers", "0", "--batch-size", "4", "--no-progress"]
        assert main([str(a) for a in args]) == 0
        assert main(["classify", "--store", str(store)]) == 0
        yield {"root": root, "store": store, "good": good, "bad": bad}


@pytest.mark.slow
def test_store_info_as_text_and_json(ingested, capsys):
    code, out, err = cli(capsys, "store", "info", "--store", ingested["store"])
    assert code == 0 and not err
    lines = dict(line.split(None, 1) if " " in line else (line, "") for line in out.replace("first ingest", "first_ingest")
                 .replace("last ingest", "last_ingest").splitlines())  # fmt: skip
    assert lines["sources"] == "9" and lines["errors"] == str(len(ingested["bad"])) and lines["labels"] == "fr: 9"
    assert lines["model"] == "tiny" and lines["adapter"] == "none" and lines["recipe"] == "mirabest-v2"
    assert lines["index"] == "exact (up to date)" and "MiB" in lines["size"]

    code, out, _ = cli(capsys, "store", "info", "--store", ingested["store"], "--format", "json")
    info = json.loads(out)
    assert (info["sources"], info["errors"], info["labels"]) == (9, len(ingested["bad"]), {"fr": 9})
    assert info["model"] == "tiny" and info["adapter"] is None and info["dim"] == len(next(iter(store_rows(ingested["store"]).values()))["vector"])
    assert info["index"] == {"kind": "exact", "unindexed_rows": 0, "up_to_date": True, "lancedb_index": None}
    assert info["recipe"] == "mirabest-v2" and info["size_bytes"] > 0 and len(info["fingerprint"]) == 64
    assert info["first_ingest"] <= info["last_ingest"] and info["first_ingest"].startswith("20")


@pytest.mark.slow
def test_store_errors_in_three_formats(ingested, capsys):
    import pandas as pd

    code, out, err = cli(capsys, "store", "errors", "--store", ingested["store"], "--format", "json")
    rows = json.loads(out)
    assert code == 0 and f"{len(ingested['bad'])} failed inputs" in err
    assert {Path(r["path"]).stem for r in rows} == set(ingested["bad"]) and all(set(r) == {"path", "reason", "when"} for r in rows)
    for r in rows:
        assert ingested["bad"][Path(r["path"]).stem].lower() in r["reason"].lower() and r["when"].startswith("20")

    _, out, _ = cli(capsys, "store", "errors", "--store", ingested["store"], "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == ["path", "reason", "when"] and sorted(frame["path"]) == sorted(r["path"] for r in rows)

    _, out, _ = cli(capsys, "store", "errors", "--store", ingested["store"])  # a table by default
    lines = out.splitlines()
    assert lines[0].split() == ["path", "reason", "when"] and len(lines) == len(ingested["bad"]) + 1
    assert all(any(Path(r["path"]).name in line for line in lines[1:]) for r in rows)


@pytest.mark.slow
def test_export_votable_is_strict_and_carries_the_ucds(ingested, capsys, tmp_path):
    out = tmp_path / "store.xml"
    code, stdout, err = cli(capsys, "store", "export", "--store", ingested["store"], "--format", "votable", "--out", out)
    assert code == 0 and not stdout and "9 sources written" in err
    table = parse(str(out), verify="exception").get_first_table()
    fields = {f.name: f for f in table.fields}
    for name, ucd in UCDS.items():
        assert fields[name].ucd == ucd, name
    assert str(fields["ra"].unit) == str(fields["dec"].unit) == "deg"
    data = table.to_table()
    assert sorted(data["id"]) == sorted(store_rows(ingested["store"])) and set(data["name"]) == set(ingested["good"])
    for row in data:
        assert row["label"] in CLASSES and row["probability"] == pytest.approx(row["p_" + row["label"].replace("-", "_")], abs=1e-5)
        assert Path(row["source"]).is_file() and row["created_at"].endswith("Z")


@pytest.mark.slow
def test_export_csv_and_parquet_hold_the_store_ids(ingested, capsys, tmp_path):
    import pandas as pd

    ids = sorted(store_rows(ingested["store"]))
    assert cli(capsys, "store", "export", "--store", ingested["store"], "--out", tmp_path / "s.csv")[0] == 0  # format from the suffix
    assert cli(capsys, "store", "export", "--store", ingested["store"], "--format", "parquet", "--out", tmp_path / "s.pq")[0] == 0
    for frame in (pd.read_csv(tmp_path / "s.csv"), pd.read_parquet(tmp_path / "s.pq")):
        assert sorted(frame["id"]) == ids and frame["id"].is_unique
        assert list(frame.columns[:8]) == ["id", "name", "ra", "dec", "source", "created_at", "flags", "preprocessing"]
        assert set(frame["label"]) <= set(CLASSES) and frame["p_FR_I"].between(0, 1).all() and frame["ra"].notna().all()
        assert "vector" not in frame.columns
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "s.pq")
    assert schema.field("ra").metadata[b"ucd"] == b"pos.eq.ra;meta.main" and schema.field("ra").metadata[b"unit"] == b"deg"


@pytest.mark.slow
def test_export_fits_and_the_vectors(ingested, capsys, tmp_path):
    import pandas as pd
    from astropy.table import Table

    stored = store_rows(ingested["store"])
    assert cli(capsys, "store", "export", "--store", ingested["store"], "--format", "fits", "--out", tmp_path / "s.fits")[0] == 0
    with fits.open(tmp_path / "s.fits") as hdul:
        assert hdul[1].name == "SOURCES" and hdul[1].header["NAXIS2"] == 9
    table = Table.read(tmp_path / "s.fits", hdu="SOURCES")
    assert sorted(table["id"]) == sorted(stored) and str(table["ra"].unit) == "deg" and "vector" not in table.colnames

    for fmt, name in (("fits", "v.fits"), ("parquet", "v.parquet")):
        code, _, _ = cli(capsys, "store", "export", "--store", ingested["store"], "--format", fmt, "--out", tmp_path / name, "--vectors")
        assert code == 0
    by_format = {"fits": Table.read(tmp_path / "v.fits"), "parquet": pd.read_parquet(tmp_path / "v.parquet")}
    for fmt, frame in by_format.items():
        for i, vector in zip(frame["id"], frame["vector"]):
            assert np.allclose(np.asarray(vector, np.float32), stored[i]["vector"], atol=1e-7), fmt


@pytest.mark.slow
def test_vectors_in_csv_or_votable_are_refused_in_one_line(ingested, tmp_path):
    for fmt in ("csv", "votable"):
        proc = run("store", "export", "--store", ingested["store"], "--format", fmt, "--out", tmp_path / f"x.{fmt}", "--vectors")
        assert proc.returncode == 2 and not proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1 and "parquet or fits" in proc.stderr and "Traceback" not in proc.stderr
        assert not list(tmp_path.iterdir()), "nothing is written"


@pytest.mark.slow
def test_store_delete_by_id_by_name_and_the_errors(ingested, capsys, tmp_path, tiny_siglip_dir, monkeypatch):
    import pandas as pd

    store = tmp_path / "store"
    shutil.copytree(ingested["store"], store)
    by_name = {r["name"]: i for i, r in store_rows(store).items()}
    gone = [by_name["J0003"], by_name["J0004"]]
    code, out, err = cli(capsys, "store", "delete", "--store", store, *gone, "nosuchid")
    assert code == 0 and not out and "2 sources deleted" in err and "1 of the ids given are not in the store" in err
    assert not set(gone) & set(store_rows(store)) and Store(store).count(LABELS) == 7
    assert not Store(store).rows_where(f"id IN ('{gone[0]}', '{gone[1]}')", ["key"], table=FILES)

    # their file records went too: ingesting the folder again adds them back (unlabelled)
    monkeypatch.setenv("RADIOALIGN_MODELS_DIR", str(tiny_siglip_dir.parent))
    assert main(["ingest", str(ingested["root"] / "cutouts"), "--store", str(store), "--workers", "0", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["embedded"] == 2 and set(gone) <= set(store_rows(store))

    code, _, err = cli(capsys, "store", "delete", "--store", store, "--where-name", "J000[0-2]")
    assert code == 0 and "3 sources deleted" in err
    assert sorted(r["name"] for r in store_rows(store).values()) == ["J0003", "J0004", "J0005", "J0006", "J0007", "J0008"]
    code, _, err = cli(capsys, "store", "delete", "--store", store, "--errors")
    assert code == 0 and f"{len(ingested['bad'])} errors cleared" in err and Store(store).count(ERRORS) == 0
    info = json.loads(cli(capsys, "store", "info", "--store", store, "--format", "json")[1])
    assert (info["sources"], info["errors"], info["labels"]) == (6, 0, {"fr": 4})

    assert cli(capsys, "store", "export", "--store", store, "--out", tmp_path / "left.csv")[0] == 0
    frame = pd.read_csv(tmp_path / "left.csv").set_index("name")
    assert frame.loc[["J0003", "J0004"], "label"].isna().all() and frame.loc[["J0005", "J0008"], "label"].notna().all()


# ---------------------------------------------------------------------------
# The Python API


@pytest.fixture(scope="module")
def survey(ingested):
    return Survey.open(ingested["store"])  # the model loads at the first text or image query


@pytest.fixture(scope="module")
def target(survey) -> dict:
    return next(r for r in survey.sources() if r["name"] == "J0003")


@pytest.mark.slow
def test_api_search_by_text_id_name_file_and_array(survey, ingested, target):
    hits = survey.search("a radio galaxy with two lobes", k=4)
    assert isinstance(hits, list) and len(hits) == 4 and {h["name"] for h in hits} <= set(ingested["good"])
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for key in (target["id"], "J0003"):
        first = survey.search(like=key, k=3)[0]
        assert first["id"] == target["id"] and first["score"] == pytest.approx(1.0, abs=1e-5)
    path = ingested["root"] / "cutouts" / "J0003.fits"
    for hits in (survey.search(image=path, k=3), survey.search(like=str(path), k=3)):
        assert hits[0]["id"] == target["id"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    # J0000 is a FIRST-like 150 px cut-out with a standard WCS: its rows flipped are north up
    data = fits.getdata(ingested["root"] / "cutouts" / "J0000.fits")
    hits = survey.search(image=data[::-1], k=3)
    assert hits[0]["name"] == "J0000" and hits[0]["score"] > 0.99
    with pytest.raises(ValueError, match="2-D"):
        survey.search(image=np.zeros((2, 3, 4)))


@pytest.mark.slow
def test_api_search_within_a_cone(survey, target):
    from astropy import units as u
    from astropy.coordinates import Angle

    ra, dec = target["ra"], target["dec"]
    ra_text = Angle(ra, u.deg).to_string(unit=u.hour, sep=":", precision=3)
    dec_text = Angle(dec, u.deg).to_string(unit=u.deg, sep=":", precision=2, alwayssign=True)
    for cone in ((ra, dec, 60), Cone(ra, dec, 60.0), (ra_text, dec_text, "1arcmin")):
        for hits in (survey.search("a double radio source", k=5, cone=cone), survey.search(like="J0000", k=5, cone=cone)):
            assert [h["id"] for h in hits] == [target["id"]], cone


@pytest.mark.slow
def test_api_results_as_table_skycoord_and_pandas(survey, ingested):
    from astropy.coordinates import SkyCoord

    hits = survey.search("an edge-brightened radio galaxy", k=5)
    assert hits.columns == ["id", "name", "ra", "dec", "score", "source", "label", "probability", "p_FR_I", "p_FR_II"]
    for h in hits:
        assert h["label"] in CLASSES and h["probability"] == pytest.approx(h["p_" + h["label"].replace("-", "_")], abs=1e-5)
    table = hits.to_table()
    coords = SkyCoord(table["ra"], table["dec"])
    assert np.allclose(coords.ra.deg, [h["ra"] for h in hits]) and table["label"].meta["ucd"] == "src.class"
    frame = hits.to_pandas()
    assert list(frame["id"]) == [h["id"] for h in hits] and frame["ra"].dtype == float
    document = parse(io.BytesIO(hits.to_votable()), verify="exception").get_first_table()
    assert {f.name: f.ucd for f in document.fields}["p_FR_II"] == "stat.probability"
    info, errors = survey.info(), survey.errors()
    assert info["sources"] == 9 and len(errors) == len(ingested["bad"]) and errors.columns == ["path", "reason", "when"]


@pytest.mark.slow
def test_cli_search_output_carries_the_labels(ingested, capsys):
    import pandas as pd

    base = ["search", "--store", ingested["store"], "--text", "a radio galaxy", "-k", "3"]
    code, out, _ = cli(capsys, *base)
    results = json.loads(out)
    assert code == 0 and all(r["label"] in CLASSES and 0 <= r["probability"] <= 1 and "p_FR_I" in r for r in results)
    _, out, _ = cli(capsys, *base, "--format", "csv")
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == ["id", "name", "ra", "dec", "score", "source", "label", "probability", "p_FR_I", "p_FR_II"]
    _, out, _ = cli(capsys, *base, "--format", "votable")
    table = parse(io.BytesIO(out.encode()), verify="exception").get_first_table()
    assert {f.name: f.ucd for f in table.fields} == {**{k: v for k, v in UCDS.items() if k in frame.columns}, "score": "stat.correlation"}
    assert list(table.to_table()["label"]) == list(frame["label"])


# ---------------------------------------------------------------------------
# Memory: an export streams


MEASURE = textwrap.dedent(
    """
    import re, sys
    from radioalign.survey import Survey
    import astropy.io.fits, pyarrow.parquet  # imported before the baseline

    def peak():  # this process's peak RSS in bytes (ru_maxrss would count the parent's, kept across exec)
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)) * 1024

    survey = Survey.open(sys.argv[1])
    survey.info()
    base = peak()
    for fmt in ("parquet", "fits"):
        n = survey.export(sys.argv[2] + "." + fmt, fmt, vectors=True)
    print(n, peak() - base)
    """
)


def add_synthetic(store: Store, start: int, n: int, dim: int, rng) -> None:
    """``n`` sources with random vectors and zero-shot labels, written as Arrow tables
    (the first row through ``add_sources``/``replace_labels``, which create the tables)."""
    import pyarrow as pa

    from radioalign.survey.store import labels_schema, now, sources_schema

    ids = [f"{i:016x}" for i in rng.integers(0, 2**63, n)]
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    created = pa.array([now()] * n, pa.timestamp("us", tz="UTC"))
    sources = pa.table({
        "id": ids, "name": [f"J{start + i:07d}" for i in range(n)], "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-90, 90, n),
        "source": [f"/data/J{start + i:07d}.fits" for i in range(n)], "thumbnail": pa.nulls(n, pa.binary()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim), "model": ["f" * 64] * n,
        "adapter": [""] * n, "preprocessing": ["mirabest-v2"] * n, "flags": [""] * n, "created_at": created,
    }, schema=sources_schema(dim))  # fmt: skip
    p = rng.uniform(size=n)
    labels = pa.table({
        "id": ids, "prompts": ["fr"] * n, "label": np.where(p > 0.5, "FR-II", "FR-I").tolist(), "score": np.maximum(p, 1 - p),
        "probabilities": [f'{{"FR-I": {1 - x:.6f}, "FR-II": {x:.6f}}}' for x in p], "created_at": created,
    }, schema=labels_schema())  # fmt: skip
    if not store.has(SOURCES):
        store.add_sources(sources.slice(0, 1).to_pylist(), dim)
        store.replace_labels("fr", [labels.slice(0, 1).to_pylist()])
        sources, labels = sources.slice(1), labels.slice(1)
    store.table(SOURCES).add(sources)
    store.table(LABELS).add(labels)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak RSS is read from Linux's /proc/self/status")
def test_export_memory_stays_bounded_as_the_store_grows(tmp_path):
    """Exporting a store twice as large (with vectors, to Parquet and FITS) takes no more
    memory, and much less than the vectors themselves: the rows stream."""
    n, dim = 100_000, 512
    rng = np.random.default_rng(0)
    store = Store(tmp_path / "big")
    store.init_meta({"fingerprint": "f" * 64, "model": "fake", "adapter": "", "dim": str(dim)})
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    growth = []
    for rows in (n, 2 * n):
        add_synthetic(store, rows - n, n, dim, rng)
        proc = subprocess.run([sys.executable, str(script), str(tmp_path / "big"), str(tmp_path / "out")], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        written, grew = map(int, proc.stdout.split())
        assert written == rows
        growth.append(grew)
    vector_bytes = 2 * n * dim * 4  # 410 MB
    assert growth[1] < vector_bytes / 2, f"peak RSS grew by {growth[1] / 2**20:.0f} MiB for {vector_bytes / 2**20:.0f} MiB of vectors"
    assert growth[1] - growth[0] < vector_bytes / 8, f"memory followed the data: {[g / 2**20 for g in growth]} MiB"


# ---------------------------------------------------------------------------
# Fast: synthetic stores, no model


def missing(value) -> bool:
    """A null as astropy reads it back: masked, or NaN."""
    return value is np.ma.masked or bool(np.isnan(value))


def labelled_store(path, n=12, labelled=8):
    rng = np.random.default_rng(4)
    ra = [None, *rng.uniform(0, 360, n - 1)]
    dec = [None, *rng.uniform(-90, 90, n - 1)]
    store, vectors, ids = fake_store(path, ra, dec)
    store.replace_labels("fr", [label_rows(ids[:labelled], rng.uniform(size=(labelled, 2)), CLASSES, "fr")])
    return store, vectors, ids


def test_export_of_awkward_names_and_missing_values(tmp_path):
    import pandas as pd
    from astropy.table import Table

    store, _, ids = labelled_store(tmp_path / "s")
    store.set_source_paths({ids[0]: "/data/<a & b>/caf\u00e9 \"1\".fits", ids[1]: "cat.csv#J1\x01"})
    survey = Survey(store)
    for fmt in ("votable", "csv", "parquet", "fits"):
        assert survey.export(tmp_path / f"out.{fmt}", fmt) == 12
    path = '/data/<a & b>/caf\u00e9 "1".fits'
    votable = parse(str(tmp_path / "out.votable"), verify="exception").get_first_table().to_table()
    assert sorted(votable["id"]) == sorted(ids)
    rows = {r["id"]: r for r in votable}
    assert rows[ids[0]]["source"] == path and rows[ids[1]]["source"] == "cat.csv#J1"  # a control character XML cannot hold: dropped
    assert votable["ra"].mask[list(votable["id"]).index(ids[0])]
    assert all(rows[i]["label"] in CLASSES for i in ids[:8]) and not any(rows[i]["label"] for i in ids[8:])
    frame = pd.read_csv(tmp_path / "out.csv").set_index("id")
    assert sorted(frame.index) == sorted(ids) and frame.loc[ids[0], "source"] == path and np.isnan(frame.loc[ids[0], "ra"])
    assert frame.loc[ids[8:], "label"].isna().all() and frame.loc[ids[:8], "p_FR_II"].notna().all()
    table = Table.read(tmp_path / "out.fits")
    fits_rows = {r["id"]: r for r in table}
    assert fits_rows[ids[0]]["source"] == '/data/<a & b>/caf\\xe9 "1".fits'  # FITS text is ASCII: escaped, not lost
    assert all(missing(v) for v in (fits_rows[ids[0]]["ra"], fits_rows[ids[10]]["p_FR_I"], fits_rows[ids[10]]["probability"]))
    assert sorted(pd.read_parquet(tmp_path / "out.parquet")["id"]) == sorted(ids)


def test_export_of_an_unclassified_store_has_no_label_columns(tmp_path):
    store, _, ids = fake_store(tmp_path / "s", [1.0, 2.0], [3.0, 4.0])
    survey = Survey(store)
    assert survey.export(tmp_path / "out.csv") == 2
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "id,name,ra,dec,source,created_at,flags,preprocessing"
    assert survey.search(like=ids[0], k=2).columns == ["id", "name", "ra", "dec", "score", "source"]
    with pytest.raises(ValueError, match="parquet or fits"):
        survey.export(tmp_path / "out.xml", vectors=True)
    with pytest.raises(ValueError, match="export format"):
        survey.export(tmp_path / "out.txt")
    assert not (tmp_path / "out.xml").exists() and not list(tmp_path.glob(".*.part"))


def test_search_by_a_stored_source_carries_labels_without_a_model(tmp_path):
    store, vectors, ids = labelled_store(tmp_path / "s")
    survey = Survey.open(tmp_path / "s")
    hits = survey.search(like=ids[2], k=12)
    assert hits[0]["id"] == ids[2] and len(hits) == 12 and survey._encoder is None  # no model loaded
    for h in hits:
        labelled = ids.index(h["id"]) < 8
        assert (h["label"] in CLASSES) == labelled and (h["p_FR_I"] is not None) == labelled
    table = hits.to_table()
    assert table["ra"].unit == "deg" and table["p_FR_I"].meta["ucd"] == "stat.probability"
    rows = {r["id"]: r for r in survey.sources()}
    assert list(rows) == ids and rows[ids[0]]["ra"] is None and rows[ids[9]]["label"] is None


def test_api_refusals(tmp_path):
    with pytest.raises(StoreError, match="no survey store"):
        Survey.open(tmp_path / "nowhere")
    store, _, ids = labelled_store(tmp_path / "s")
    survey = Survey(store)
    with pytest.raises(ValueError, match="exactly one"):
        survey.search("a jet", like=ids[0])
    with pytest.raises(ValueError, match="exactly one"):
        survey.search()
    with pytest.raises(StoreError, match="neither a source"):
        survey.search(like="nosuchsource")
    with pytest.raises(ValueError, match="cone"):
        survey.search(like=ids[0], cone=(1.0, 2.0))
    assert survey.delete(["nosuchid"]) == 0 and survey.delete(where_name="nomatch*") == 0


def test_cones_as_typed():
    assert as_cone((10, -5, 30)) == Cone(10.0, -5.0, 30.0)
    cone = as_cone(("00:40:00", "-05:00:00", "0.5arcmin"))
    assert cone.ra == pytest.approx(10.0) and cone.dec == pytest.approx(-5.0) and cone.radius_arcsec == pytest.approx(30.0)
    assert as_cone(None) is None
    with pytest.raises(ValueError):
        as_cone((10, 95, 30))


def test_results_from_plain_rows():
    rows = [{"id": "a", "name": "J1", "ra": 1.5, "dec": None, "score": 0.5, "source": "x"}]
    results = Results(rows)
    assert results.columns == ["id", "name", "ra", "dec", "score", "source"] and results == rows
    table = Results([]).to_table()
    assert table.colnames == ["id", "name", "ra", "dec", "score", "source"] and len(table) == 0
    parse(io.BytesIO(Results([]).to_votable()), verify="exception")


def test_store_commands_have_help_with_examples_and_refuse_in_one_line(capsys, tmp_path):
    for action in ("info", "errors", "export", "delete"):
        with pytest.raises(SystemExit) as info:
            main(["store", action, "--help"])
        out = capsys.readouterr().out
        assert info.value.code == 0 and "examples:" in out and f"radioalign store {action} --store" in out
    fake_store(tmp_path / "s", [1.0], [2.0])
    code, out, err = cli(capsys, "store", "delete", "--store", tmp_path / "s")
    assert code == 2 and not out and err.count("\n") == 1 and "--where-name" in err
    code, out, err = cli(capsys, "store", "info", "--store", tmp_path / "nowhere")
    assert code == 2 and err.startswith("radioalign store info: error: no survey store") and err.count("\n") == 1


def test_sources_within_a_cone_by_position_alone(tmp_path):
    from astropy.coordinates import SkyCoord

    store, _, ids = labelled_store(tmp_path / "s", n=40)
    survey = Survey(store)
    placed = {r["id"]: r for r in survey.sources() if r["ra"] is not None}
    centre = next(iter(placed.values()))
    cone = (centre["ra"], centre["dec"], 60 * 3600.0)  # 60 deg
    found = survey.within(cone)
    sky = SkyCoord([r["ra"] for r in placed.values()], [r["dec"] for r in placed.values()], unit="deg")
    distance = SkyCoord(centre["ra"], centre["dec"], unit="deg").separation(sky).deg
    inside = sorted((d, i) for d, i in zip(distance, placed) if d <= 60.0)
    assert [r["id"] for r in found] == [i for _, i in inside] and len(found) > 1
    assert [r["distance"] for r in found] == pytest.approx([d for d, _ in inside], abs=1e-9)
    assert found.infos["QUERY_STATUS"] == "OK" and found.columns[:5] == ["id", "ra", "dec", "name", "distance"]
    assert "label" in found.columns and all((r["label"] is not None) == (ids.index(r["id"]) < 8) for r in found)
    table = found.to_table()
    assert table["distance"].unit == "deg" and table["distance"].meta["ucd"] == "pos.angDistance"
    capped = survey.within(cone, limit=1, labels=False)
    assert [r["id"] for r in capped] == [inside[0][1]] and capped.infos["QUERY_STATUS"] == "OVERFLOW" and "label" not in capped.columns


@pytest.mark.slow
def test_the_readme_python_example_runs(ingested, tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in readme.split("```python\n")[1:] if "Survey.open" in b).split("```")[0]
    shutil.copytree(ingested["store"], tmp_path / "survey.lance")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert len(scope["table"]) == len(scope["hits"]) and {"ra", "dec", "score"} <= set(scope["table"].colnames)
    assert (tmp_path / "survey.parquet").exists() and scope["survey"].info()["sources"] == 9
