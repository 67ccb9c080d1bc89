"""A cone on the sky and the filters that find the sources inside it.

A cone search keeps the sources in a Dec band and an RA window that contain the cone (the
window allows for RA wrapping at 0/360 and widens to all RA when the cone holds a pole),
then those whose great-circle separation from the centre (haversine) is within the
radius. The store's index (:mod:`.ann`) applies them to its positions in memory; the
search page's cone search (:mod:`.serve`) to LanceDB's rows, as SQL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cone:
    """A circle on the sky: centre ``ra``, ``dec`` (ICRS degrees) and ``radius_arcsec``.

    Checked here, before any of it reaches a SQL filter: RA in [0, 360], Dec in
    [-90, 90], a positive finite radius (``radioalign.survey.sky`` parses the forms
    people type: sexagesimal, galactic, radii with units)."""

    ra: float
    dec: float
    radius_arcsec: float

    def __post_init__(self):
        for name, value in (("RA", self.ra), ("Dec", self.dec), ("radius", self.radius_arcsec)):
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise ValueError(f"cone {name} must be a finite number, not {value!r}")
        if not 0.0 <= self.ra <= 360.0:
            raise ValueError(f"cone RA must lie in [0, 360] degrees, not {self.ra:g}")
        if not -90.0 <= self.dec <= 90.0:
            raise ValueError(f"cone Dec must lie in [-90, 90] degrees, not {self.dec:g}")
        if not self.radius_arcsec > 0:
            raise ValueError(f"cone radius must be positive, not {self.radius_arcsec:g} arcsec")


def separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation in arcsec between points given in degrees (haversine)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (ra1, dec1, ra2, dec2))
    hav = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))) * 3600.0


EPS_DEG = 1e-9


def dec_band(cone: Cone) -> tuple[float, float]:
    """The Dec range (degrees) that contains ``cone``."""
    r = cone.radius_arcsec / 3600.0
    return cone.dec - r - EPS_DEG, cone.dec + r + EPS_DEG


def ra_window(cone: Cone) -> tuple[float, float] | None:
    """``(lo, hi)`` in [0, 360) of an RA window that contains ``cone`` (``lo > hi`` when it
    wraps through 0), or None when every RA must be kept (the cone holds a pole)."""
    r = cone.radius_arcsec / 3600.0
    lo_dec, hi_dec = dec_band(cone)
    # Half-width in RA of a cone (exact): asin(sin r / cos dec); all RA when the cone holds a pole.
    s = math.sin(math.radians(min(r, 90.0)))
    c = math.cos(math.radians(cone.dec))
    if lo_dec <= -90.0 or hi_dec >= 90.0 or s >= c:
        return None
    half = math.degrees(math.asin(s / c)) + EPS_DEG
    ra = cone.ra % 360.0
    lo, hi = ra - half, ra + half
    if half >= 180.0:
        return None
    return (lo + 360.0 if lo < 0 else lo, hi - 360.0 if hi >= 360.0 else hi)


def cone_where(cone: Cone) -> str:
    """A SQL filter for a Dec band and RA window that contain ``cone`` (a superset)."""
    lo_dec, hi_dec = dec_band(cone)
    band = f"dec >= {lo_dec!r} AND dec <= {hi_dec!r}"
    window = ra_window(cone)
    if window is None:
        return band
    lo, hi = window
    return f"{band} AND " + (f"(ra >= {lo!r} OR ra <= {hi!r})" if lo > hi else f"ra >= {lo!r} AND ra <= {hi!r}")


def in_cone(rows: list[dict], cone: Cone) -> list[dict]:
    if not rows:
        return rows
    ra = np.array([r["ra"] for r in rows], dtype=np.float64)
    dec = np.array([r["dec"] for r in rows], dtype=np.float64)
    keep = separation_arcsec(cone.ra, cone.dec, ra, dec) <= cone.radius_arcsec
    return [r for r, k in zip(rows, keep) if k]
