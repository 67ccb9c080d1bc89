"""Source catalogues: ``(name, ra, dec)`` rows from CSV, ECSV, VOTable, FITS or VizieR TSV.

The table is read with ``astropy.table.Table.read`` (the format from the file name).
Coordinates come from the first pair of columns found, by name (case-insensitively)
in the order of :data:`RA_DEC_NAMES`, else by UCD in a VOTable (``pos.eq.ra;meta.main``
and ``pos.eq.dec;meta.main``, then ``pos.eq.ra`` and ``pos.eq.dec``); B1950/FK4
columns are never taken. Values are converted to ICRS degrees by
:func:`~radioalign.survey.sky.columns_to_degrees` (numbers, or sexagesimal strings);
a row whose position does not parse has ``ra = dec = None``. The name column is the
first of :data:`NAME_NAMES`, else the column with UCD ``meta.id;meta.main``, else a
survey's name column (:data:`SURVEY_NAMES`), else the first string column, else
``row<N>`` (1-based row number).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .sky import columns_to_degrees

RA_DEC_NAMES = (
    ("ra", "dec"), ("raj2000", "dej2000"), ("_raj2000", "_dej2000"), ("ra_icrs", "de_icrs"),
    ("ra_deg", "dec_deg"), ("radeg", "dedeg"), ("raj2000", "decj2000"), ("ra_j2000", "dec_j2000"),
)  # fmt: skip
RA_DEC_UCDS = (("pos.eq.ra;meta.main", "pos.eq.dec;meta.main"), ("pos.eq.ra", "pos.eq.dec"))
NAME_NAMES = ("name", "id", "source", "source_name", "objname", "object", "designation", "main_id")
SURVEY_NAMES = ("first", "nvss", "sumss", "tgss", "lotss", "racs", "emu", "vlass", "component_name", "source_id")
FORMATS = {
    ".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".xml": "votable", ".vot": "votable", ".votable": "votable",
    ".fits": "fits", ".fit": "fits", ".fts": "fits",
}  # fmt: skip
MAX_LISTED = 10


class CatalogError(ValueError):
    """A catalogue that cannot be read as asked (no coordinate columns, a missing column ...)."""


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _read_vizier_tsv(path: Path):
    """VizieR's tab-separated output: ``#`` comments, a header, a units line, a line of dashes."""
    from astropy.io import ascii

    lines = [line.rstrip("\r\n") for line in path.read_text().splitlines()]
    lines = [line for line in lines if line.strip() and not line.startswith("#")]
    units = None
    if len(lines) >= 3 and set(lines[2].replace("\t", "")) <= {"-", " "}:
        units = [u.strip().strip('"') for u in lines[1].split("\t")]
        lines = lines[:1] + lines[3:]
    table = ascii.read(lines, format="tab", guess=False)
    for name, unit in zip(table.colnames, units or ()):
        table[name].meta["unit_text"] = unit  # as written (h:m:s, d:m:s): not astropy units
    return table


def read_table(path: str | os.PathLike):
    """The catalogue as an astropy ``Table``, its format from the suffix (astropy guesses
    for others); an unreadable file raises :class:`CatalogError`."""
    from astropy.table import Table

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no catalogue file {path}")
    suffix = _suffix(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown VizieR units (h:m:s) and the like
            if suffix in (".tsv", ".tab"):
                return _read_vizier_tsv(path)
            fmt = FORMATS.get(suffix)
            return Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as err:  # noqa: BLE001 - each astropy reader fails its own way
        reason = " ".join(str(err).split())[:200]
        raise CatalogError(f"cannot read {path.name} as a table (CSV, ECSV, VOTable, FITS): {reason}") from None


def _ucd(column) -> str:
    return str(column.meta.get("ucd", "") or "").strip().lower()


def _unit(column):
    return column.meta.get("unit_text") or column.unit


def _listed(columns) -> str:
    names = list(columns)
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "") if names else "none"


def _named(table, name: str, option: str, path: Path) -> str:
    """The column ``name`` (exact, else case-insensitive) or a :class:`CatalogError`."""
    if name in table.colnames:
        return name
    lower = {c.lower(): c for c in table.colnames}
    if name.lower() in lower:
        return lower[name.lower()]
    raise CatalogError(f"{path.name} has no column {name!r} ({option}); its columns: {_listed(table.colnames)}")


def _not_b1950(name: str) -> bool:
    return not any(mark in name.lower() for mark in ("1950", "fk4"))


def find_position_columns(table) -> tuple[str, str] | None:
    """The ``(ra, dec)`` column names by name, else by UCD (see the module), or None."""
    lower = {c.lower(): c for c in table.colnames}
    for ra, dec in RA_DEC_NAMES:
        if ra in lower and dec in lower:
            return lower[ra], lower[dec]
    for ra_ucd, dec_ucd in RA_DEC_UCDS:
        ra = [c for c in table.colnames if _ucd(table[c]) == ra_ucd and _not_b1950(c)]
        dec = [c for c in table.colnames if _ucd(table[c]) == dec_ucd and _not_b1950(c)]
        if ra and dec:
            return ra[0], dec[0]
    return None


def find_name_column(table, exclude=()) -> str | None:
    """The name column (see the module), or None."""
    candidates = [c for c in table.colnames if c not in exclude]
    lower = {c.lower(): c for c in candidates}
    for name in NAME_NAMES:
        if name in lower:
            return lower[name]
    for c in candidates:
        if _ucd(table[c]) == "meta.id;meta.main":
            return c
    for name in SURVEY_NAMES:
        if name in lower:
            return lower[name]
    return next((c for c in candidates if table[c].dtype.kind in "USO"), None)


def _names(table, column: str | None) -> list[str]:
    """The rows' names: the column's text, or ``row<N>`` where it is empty or masked."""
    if column is None:
        return [f"row{i}" for i in range(1, len(table) + 1)]
    values = table[column]
    mask = np.ma.getmaskarray(values) if hasattr(values, "mask") else np.zeros(len(values), bool)
    names = []
    for i, (value, masked) in enumerate(zip(np.asarray(values), mask), start=1):
        text = "" if masked else (value.decode() if isinstance(value, bytes) else str(value)).strip()
        names.append(text or f"row{i}")
    return names


class CatalogRows:
    """A checked catalogue: iterating gives ``(name, ra_deg, dec_deg)`` per row, the
    position ``(None, None)`` where it does not parse. ``columns`` says which columns
    were taken (``{"ra", "dec", "name"}``; ``name`` is None for ``row<N>`` names)."""

    def __init__(self, path: Path, names: list[str], ra: np.ndarray, dec: np.ndarray, columns: dict):
        self.path, self.names, self.ra, self.dec, self.columns = path, names, ra, dec, columns

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[tuple[str, float | None, float | None]]:
        for name, ra, dec in zip(self.names, self.ra.tolist(), self.dec.tolist()):
            ok = np.isfinite(ra) and np.isfinite(dec)
            yield name, (ra if ok else None), (dec if ok else None)


def open_catalog(
    path: str | os.PathLike, ra_col: str | None = None, dec_col: str | None = None, name_col: str | None = None
) -> CatalogRows:
    """Read and check a catalogue (see the module); ``ra_col``, ``dec_col``, ``name_col``
    name the columns to use instead of the ones found. Raises :class:`CatalogError` (one
    line, listing the file's columns) when no coordinate columns are found or a named
    column is missing, ``FileNotFoundError`` when there is no such file."""
    path = Path(path).expanduser()
    table = read_table(path)
    found = find_position_columns(table) or (None, None)
    ra = _named(table, ra_col, "--ra-col", path) if ra_col else found[0]
    dec = _named(table, dec_col, "--dec-col", path) if dec_col else found[1]
    if ra is None or dec is None:
        missing = "RA" if ra is None and dec is not None else "Dec" if ra is not None else "RA/Dec"
        raise CatalogError(
            f"{path.name}: no {missing} column found (looked for ra/dec, RAJ2000/DEJ2000, _RAJ2000/_DEJ2000, RA_ICRS/DE_ICRS "
            f"and VOTable UCDs); its columns: {_listed(table.colnames)}; name them with --ra-col/--dec-col"
        )
    name = _named(table, name_col, "--name-col", path) if name_col else find_name_column(table, exclude=(ra, dec))
    ra_deg, dec_deg = columns_to_degrees(table[ra], table[dec], _unit(table[ra]), _unit(table[dec]))
    return CatalogRows(path, _names(table, name), ra_deg, dec_deg, {"ra": ra, "dec": dec, "name": name})


def read_catalog(
    path: str | os.PathLike, ra_col: str | None = None, dec_col: str | None = None, name_col: str | None = None
) -> Iterator[tuple[str, float | None, float | None]]:
    """``(name, ra_deg, dec_deg)`` for each row of a catalogue (see :func:`open_catalog`,
    whose errors this raises at the first ``next``)."""
    yield from open_catalog(path, ra_col, dec_col, name_col)
