"""Survey images to MiraBest-like model input: the recipe, the geometry and thumbnails.

MiraBest (Porter & Scaife 2023, RASTI 2, 293, doi:10.1093/rasti/rzad017, section 2)
is made of FIRST cut-outs of 150 x 150 pixels at 1.8 arcsec per pixel, processed
following Aniyan & Thorat (2017): pixels below 3 sigma of the background, with sigma
estimated by sigma clipping, were set to 0, and the image was then scaled to 0-255
and saved as PNG. :func:`mirabest_recipe` implements that recipe and
:func:`to_mirabest_geometry` brings any cut-out with a celestial WCS onto the same
150 x 150, 1.8 arcsec grid (the reproject package), so that a survey image reaches the
model as a MiraBest image would.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

MIRABEST_SIZE = 150  # pixels on a side
MIRABEST_SCALE_ARCSEC = 1.8  # arcsec per pixel (FIRST)
SCALE_TOLERANCE = 0.01  # relative pixel-scale difference below which no reprojection is done
CLIP_SIGMA = 3.0  # both the sigma-clipping rejection and the background threshold, in sigma
CLIP_MAXITERS = 10

RECIPE = "mirabest-v1"  # bump when the recipe below changes; it is stored with every source


class BadImageError(ValueError):
    """An image that cannot become model input (all NaN, constant, wrong shape ...)."""


@dataclass
class Picture:
    """A 2-D image as read, before geometry and recipe.

    ``data`` is float (NaN marks missing pixels); ``wcs`` the 2-D celestial WCS or None
    (PNG/JPEG, FITS without celestial axes); ``ra``/``dec`` the centre in degrees (ICRS
    or the file's frame) or None; ``notes`` what was done while reading.
    """

    data: np.ndarray
    wcs: object | None = None
    ra: float | None = None
    dec: float | None = None
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# The recipe


def background_sigma(data: np.ndarray) -> tuple[float, float]:
    """``(median, sigma)`` of the background: astropy's ``sigma_clipped_stats`` over the
    finite pixels, rejecting pixels beyond ``CLIP_SIGMA`` standard deviations from the
    median and iterating until nothing more is rejected (at most ``CLIP_MAXITERS``)."""
    from astropy.stats import sigma_clipped_stats

    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise BadImageError("all pixels are NaN or infinite")
    _, median, sigma = sigma_clipped_stats(finite, sigma=CLIP_SIGMA, maxiters=CLIP_MAXITERS)
    return float(median), float(sigma)


def mirabest_recipe(data: np.ndarray) -> np.ndarray:
    """The MiraBest preprocessing (Porter & Scaife 2023, section 2, after Aniyan & Thorat
    2017) of a 2-D image to ``uint8``, exactly these steps:

    1. the background median ``m`` and standard deviation ``sigma`` come from sigma
       clipping the finite pixels (:func:`background_sigma`: 3 sigma, iterated);
    2. every pixel below ``m + 3 sigma``, and every NaN or infinite pixel, is set to 0; the
       others keep their height above the background, ``x - m``. (The paper says
       "below 3 sigma of the background". Our choice is to measure both the threshold
       and the kept values from the clipped median: for the zero-mean background of an
       interferometric image such as FIRST's this is the paper's recipe, and it stays
       right when a survey leaves an offset);
    3. the result ``c`` is scaled linearly to 0-255: ``255 (c - min c) / (max c - min c)``
       (``min c`` is 0), rounded to the nearest integer (half to even).

    A MiraBest PNG (background already 0, peak 255) comes out unchanged.

    Raises :class:`BadImageError` for an image that is not 2-D, all NaN or constant.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2:
        raise BadImageError(f"expected a 2-D image, got shape {data.shape}")
    median, sigma = background_sigma(data)
    finite = np.isfinite(data)
    clipped = np.where(finite & (data >= median + CLIP_SIGMA * sigma), data - median, 0.0)
    lo, hi = float(clipped.min()), float(clipped.max())
    if hi <= lo:
        raise BadImageError("image is constant after background clipping (no emission above 3 sigma)")
    scaled = np.rint(255.0 * (clipped - lo) / (hi - lo))
    return np.clip(scaled, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------
# Geometry


def target_wcs(ra: float, dec: float, size: int = MIRABEST_SIZE, scale_arcsec: float = MIRABEST_SCALE_ARCSEC):
    """A TAN (gnomonic) WCS of ``size`` x ``size`` pixels of ``scale_arcsec``, north up,
    east left, centred on ``(ra, dec)`` degrees: MiraBest's geometry."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]  # FITS pixels are 1-based
    wcs.wcs.cdelt = [-scale_arcsec / 3600.0, scale_arcsec / 3600.0]
    wcs.pixel_shape = (size, size)
    return wcs


def pixel_scale_arcsec(wcs) -> tuple[float, float]:
    """The pixel size along each axis in arcsec, at the reference point."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    scales = proj_plane_pixel_scales(wcs) * 3600.0
    return float(scales[0]), float(scales[1])


def _same_scale(wcs, scale_arcsec: float) -> bool:
    return all(abs(s - scale_arcsec) <= SCALE_TOLERANCE * scale_arcsec for s in pixel_scale_arcsec(wcs))


def centre_crop(data: np.ndarray, size: int = MIRABEST_SIZE) -> np.ndarray:
    """The central ``size`` x ``size`` pixels, padded with NaN where the image is smaller."""
    out = np.full((size, size), np.nan, dtype=np.float64)
    h, w = data.shape
    top, left = (h - size) // 2, (w - size) // 2
    src = data[max(top, 0) : max(top, 0) + min(h, size), max(left, 0) : max(left, 0) + min(w, size)]
    out_top, out_left = max(-top, 0), max(-left, 0)
    out[out_top : out_top + src.shape[0], out_left : out_left + src.shape[1]] = src
    return out


def to_mirabest_geometry(picture: Picture) -> tuple[np.ndarray, str]:
    """``picture`` on MiraBest's 150 x 150 grid at 1.8 arcsec/pixel, and a note saying how.

    With a celestial WCS whose pixel scale is within 1 % of 1.8 arcsec, the central
    150 x 150 pixels are kept (NaN-padded if smaller): no interpolation. With another
    scale the image is reprojected (``reproject.reproject_interp``, bilinear) onto a TAN
    grid centred on the picture's ``(ra, dec)``. Bilinear interpolation rather than
    footprint averaging (``reproject_adaptive``, 4x slower): survey images sample their
    beam with several pixels (VLASS 2.5 arcsec beam at 1 arcsec/px, LoTSS 6 arcsec at
    1.5), so they hold no structure finer than the 1.8 arcsec output pixels to alias.
    Pixels outside the input
    are NaN. Without a WCS the image is returned as it is (see :func:`resize_grey`).
    """
    data = picture.data
    if picture.wcs is None:
        return data, "no WCS"
    if _same_scale(picture.wcs, MIRABEST_SCALE_ARCSEC):
        if data.shape == (MIRABEST_SIZE, MIRABEST_SIZE):
            return data, "native 1.8 arcsec/px"
        return centre_crop(data), f"centre crop of {data.shape[1]}x{data.shape[0]} at 1.8 arcsec/px"
    from reproject import reproject_interp

    target = target_wcs(picture.ra, picture.dec)
    out, _ = reproject_interp((data, picture.wcs), target, shape_out=(MIRABEST_SIZE, MIRABEST_SIZE), order="bilinear")
    sx, sy = pixel_scale_arcsec(picture.wcs)
    return out, f"reprojected from {sx:.3g}x{sy:.3g} arcsec/px"


def resize_grey(image: np.ndarray, size: int = MIRABEST_SIZE) -> np.ndarray:
    """A ``uint8`` image resized to ``size`` x ``size`` (PIL bilinear), for images whose
    pixel scale is unknown; unchanged when already that size."""
    from PIL import Image

    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def model_image(picture: Picture) -> tuple[np.ndarray, str]:
    """The ``(150, 150)`` ``uint8`` model input for ``picture`` and the preprocessing record:
    geometry (:func:`to_mirabest_geometry`), then :func:`mirabest_recipe`; an image
    without WCS gets the recipe at its own size and is then resized (:func:`resize_grey`)."""
    data, geometry = to_mirabest_geometry(picture)
    image = mirabest_recipe(data)
    if image.shape != (MIRABEST_SIZE, MIRABEST_SIZE):
        geometry += f"; resized from {image.shape[1]}x{image.shape[0]}"
        image = resize_grey(image)
    return image, "; ".join((RECIPE, geometry, *picture.notes))


# ---------------------------------------------------------------------------
# Thumbnails


def png_bytes(image: np.ndarray) -> bytes:
    """A ``uint8`` grey image as PNG bytes (the store's thumbnail)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def png_image(data: bytes) -> np.ndarray:
    """PNG bytes back to a ``uint8`` grey array."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)
