"""Sky positions and radii as people type them, parsed with astropy.

A position is ``(ra, dec)`` in ICRS degrees. A coordinate is either a decimal number of
degrees (``194.2``, ``-12.5``) or sexagesimal: ``12:34:56.7``, ``12h34m56.7s`` or
VizieR's ``12 34 56.7``. Sexagesimal RA is in hours (the astronomers' convention)
unless it carries a degree mark (``194d12m``, ``194°12'``); Dec is always in degrees.
In the galactic frame both coordinates (l, b) are degrees and the position is
converted to ICRS. A radius is an angle: a bare number is arcsec, otherwise a
quantity with a unit (``10arcmin``, ``0.5 deg``, ``30"``, ``2'``).
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np

FRAMES = ("icrs", "galactic")
_SEXAGESIMAL = re.compile(r"^\s*([+-])?(\d+)(?:\s+|:)(\d+(?:\.\d*)?)(?:(?:\s+|:)(\d+(?:\.\d*)?))?\s*$")
# Radius suffixes astropy does not read as angles: "d" is a day to astropy, ' and " are not units.
_RADIUS_SUFFIXES = {'"': "arcsec", "''": "arcsec", "'": "arcmin", "d": "deg", "°": "deg"}


def _decimal(value) -> float | None:
    """``value`` as a float when it is a plain number (or its text), else None."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _angle_deg(text, unit, what: str) -> float:
    """A sexagesimal (or marked) angle in degrees; ``unit`` applies when the text has no marks."""
    from astropy.coordinates import Angle

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(Angle(str(text).strip(), unit=unit).deg)
    except Exception as err:  # noqa: BLE001 - astropy raises several types for bad text
        reason = str(err).split(";")[0].split(". ")[0]
        raise ValueError(f"cannot read {what} {str(text).strip()!r} as an angle ({reason})") from None


def parse_coordinate(value, axis: str) -> float:
    """One coordinate in degrees: ``axis`` is ``"ra"`` (sexagesimal in hours unless marked
    with d/°) or ``"dec"``, ``"l"``, ``"b"`` (degrees). Finite values only; no range check."""
    import astropy.units as u

    name = {"ra": "RA", "dec": "Dec", "l": "l", "b": "b"}[axis]
    number = _decimal(value)
    if number is None:
        text = str(value)
        if axis != "ra" and re.search(r"\d\s*h", text, re.IGNORECASE):
            raise ValueError(f"{name} {text.strip()!r} is in hours; {name} is an angle in degrees")
        number = _angle_deg(text, u.hourangle if axis == "ra" else u.deg, name)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _check_range(lon: float, lat: float, names: tuple[str, str]) -> None:
    if not 0.0 <= lon <= 360.0:
        raise ValueError(f"{names[0]} {lon:g} is outside [0, 360] degrees")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"{names[1]} {lat:g} is outside [-90, 90] degrees")


def parse_position(ra, dec, frame: str = "icrs") -> tuple[float, float]:
    """``(ra_deg, dec_deg)`` in ICRS from two coordinates as typed (see the module).

    ``frame="galactic"`` reads ``ra, dec`` as galactic l, b in degrees. Raises
    ``ValueError`` (one line naming the bad value) for text that is not an angle, NaN
    or infinite values, RA (l) outside [0, 360] or Dec (b) outside [-90, 90]."""
    frame = str(frame).lower()
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}; choose one of {', '.join(FRAMES)}")
    if frame == "icrs":
        ra_deg, dec_deg = parse_coordinate(ra, "ra"), parse_coordinate(dec, "dec")
        _check_range(ra_deg, dec_deg, ("RA", "Dec"))
        return ra_deg, dec_deg
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    lon, lat = parse_coordinate(ra, "l"), parse_coordinate(dec, "b")
    _check_range(lon, lat, ("l", "b"))
    icrs = SkyCoord(l=lon * u.deg, b=lat * u.deg, frame="galactic").icrs
    return float(icrs.ra.deg), float(icrs.dec.deg)


def parse_radius(text) -> float:
    """A radius in arcsec: a bare number is arcsec; otherwise an angle with a unit that
    astropy reads (``arcsec``, ``arcmin``, ``deg`` ...) or ``"``, ``'``, ``d``, ``°``.
    Raises ``ValueError`` for anything not a positive, finite angle."""
    import astropy.units as u

    raw = str(text).strip()
    number = _decimal(raw)
    if number is None:
        for suffix, unit in _RADIUS_SUFFIXES.items():
            if raw.endswith(suffix) and _decimal(raw[: -len(suffix)]) is not None:
                raw = f"{raw[: -len(suffix)]} {unit}"
                break
        try:
            number = u.Quantity(raw).to_value(u.arcsec)
        except (TypeError, ValueError, u.UnitsError):
            raise ValueError(f"radius {str(text).strip()!r} is not an angle (e.g. 30, 30arcsec, 10arcmin, 0.5deg)") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"radius must be positive and finite, not {str(text).strip()!r}")
    return float(number)


# ---------------------------------------------------------------------------
# Catalogue columns


def angle_unit(unit):
    """The astropy angle unit a column's ``unit`` names (hourangle, deg, rad ...), or None
    when it names none; VizieR's ``h:m:s`` is hours and ``d:m:s`` degrees."""
    import astropy.units as u

    if unit is None:
        return None
    text = str(unit).strip().lower()
    if text in ("h:m:s", "hms", "h"):
        return u.hourangle
    if text in ("d:m:s", "dms"):
        return u.deg
    try:
        parsed = unit if isinstance(unit, u.UnitBase) else u.Unit(text, parse_strict="silent")
        return parsed if parsed.is_equivalent(u.deg) else None
    except (TypeError, ValueError, AttributeError):
        return None


def _sexagesimal(text: str) -> float | None:
    """``[+-]A B C`` or ``[+-]A:B:C`` (C optional) as ``A + B/60 + C/3600`` with its sign,
    or None for any other form (and for minutes or seconds of 60 or more)."""
    match = _SEXAGESIMAL.match(text)
    if match is None:
        return None
    sign, a, b, c = match.groups()
    b, c = float(b), float(c or 0.0)
    if b >= 60 or c >= 60:
        return None
    value = float(a) + b / 60.0 + c / 3600.0
    return -value if sign == "-" else value


def _string_degrees(value: str, unit, factor: float, axis: str) -> float:
    """One catalogue string in degrees (NaN when it does not parse); ``factor`` converts
    a number in ``unit`` (None: degrees) to degrees."""
    number = _decimal(value)
    if number is not None:
        return number * factor
    # The plain forms VizieR writes, parsed here: astropy's parser costs ~50 us a row.
    fast = _sexagesimal(value)
    if fast is not None:
        return fast * (15.0 if unit is None and axis == "ra" else factor)
    try:
        return parse_coordinate(value, axis) if unit is None else _angle_deg(value, unit, axis)
    except ValueError:
        return np.nan


def _column_degrees(values, unit, axis: str) -> np.ndarray:
    """One column in degrees; rows that are masked or do not parse become NaN."""
    import astropy.units as u

    factor = float((unit or u.deg).to(u.deg))
    array = np.ma.asarray(values)
    mask = np.ma.getmaskarray(array).reshape(-1)
    if array.dtype.kind in "iuf":
        out = np.asarray(array.data, np.float64).reshape(-1) * factor
    else:
        texts = (v.decode() if isinstance(v, bytes) else str(v) for v in array.data.reshape(-1))
        out = np.array([_string_degrees(t, unit, factor, axis) for t in texts], np.float64)
    out[mask] = np.nan
    return out


def columns_to_degrees(ra_values, dec_values, ra_unit=None, dec_unit=None) -> tuple[np.ndarray, np.ndarray]:
    """Catalogue columns as ``(ra, dec)`` float arrays in degrees.

    Numbers are degrees unless the column's unit is another angle (hourangle, rad);
    strings that read as numbers likewise; other strings are sexagesimal: RA in hours
    unless marked with d/° (or the unit says degrees), Dec in degrees. Rows that do not
    parse, are masked, not finite, or lie outside RA [0, 360] / Dec [-90, 90] are NaN in
    both arrays: the ingest records such a row as failed."""
    ra = _column_degrees(ra_values, angle_unit(ra_unit), "ra")
    dec = _column_degrees(dec_values, angle_unit(dec_unit), "dec")
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra <= 360) & (dec >= -90) & (dec <= 90))
    ra[bad] = dec[bad] = np.nan
    return ra, dec
