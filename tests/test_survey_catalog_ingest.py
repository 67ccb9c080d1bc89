"""A catalogue as VizieR exports it (its column names, sexagesimal and degree forms, TSV
and VOTable) is ingested unchanged from a mosaic, by the `radioalign` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")
pytest.importorskip("reproject")

from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.io.votable.tree import Field, Resource, TableElement, VOTableFile  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from radioalign.survey.store import SOURCES, Store  # noqa: E402

pytestmark = pytest.mark.slow

RA0, DEC0, N, SCALE = 194.05, 12.6, 500, 1.8


def write_mosaic(path: Path) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [(N + 1) / 2.0, (N + 1) / 2.0]
    w.wcs.cdelt = [-SCALE / 3600.0, SCALE / 3600.0]
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (N, N))
    yy, xx = np.mgrid[:N, :N]
    for x0, y0 in [(120, 130), (250, 260), (380, 140), (150, 390)]:
        data += 30 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 18.0)
        data += 20 * np.exp(-((xx - x0 - 12) ** 2 + (yy - y0 - 5) ** 2) / 18.0)
    fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(path)
    return w


def catalogue(w: WCS) -> tuple[list[str], SkyCoord]:
    pixels = np.array([(120, 130), (250, 260), (380, 140), (150, 390)], float)
    sky = w.pixel_to_world(pixels[:, 0], pixels[:, 1])
    names = [f"J{c.ra.to_string('h', sep='', precision=1, pad=True)}{c.dec.to_string(sep='', precision=0, alwayssign=True, pad=True)}"
             for c in sky]  # fmt: skip
    return names, sky


def write_vizier_tsv(path: Path, names, sky: SkyCoord) -> None:
    """VizieR's ASCII (tab-separated) output: comments, header, units, dashes, then rows;
    the computed _RAJ2000/_DEJ2000 in degrees first, then the catalogue's own sexagesimal."""
    lines = ["#", "#   VizieR Astronomical Server vizier.cds.unistra.fr", "#RESOURCE=yCat_8092", "#Name: VIII/92/first14",
             "_RAJ2000\t_DEJ2000\tFIRST\tRAJ2000\tDEJ2000\tFpeak",
             "deg\tdeg\t\t\"h:m:s\"\t\"d:m:s\"\tmJy/beam",
             "------------\t------------\t----------------\t------------\t-----------\t------"]  # fmt: skip
    for name, c in zip(names, sky):
        ra_hms = c.ra.to_string("h", sep=" ", precision=3, pad=True)
        dec_dms = c.dec.to_string(sep=" ", precision=2, alwayssign=True, pad=True)
        lines.append(f"{c.ra.deg:.6f}\t{c.dec.deg:+.6f}\t{name}\t{ra_hms}\t{dec_dms}\t12.5")
    path.write_text("\n".join(lines) + "\n")


def write_vizier_votable(path: Path, names, sky: SkyCoord) -> None:
    """A VOTable as VizieR writes it: sexagesimal RAJ2000/DEJ2000 with the main-position UCDs,
    the name with meta.id;meta.main, and no column called ra/dec."""
    votable = VOTableFile()
    resource = Resource()
    votable.resources.append(resource)
    table = TableElement(votable)
    resource.tables.append(table)
    table.fields.extend([
        Field(votable, name="FIRST", datatype="char", arraysize="*", ucd="meta.id;meta.main"),
        Field(votable, name="RAJ2000", datatype="char", arraysize="*", ucd="pos.eq.ra;meta.main", unit="h:m:s"),
        Field(votable, name="DEJ2000", datatype="char", arraysize="*", ucd="pos.eq.dec;meta.main", unit="d:m:s"),
    ])  # fmt: skip
    table.create_arrays(len(names))
    for i, (name, c) in enumerate(zip(names, sky)):
        table.array[i] = (name, c.ra.to_string("h", sep=" ", precision=3, pad=True),
                          c.dec.to_string(sep=" ", precision=2, alwayssign=True, pad=True))  # fmt: skip
    votable.to_xml(str(path))


def radioalign(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radioalign", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.mark.parametrize("kind", ["tsv", "votable"])
def test_a_vizier_catalogue_is_ingested_unchanged(tmp_path, env, kind):
    w = write_mosaic(tmp_path / "mosaic.fits")
    names, sky = catalogue(w)
    path = tmp_path / ("first.tsv" if kind == "tsv" else "first.vot")
    (write_vizier_tsv if kind == "tsv" else write_vizier_votable)(path, names, sky)
    store = tmp_path / "store"
    args = ("ingest", "--catalog", path, "--mosaic", tmp_path / "mosaic.fits", "--store", store, "--model", "tiny",
            "--workers", "0", "--no-progress", "--json")  # fmt: skip
    proc = radioalign(env, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["ok"] == len(names)
    rows = {r["name"]: r for r in Store(store).table(SOURCES).to_arrow().to_pylist()}
    assert sorted(rows) == sorted(names)
    for name, c in zip(names, sky):
        got = SkyCoord(rows[name]["ra"], rows[name]["dec"], unit="deg")
        assert got.separation(c).arcsec < 0.01, name  # the catalogue's 3-decimal seconds of time

    again = radioalign(env, *args)  # unchanged rows and mosaic: nothing read or embedded again
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == len(names)

    centre = sky[1].to_string("hmsdms", sep=":", precision=1).split()
    hits = radioalign(env, "search", "--store", store, "--text", "a double radio source", "--cone", *centre, "1arcmin")
    assert hits.returncode == 0, hits.stderr[-2000:]
    assert [h["name"] for h in json.loads(hits.stdout)] == [names[1]]  # the others lie arcminutes away


def test_a_catalogue_without_coordinates_is_refused_before_a_store_exists(tmp_path, env):
    write_mosaic(tmp_path / "mosaic.fits")
    (tmp_path / "cat.csv").write_text("name,flux\nA,1\nB,2\n")
    proc = radioalign(env, "ingest", "--catalog", tmp_path / "cat.csv", "--mosaic", tmp_path / "mosaic.fits",
                      "--store", tmp_path / "store", "--model", "tiny", "--no-progress")  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--ra-col" in proc.stderr
    assert not (tmp_path / "store").exists()
