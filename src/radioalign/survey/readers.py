"""Reading survey inputs: FITS cut-outs, PNG/JPEG images, and cut-outs from mosaics.

Every reader returns a :class:`~radioalign.survey.images.Picture` or raises; the
ingest loop turns any exception into a row of the store's errors table.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from .images import MIRABEST_SCALE_ARCSEC, MIRABEST_SIZE, BadImageError, Picture, pixel_scale_arcsec

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def file_kind(path: str | Path) -> str | None:
    """``"fits"``, ``"picture"`` (PNG/JPEG) or None, from the file name's ending."""
    name = Path(path).name.lower()
    if name.endswith(FITS_SUFFIXES):
        return "fits"
    if name.endswith(PICTURE_SUFFIXES):
        return "picture"
    return None


def source_name(path: str | Path) -> str:
    """A file's name without its image suffix (``J1234+5678.fits.gz`` -> ``J1234+5678``)."""
    name = Path(path).name
    for suffix in sorted(FITS_SUFFIXES + PICTURE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


# ---------------------------------------------------------------------------
# FITS


def _celestial_2d(header, shape: tuple[int, ...]):
    """The 2-D celestial WCS of an image whose non-degenerate axes are RA and Dec, else None."""
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    if not wcs.has_celestial:
        return None
    # FITS axis i (0-based) is numpy axis ndim-1-i; the axes kept must be the celestial ones.
    kept = {i for i in range(len(shape)) if shape[len(shape) - 1 - i] > 1}
    if kept != {wcs.wcs.lng, wcs.wcs.lat} or wcs.wcs.lng > wcs.wcs.lat:
        return None
    celestial = wcs.celestial
    celestial.pixel_shape = (shape[-1], shape[-2])
    return celestial


def squeeze_image(data: np.ndarray) -> np.ndarray | None:
    """The array with its degenerate (length-1) axes dropped, if that leaves 2-D, else None."""
    squeezed = np.squeeze(data)
    return squeezed if squeezed.ndim == 2 and min(squeezed.shape) > 1 else None


def _first_image(hdul) -> tuple[np.ndarray, object, list[str]]:
    """The first HDU whose data is 2-D once degenerate axes (FREQ, STOKES) are dropped."""
    seen = []
    for index, hdu in enumerate(hdul):
        if not getattr(hdu, "is_image", False) or hdu.data is None:
            continue
        data = squeeze_image(hdu.data)
        seen.append(str(tuple(hdu.data.shape)))
        if data is None:
            continue
        notes = [f"HDU {index}"] if index else []
        if data.ndim != hdu.data.ndim:
            notes.append(f"dropped degenerate axes of {tuple(hdu.data.shape)}")
        return data, _celestial_2d(hdu.header, hdu.data.shape), notes
    found = ", ".join(seen) if seen else "none"
    raise BadImageError(f"no 2-D image HDU (image shapes found: {found})")


def icrs_centre(wcs, shape: tuple[int, int]) -> tuple[float, float]:
    """ICRS ``(ra, dec)`` in degrees of the centre of an image of ``shape`` (numpy order)."""
    x, y = (shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0
    core = wcs.wcs
    if core.lngtyp == "RA" and ((core.radesys or "").upper() == "ICRS" or (not core.radesys and np.isnan(core.equinox))):
        ra, dec = wcs.all_pix2world(x, y, 0)  # already ICRS: no SkyCoord (milliseconds per image)
        return float(ra) % 360.0, float(dec)
    centre = wcs.pixel_to_world(x, y).icrs
    return float(centre.ra.deg), float(centre.dec.deg)


def read_fits(path: str | Path) -> Picture:
    """The first 2-D image of a FITS file, with its celestial WCS and centre coordinates.

    Degenerate axes (a FREQ or STOKES axis of length 1) are dropped; infinite pixels
    become NaN; a file astropy reports as truncated is refused.
    """
    from astropy.io import fits

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fits.open(path, memmap=False) as hdul:
            try:
                data, wcs, notes = _first_image(hdul)
            except ValueError as err:  # astropy cannot shape data shorter than its header says
                if "reshape" not in str(err):
                    raise
                raise BadImageError(f"truncated file: {err}") from None
            data = np.array(data, dtype=np.float64)  # a copy: the file closes here
    truncated = [w for w in caught if "truncat" in str(w.message).lower()]
    if truncated:
        raise BadImageError(f"truncated file: {truncated[0].message}")
    data[~np.isfinite(data)] = np.nan
    if not np.isfinite(data).any():
        raise BadImageError("all pixels are NaN or infinite")
    ra = dec = None
    if wcs is not None:
        ra, dec = icrs_centre(wcs, data.shape)
    else:
        notes.append("no celestial WCS")
    return Picture(data=data, wcs=wcs, ra=ra, dec=dec, notes=tuple(notes), fits=True)


def read_picture(path: str | Path) -> Picture:
    """A PNG or JPEG as grey levels 0-255 (colour images are converted to luminance);
    such files carry no coordinates."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        grey = np.asarray(im.convert("L"), dtype=np.float64)
    notes = ("grey levels from a picture",) if mode == "L" else (f"grey levels from a {mode} picture",)
    return Picture(data=grey, notes=notes)


def read_file(path: str | Path) -> Picture:
    """Dispatch on the file name: FITS or PNG/JPEG; anything else is refused."""
    kind = file_kind(path)
    if kind == "fits":
        return read_fits(path)
    if kind == "picture":
        return read_picture(path)
    raise BadImageError(f"unsupported file type {Path(path).suffix or '(no suffix)'!r}; expected FITS, PNG or JPEG")


# ---------------------------------------------------------------------------
# Catalogue and mosaics


@lru_cache(maxsize=8)
def open_mosaic(path: str) -> tuple[np.ndarray, object]:
    """A mosaic's 2-D data (memory-mapped, not read into memory) and celestial WCS; cached
    per process, so a worker opens each mosaic once."""
    from astropy.io import fits

    hdul = fits.open(path, memmap=True)
    data, wcs, _ = _first_image(hdul)
    if wcs is None:
        raise BadImageError(f"mosaic {path} has no celestial WCS")
    return data, wcs


def edge_distance(path: str, ra: float, dec: float) -> float:
    """Pixels from ``(ra, dec)`` to the nearest edge of a mosaic (negative: outside)."""
    from astropy.coordinates import SkyCoord

    data, wcs = open_mosaic(path)
    x, y = wcs.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
    if not (np.isfinite(x) and np.isfinite(y)):
        return -np.inf
    h, w = data.shape
    return float(min(x + 0.5, w - 0.5 - x, y + 0.5, h - 0.5 - y))


def best_mosaic(mosaics: list[str], ra: float, dec: float) -> str | None:
    """The mosaic in which ``(ra, dec)`` lies farthest from an edge, or None if none holds it."""
    best, margin = None, 0.0
    for path in mosaics:
        d = edge_distance(path, ra, dec)
        if d > margin:
            best, margin = path, d
    return best


def cut_from_mosaic(path: str, ra: float, dec: float) -> Picture:
    """A cut-out around ``(ra, dec)`` (astropy ``Cutout2D``, partial cut-outs NaN-padded):
    150 pixels on a side at the mosaic's own scale when it is MiraBest's 1.8 arcsec,
    otherwise a field 1.5 times MiraBest's 270 arcsec (room for reprojection)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.nddata import Cutout2D

    data, wcs = open_mosaic(path)
    scale = min(pixel_scale_arcsec(wcs))
    if abs(scale - MIRABEST_SCALE_ARCSEC) <= 0.01 * MIRABEST_SCALE_ARCSEC:
        size = MIRABEST_SIZE
    else:
        size = 1.5 * MIRABEST_SIZE * MIRABEST_SCALE_ARCSEC * u.arcsec
    position = SkyCoord(ra, dec, unit="deg")
    cut = Cutout2D(data, position, size, wcs=wcs, mode="partial", fill_value=np.nan, copy=True)
    image = np.asarray(cut.data, dtype=np.float64)
    image[~np.isfinite(image)] = np.nan
    if not np.isfinite(image).any():
        raise BadImageError("the cut-out holds no finite pixels")
    return Picture(data=image, wcs=cut.wcs, ra=ra, dec=dec, notes=(f"cut from {Path(path).name}",), fits=True)
