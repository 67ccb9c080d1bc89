"""What people type and bring to the survey tool: sky positions and radii
(`radioalign.survey.sky`), catalogues in every format astronomers exchange
(`radioalign.survey.catalogs`), and the command's answer to bad input: exit 2, one line
on stderr, no traceback and no SQL."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("astropy")

import astropy.units as u  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.table import Table  # noqa: E402

from radioalign.survey.catalogs import CatalogError, open_catalog, read_catalog  # noqa: E402
from radioalign.survey.sky import columns_to_degrees, parse_position, parse_radius  # noqa: E402

# 12h56m47.3s +12d36m00s, and a southern position with a negative zero degree of Dec.
RA0, DEC0 = (12 + 56 / 60 + 47.3 / 3600) * 15, 12 + 36 / 60
RA1, DEC1 = (3 + 4 / 60 + 5.25 / 3600) * 15, -(0 + 30 / 60 + 15.5 / 3600)


# ---------------------------------------------------------------------------
# Positions


@pytest.mark.parametrize(
    "ra, dec, expected",
    [
        ("194.2", "-12.5", (194.2, -12.5)),
        (194.2, -12.5, (194.2, -12.5)),
        ("12:56:47.3", "+12:36:00", (RA0, DEC0)),
        ("12h56m47.3s", "+12d36m00s", (RA0, DEC0)),
        ("12 56 47.3", "+12 36 00", (RA0, DEC0)),  # VizieR
        ("194d11m49.5s", "12d36m", (RA0, DEC0)),  # a degree mark: RA in degrees
        ("194°11′49.5″", "12°36′", (RA0, DEC0)),
        ("03:04:05.25", "-00:30:15.5", (RA1, DEC1)),
        ("03 04 05.25", "-00 30 15.5", (RA1, DEC1)),
        ("0", "90", (0.0, 90.0)),
        ("360", "-90", (360.0, -90.0)),
    ],
)
def test_positions_in_every_form(ra, dec, expected):
    got = parse_position(ra, dec)
    assert got == pytest.approx(expected, abs=1e-6)


def test_galactic_positions_are_converted_to_icrs():
    for l, b in [(0.0, 0.0), (280.5, -32.9), (121.17, -21.57)]:
        sky = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
        assert parse_position(str(l), str(b), frame="galactic") == pytest.approx((sky.ra.deg, sky.dec.deg), abs=1e-9)
    with pytest.raises(ValueError, match="frame"):
        parse_position(0, 0, frame="fk4")


@pytest.mark.parametrize(
    "ra, dec, word",
    [
        ("nan", "0", "nan"), ("0", "nan", "nan"), ("inf", "0", "inf"), ("0", "-inf", "inf"),
        ("0", "95", "95"), ("0", "-90.5", "-90.5"), ("400", "0", "400"), ("-10", "0", "-10"),
        ("abc", "0", "abc"), ("25:00:00", "0", "25:00:00"), ("12:61:00", "0", "12:61:00"), ("0", "12h", "12h"),
    ],
)  # fmt: skip
def test_bad_positions_are_refused_in_one_line(ra, dec, word):
    with pytest.raises(ValueError) as info:
        parse_position(ra, dec)
    message = str(info.value)
    assert word in message and "\n" not in message and "dec >=" not in message.lower()


def test_bad_galactic_latitude_is_refused():
    with pytest.raises(ValueError, match="b 91"):
        parse_position(10, 91, frame="galactic")


@pytest.mark.parametrize(
    "text, arcsec",
    [("30", 30.0), (30, 30.0), ("2.5", 2.5), ("30arcsec", 30.0), ("10arcmin", 600.0), ("10 arcmin", 600.0),
     ("0.5deg", 1800.0), ('30"', 30.0), ("2'", 120.0), ("1d", 3600.0)],
)  # fmt: skip
def test_radii(text, arcsec):
    assert parse_radius(text) == pytest.approx(arcsec)


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "-1arcmin", "10 m", "ten", ""])
def test_bad_radii_are_refused(text):
    with pytest.raises(ValueError) as info:
        parse_radius(text)
    assert "radius" in str(info.value) and "\n" not in str(info.value)


def test_columns_to_degrees_numbers_units_strings_and_bad_rows():
    ra, dec = columns_to_degrees(np.array([194.2, 10.0]), np.array([12.6, -45.0]))
    assert ra.tolist() == [194.2, 10.0] and dec.tolist() == [12.6, -45.0]
    ra, dec = columns_to_degrees([12.0, 1.5], [0.1, 0.0], ra_unit="hourangle", dec_unit="rad")
    assert ra == pytest.approx([180.0, 22.5]) and dec == pytest.approx([math.degrees(0.1), 0.0])
    ra, dec = columns_to_degrees(
        ["12 56 47.3", "12:56:47.3", "194.197083", "194d11m49.5s", "", "abc", "25 00 00", "12 56 47.3", None],
        ["+12 36 00", "+12:36:00", "12.6", "12d36m", "1", "1", "1", "+95 00 00", "1"],
    )
    assert ra[:4] == pytest.approx([RA0] * 4, abs=1e-6) and dec[:4] == pytest.approx([DEC0] * 4, abs=1e-6)
    assert np.isnan(ra[4:]).all() and np.isnan(dec[4:]).all(), "unparsable rows are NaN, not an exception"
    masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    ra, dec = columns_to_degrees(masked, [3.0, 4.0])
    assert ra[0] == 1.0 and np.isnan(ra[1]) and np.isnan(dec[1])


def test_cone_checks_its_values_before_any_sql():
    from radioalign.survey.search import Cone

    Cone(0.0, -90.0, 1.0), Cone(360.0, 90.0, 0.1)
    for bad in [(math.nan, 0, 10), (0, math.nan, 10), (0, 0, math.nan), (0, 0, math.inf), (math.inf, 0, 10),
                (-1, 0, 10), (361, 0, 10), (0, 95, 10), (0, 0, 0), (0, 0, -5), ("1", 0, 10)]:  # fmt: skip
        with pytest.raises(ValueError) as info:
            Cone(*bad)
        assert "\n" not in str(info.value) and ">=" not in str(info.value)


# ---------------------------------------------------------------------------
# Catalogues

POSITIONS = SkyCoord([194.197083, 10.5, 359.99, 0.004], [12.6, -45.25, 0.01, -0.5], unit="deg")
NAMES = ["J125647+123600", "J004200-451500", "J235957+000036", "J000001-003000"]


def vizier_table() -> Table:
    """A VizieR-like FIRST extract: sexagesimal RAJ2000/DEJ2000 (with spaces), computed
    _RAJ2000/_DEJ2000 in degrees, the name in a column called FIRST."""
    ra = POSITIONS.ra.to_string(u.hourangle, sep=" ", precision=4, pad=True)
    dec = POSITIONS.dec.to_string(u.deg, sep=" ", precision=3, alwayssign=True, pad=True)
    table = Table({"_RAJ2000": POSITIONS.ra.deg, "_DEJ2000": POSITIONS.dec.deg, "FIRST": NAMES, "RAJ2000": ra,
                   "DEJ2000": dec, "Fpeak": [10.0, 2.0, 3.5, 1.25]})  # fmt: skip
    table["_RAJ2000"].unit = table["_DEJ2000"].unit = "deg"
    return table


def assert_positions(rows, names=NAMES):
    rows = list(rows)
    assert [r[0] for r in rows] == names
    got = SkyCoord([r[1] for r in rows], [r[2] for r in rows], unit="deg")
    assert (got.separation(POSITIONS).arcsec < 0.01).all()


@pytest.mark.parametrize("suffix, fmt", [(".csv", "ascii.csv"), (".ecsv", "ascii.ecsv"), (".xml", "votable"),
                                         (".vot", "votable"), (".fits", "fits")])  # fmt: skip
def test_vizier_style_catalogue_in_every_format(tmp_path, suffix, fmt):
    path = tmp_path / f"first{suffix}"
    vizier_table().write(path, format=fmt)
    rows = open_catalog(path)
    assert rows.columns == {"ra": "RAJ2000", "dec": "DEJ2000", "name": "FIRST"} and len(rows) == 4
    assert_positions(rows)
    assert_positions(read_catalog(path, ra_col="_raj2000", dec_col="_DEJ2000"))  # overrides, case-insensitive


def test_simple_csv_with_name_ra_dec_and_a_bad_row(tmp_path):
    lines = ["Name,RA,Dec"] + [f"{n},{c.ra.deg:.9f},{c.dec.deg:.9f}" for n, c in zip(NAMES, POSITIONS)] + ["broken,abc,1.0", ",1.0,95"]
    (tmp_path / "cat.csv").write_text("\n".join(lines) + "\n")
    rows = list(read_catalog(tmp_path / "cat.csv"))
    assert_positions(rows[:4])
    assert rows[4:] == [("broken", None, None), ("row6", None, None)]


def test_votable_found_by_ucd_only(tmp_path):
    table = Table({"c1": POSITIONS.ra.deg, "c2": POSITIONS.dec.deg, "label": NAMES, "b1": [1.0] * 4, "b2": [2.0] * 4})
    for column, ucd in [("c1", "pos.eq.ra;meta.main"), ("c2", "pos.eq.dec;meta.main"), ("label", "meta.id;meta.main"),
                        ("b1", "pos.eq.ra"), ("b2", "pos.eq.dec")]:  # fmt: skip
        table[column].meta["ucd"] = ucd
    table["c1"].unit = table["c2"].unit = "deg"
    table.write(tmp_path / "ucd.xml", format="votable")
    rows = open_catalog(tmp_path / "ucd.xml")
    assert rows.columns == {"ra": "c1", "dec": "c2", "name": "label"}
    assert_positions(rows)


def test_hours_column_and_b1950_columns(tmp_path):
    table = Table({"RAB1950": [1.0] * 4, "DEB1950": [2.0] * 4, "ra": POSITIONS.ra.hourangle, "dec": POSITIONS.dec.deg})
    table["ra"].unit = u.hourangle
    table.write(tmp_path / "hours.ecsv")
    rows = open_catalog(tmp_path / "hours.ecsv")
    assert rows.columns == {"ra": "ra", "dec": "dec", "name": None}
    assert_positions(rows, [f"row{i}" for i in range(1, 5)])
    only_b1950 = Table({"src": ["a"], "RAB1950": [1.0], "DEB1950": [2.0]})
    for column, ucd in [("RAB1950", "pos.eq.ra"), ("DEB1950", "pos.eq.dec")]:
        only_b1950[column].meta["ucd"] = ucd
    only_b1950.write(tmp_path / "b1950.xml", format="votable")
    with pytest.raises(CatalogError, match="no RA/Dec column"):
        open_catalog(tmp_path / "b1950.xml")


def test_vizier_tsv(tmp_path):
    ra = POSITIONS.ra.to_string(u.hourangle, sep=" ", precision=4, pad=True)
    dec = POSITIONS.dec.to_string(u.deg, sep=" ", precision=3, alwayssign=True, pad=True)
    lines = ["#RESOURCE=yCat/8/92", "#Title: The FIRST catalogue", "", "FIRST\tRAJ2000\tDEJ2000", '\t"h:m:s"\t"d:m:s"',
             "--------------\t------------\t-----------"] + [f"{n}\t{r}\t{d}" for n, r, d in zip(NAMES, ra, dec)]  # fmt: skip
    (tmp_path / "asu.tsv").write_text("\n".join(lines) + "\n")
    assert_positions(read_catalog(tmp_path / "asu.tsv"))


def test_missing_columns_are_one_clear_line_before_any_row(tmp_path):
    Table({f"col{i}": [1.0] for i in range(14)}).write(tmp_path / "nopos.csv")
    rows = read_catalog(tmp_path / "nopos.csv")  # a generator: the error comes at the first next()
    with pytest.raises(CatalogError) as info:
        next(rows)
    message = str(info.value)
    assert "\n" not in message and "col0" in message and "--ra-col/--dec-col" in message and "col13" not in message
    vizier_table().write(tmp_path / "first.fits")
    for keyword, option in [("ra_col", "--ra-col"), ("dec_col", "--dec-col"), ("name_col", "--name-col")]:
        with pytest.raises(CatalogError, match=f"no column 'nope' \\({option}\\).*RAJ2000"):
            open_catalog(tmp_path / "first.fits", **{keyword: "nope"})
    assert [r[0] for r in open_catalog(tmp_path / "first.fits", name_col="Fpeak")] == ["10.0", "2.0", "3.5", "1.25"]
    with pytest.raises(FileNotFoundError):
        open_catalog(tmp_path / "absent.csv")
    (tmp_path / "junk.fits").write_text("not a table\n")
    with pytest.raises(CatalogError, match="cannot read junk.fits"):
        open_catalog(tmp_path / "junk.fits")


def test_invalid_prompts_yaml_names_file_and_line(tmp_path):
    from radioalign.survey.zeroshot import load_prompts

    path = tmp_path / "prompts.yaml"
    path.write_text('FR-I: ["a jet"]\nFR-II:\n  bad: mapping: here\n')
    with pytest.raises(ValueError, match=r"prompts.yaml line 3: mapping values are not allowed here$"):
        load_prompts(path)


# ---------------------------------------------------------------------------
# The command on bad input, and a sexagesimal cone on a store


def _write_fits(path: Path, ra: float, dec: float, seed: int, n: int = 150, scale: float = 1.8) -> None:
    from astropy.io import fits
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix = [ra, dec], [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    data = 30 * np.exp(-((xx - 10 * seed) ** 2 + yy**2) / 18.0) + rng.normal(0, 1, (n, n))
    fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(path)


@pytest.fixture(scope="module")
def cone_store(tmp_path_factory, tiny_siglip_dir):
    """A store of three cut-outs: at 12:56:47.3 +12:36:00, 5 arcmin north of it, 20 arcmin north."""
    pytest.importorskip("lancedb")
    from radioalign.survey.ingest import ingest

    root = tmp_path_factory.mktemp("inputs")
    for i, (name, offset) in enumerate([("centre", 0.0), ("near", 5.0), ("far", 20.0)]):
        _write_fits(root / f"{name}.fits", RA0, DEC0 + offset / 60.0, seed=i)
    text_file = root / "notes.fits"
    text_file.write_text("this is not a FITS file\n" * 50)
    raw = (root / "centre.fits").read_bytes()
    (root / "truncated.fits").write_bytes(raw[: len(raw) // 2])
    (root / "prompts.yaml").write_text('FR-I: ["a jet"]\nFR-II:\n  bad: mapping: here\n')
    files = [root / f"{n}.fits" for n in ("centre", "near", "far")]
    summary = ingest(files, root / "store", model=str(tiny_siglip_dir), workers=0, progress=False)
    assert summary.ok == 3
    return root


BAD_COMMANDS = {
    "cone-nan": (["search", "--text", "x", "--cone", "nan", "0", "10"], "nan"),
    "cone-dec": (["search", "--text", "x", "--cone", "0", "95", "10"], "95"),
    "cone-radius": (["search", "--text", "x", "--cone", "0", "0", "-5"], "-5"),
    "cone-inf": (["search", "--text", "x", "--cone", "0", "0", "inf"], "inf"),
    "cone-text": (["search", "--text", "x", "--cone", "12:99:00", "0", "10"], "12:99:00"),
    "like-missing": (["search", "--like", "missing.fits"], "missing.fits"),
    "like-truncated": (["search", "--like", "{root}/truncated.fits"], "cannot be read as an image"),
    "like-text": (["search", "--like", "{root}/notes.fits"], "cannot be read as an image"),
    "prompts": (["classify", "--prompts", "{root}/prompts.yaml"], "line 3"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_COMMANDS))
def test_bad_command_lines_exit_2_with_one_line(cone_store, capsys, case):
    from radioalign.survey.cli import main

    argv, word = BAD_COMMANDS[case]
    argv = [a.format(root=cone_store) for a in argv] + ["--store", str(cone_store / "store")]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"radioalign {argv[0]}: error: "), err
    assert word in lines[0] and "Traceback" not in err and "dec >=" not in err and " AND " not in err


def _environment(tiny_siglip_dir) -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RADIOALIGN_MODELS_DIR": str(tiny_siglip_dir.parent),
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}  # fmt: skip


def _radioalign(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radioalign", *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_no_traceback_in_a_real_process(cone_store, tiny_siglip_dir):
    env, store = _environment(tiny_siglip_dir), cone_store / "store"
    for args in (["--cone", "nan", "0", "10", "--text", "x"], ["--like", cone_store / "truncated.fits"]):
        proc = _radioalign(env, "search", "--store", store, *args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "dec >=" not in proc.stderr
    verbose = _radioalign(env, "search", "--store", store, "--like", cone_store / "truncated.fits", "-vv")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


@pytest.mark.slow
def test_an_unexpected_error_is_one_line_and_exit_1(cone_store, capsys, monkeypatch):
    from radioalign.survey import cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setitem(cli._COMMANDS, "search", broken)
    argv = ["search", "--store", str(cone_store / "store"), "--text", "x"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["radioalign search: error: KeyError: 'a bug' (run with -vv for the traceback)"]
    with pytest.raises(KeyError):
        cli.main(argv + ["-vv"])


@pytest.mark.slow
def test_sexagesimal_cone_with_a_unit_on_a_store(cone_store, capsys):
    from radioalign.survey.cli import main

    store = str(cone_store / "store")
    assert main(["search", "--store", store, "--like", "centre", "--cone", "12:56:47.3", "+12:36:00", "10arcmin"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert names == {"centre", "near"}
    assert main(["search", "--store", store, "--like", "centre", "--cone", "12 56 47.3", "+12 36 00", "30arcmin"]) == 0
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == {"centre", "near", "far"}
    g = SkyCoord(RA0 * u.deg, DEC0 * u.deg).galactic
    assert main(["search", "--store", store, "--like", "centre", "--frame", "galactic",
                 "--cone", f"{g.l.deg:.9f}", f"{g.b.deg:.9f}", "60"]) == 0  # fmt: skip
    assert {r["name"] for r in json.loads(capsys.readouterr().out)} == {"centre"}


@pytest.mark.slow
def test_negative_sexagesimal_dec_is_a_value_not_an_option(cone_store, capsys):
    from radioalign.survey.cli import main

    code = main(["search", "--store", str(cone_store / "store"), "--like", "centre", "--cone", "0", "-12:30:00", "1arcmin"])
    assert code == 0 and json.loads(capsys.readouterr().out) == []


@pytest.mark.slow
def test_library_warnings_only_with_verbose(cone_store, tiny_siglip_dir):
    env, store = _environment(tiny_siglip_dir), cone_store / "store"
    quiet = _radioalign(env, "search", "--store", store, "--text", "a jet", "-k", "1")
    assert quiet.returncode == 0, quiet.stderr
    for noise in ("[transformers]", "Loading weights", "Warning", "warn("):
        assert noise not in quiet.stderr, quiet.stderr
    verbose = _radioalign(env, "search", "--store", store, "--text", "a jet", "-k", "1", "-v")
    assert verbose.returncode == 0 and "transformers" in verbose.stderr


@pytest.mark.slow
def test_ingest_a_votable_catalogue_by_ucd_and_refuse_one_without_positions(tmp_path, tiny_siglip_dir, capsys):
    from astropy.io import fits

    from radioalign.survey.cli import main

    mosaic = tmp_path / "mosaic.fits"
    _write_fits(mosaic, RA0, DEC0, seed=0, n=400, scale=3.0)
    with fits.open(mosaic) as hdul:
        from astropy.wcs import WCS

        sky = WCS(hdul[0].header).pixel_to_world([100, 200, 300], [100, 250, 200])
    table = Table({"c1": sky.ra.deg, "c2": sky.dec.deg, "label": ["a", "b", "c"]})
    table["c1"].meta["ucd"], table["c2"].meta["ucd"] = "pos.eq.ra;meta.main", "pos.eq.dec;meta.main"
    table.write(tmp_path / "cat.vot", format="votable")
    store = tmp_path / "store"
    args = ["ingest", "--catalog", str(tmp_path / "cat.vot"), "--mosaic", str(mosaic), "--store", str(store),
            "--model", str(tiny_siglip_dir), "--workers", "0", "--no-progress", "--json", "--name-col", "label"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["ok"], summary["failed"]) == (3, 0)
    Table({"x": [1.0], "y": [2.0]}).write(tmp_path / "nopos.csv")
    args[2], args[6] = str(tmp_path / "nopos.csv"), str(tmp_path / "store2")
    assert main(args[:-2]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ra-col/--dec-col" in err[0] and "x, y" in err[0]
    assert not (tmp_path / "store2").exists(), "a catalogue without positions is refused before a store is made"
