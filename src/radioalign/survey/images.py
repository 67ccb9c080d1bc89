"""Survey images to MiraBest-like model input: orientation, geometry, the recipe, thumbnails.

MiraBest (Porter & Scaife 2023, RASTI 2, 293, doi:10.1093/rasti/rzad017, section 2)
is made of FIRST cut-outs of 150 x 150 pixels at 1.8 arcsec per pixel, processed
following Aniyan & Thorat (2017): pixels below 3 sigma of the background, with sigma
estimated by sigma clipping, were set to 0, and the image was then scaled to 0-255
and saved as PNG. :func:`mirabest_recipe` implements that recipe and
:func:`to_mirabest_geometry` brings any cut-out onto the same 150 x 150, 1.8 arcsec
grid, so that a survey image reaches the model as a MiraBest image would.

The orientation rule (one rule for the MiraBest loader, the study and the survey tool):
every image array that reaches the model, or a thumbnail, is in *display order*, the sky
as astronomers draw it: **row 0 is the north (top) edge and column 0 the east (left)
edge**; north up, east left. A MiraBest image, a PNG or a JPEG is already in display
order and is taken as it is. A FITS array is not: by the FITS convention its first row
(row 0 in numpy, pixel y = 1) is the *bottom* of the picture, which for a standard
celestial WCS (``CDELT1 < 0``, ``CDELT2 > 0``) is the *south* edge, with east on the
left. :func:`to_mirabest_geometry` therefore reads the orientation from the WCS at the
image centre (:func:`sky_steps`, in ICRS):

- axis-aligned (any combination of ``CDELT1``/``CDELT2`` signs, or axes swapped by a
  90-degree ``PC``/``CD``/``CROTA2`` rotation, within ``ROTATION_TOLERANCE_DEG``): exact
  flips and a transpose, no interpolation;
- rotated or skewed by any other angle: resampled (``reproject``) onto a north-up,
  east-left TAN grid at the file's own pixel scale (when that is MiraBest's) or at
  MiraBest's 1.8 arcsec (when the scale must change anyway: one interpolation, not two);
- no celestial WCS: the orientation cannot be known; the rows are put in display order
  as FITS viewers (ds9, ``imshow(origin="lower")``) show them, row 0 at the bottom, and
  the source's preprocessing record says "orientation unknown".
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

RECIPE = "mirabest-v2"  # bump when the recipe or the geometry changes; stored with every source and store
# v2: FITS images north up, east left (v1 gave the model FITS rows bottom-up: upside down).
ROTATION_TOLERANCE_DEG = 0.05  # below this the WCS counts as axis-aligned: 0.1 px at the corner of 150 px


class BadImageError(ValueError):
    """An image that cannot become model input (all NaN, constant, wrong shape ...)."""


@dataclass
class Picture:
    """A 2-D image as read, before geometry and recipe.

    ``data`` is float (NaN marks missing pixels); ``wcs`` the 2-D celestial WCS or None
    (PNG/JPEG, FITS without celestial axes); ``ra``/``dec`` the centre in degrees (ICRS
    or the file's frame) or None; ``notes`` what was done while reading. ``fits`` says
    the rows are in FITS order (row 0 at the bottom), not in display order (row 0 at
    the top, as a PNG): see the module docstring.
    """

    data: np.ndarray
    wcs: object | None = None
    ra: float | None = None
    dec: float | None = None
    notes: tuple[str, ...] = ()
    fits: bool = False


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
    east left, centred on ``(ra, dec)`` ICRS degrees: MiraBest's geometry. Its arrays are
    in FITS order (row 0 south); ``[::-1]`` puts them in display order."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(size + 1) / 2.0, (size + 1) / 2.0]  # FITS pixels are 1-based
    wcs.wcs.cdelt = [-scale_arcsec / 3600.0, scale_arcsec / 3600.0]
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (size, size)
    return wcs


def pixel_scale_arcsec(wcs) -> tuple[float, float]:
    """The pixel size along each axis in arcsec, at the reference point."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    scales = proj_plane_pixel_scales(wcs) * 3600.0
    return float(scales[0]), float(scales[1])


def centre_crop(data: np.ndarray, size: int = MIRABEST_SIZE) -> np.ndarray:
    """The central ``size`` x ``size`` pixels, padded with NaN where the image is smaller."""
    out = np.full((size, size), np.nan, dtype=np.float64)
    h, w = data.shape
    top, left = (h - size) // 2, (w - size) // 2
    src = data[max(top, 0) : max(top, 0) + min(h, size), max(left, 0) : max(left, 0) + min(w, size)]
    out_top, out_left = max(-top, 0), max(-left, 0)
    out[out_top : out_top + src.shape[0], out_left : out_left + src.shape[1]] = src
    return out


def sky_steps(wcs, shape: tuple[int, int]) -> np.ndarray:
    """The sky offset of one pixel step at the image centre, in arcsec: row ``a`` of the
    result is ``(east, north)`` for a step of +1 along numpy axis ``a`` (0: rows, the
    FITS y axis; 1: columns, x). Offsets are in ICRS, so a galactic WCS counts as rotated."""
    h, w = shape
    x, y = np.array([(w - 1) / 2.0] * 2 + [(w + 1) / 2.0]), np.array([(h - 1) / 2.0, (h + 1) / 2.0, (h - 1) / 2.0])
    if _equatorial_j2000(wcs):  # the common case, in plain numpy (the SkyCoord path costs ms per image)
        ra, dec = wcs.all_pix2world(x, y, 0)
        east = (((ra[1:] - ra[0]) + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec[0])) * 3600.0
        return np.stack([east, (dec[1:] - dec[0]) * 3600.0], axis=1)
    points = wcs.pixel_to_world(x, y).icrs
    east, north = points[0].spherical_offsets_to(points[1:])
    return np.stack([east.arcsec, north.arcsec], axis=1)


def _equatorial_j2000(wcs) -> bool:
    """RA/Dec axes in ICRS or FK5 J2000 (the two differ by tens of milliarcsec, nothing
    to an orientation)."""
    core = wcs.wcs
    if core.lngtyp != "RA" or core.lattyp != "DEC":
        return False
    system = (core.radesys or "").strip().upper()
    equinox = core.equinox
    return system == "ICRS" or (system in ("FK5", "") and (np.isnan(equinox) or equinox == 2000.0))


def exact_orientation(steps: np.ndarray) -> tuple[bool, bool, bool] | None:
    """``(transpose, flip_rows, flip_columns)`` that bring an axis-aligned image to display
    order (applied in that order by :func:`apply_orientation`), or None when the axes are
    rotated or skewed by more than ``ROTATION_TOLERANCE_DEG`` (then resample)."""
    tol = np.tan(np.radians(ROTATION_TOLERANCE_DEG))
    a = np.abs(steps)
    if a[0, 0] <= tol * a[0, 1] and a[1, 1] <= tol * a[1, 0]:
        transpose, straight = False, steps  # rows run north-south, columns east-west
    elif a[0, 1] <= tol * a[0, 0] and a[1, 0] <= tol * a[1, 1]:
        transpose, straight = True, steps[::-1]  # swapped axes: a 90-degree rotation
    else:
        return None
    # display order: a row step goes south (north offset < 0), a column step west (east < 0)
    return transpose, bool(straight[0, 1] > 0), bool(straight[1, 0] > 0)


def apply_orientation(data: np.ndarray, orientation: tuple[bool, bool, bool]) -> np.ndarray:
    """``data`` transposed and flipped as :func:`exact_orientation` says (a view, exact)."""
    transpose, flip_rows, flip_columns = orientation
    out = data.T if transpose else data
    return out[:: -1 if flip_rows else 1, :: -1 if flip_columns else 1]


def _describe(orientation: tuple[bool, bool, bool]) -> str:
    names = ("axes swapped", "rows flipped (FITS row 0 is south)", "columns flipped (east was right)")
    done = [name for name, did in zip(names, orientation) if did]
    return "north up, east left as stored" if not done else "north up, east left: " + ", ".join(done)


def to_mirabest_geometry(picture: Picture) -> tuple[np.ndarray, str]:
    """``picture`` in display order (north up, east left; see the module docstring) on
    MiraBest's 150 x 150 grid at 1.8 arcsec/pixel, and a note saying how.

    With a celestial WCS that is axis-aligned and whose pixel scale is within 1 % of
    1.8 arcsec, the image is flipped exactly into display order and its central
    150 x 150 pixels kept (NaN-padded if smaller): no interpolation. Otherwise it is
    resampled (``reproject.reproject_interp``, bilinear) onto a north-up, east-left TAN
    grid centred on the picture's ``(ra, dec)``, at the file's own scale when that is
    within 1 % of 1.8 arcsec (a rotated image), else at 1.8 arcsec. Bilinear
    interpolation rather than footprint averaging (``reproject_adaptive``, 4x slower):
    survey images sample their beam with several pixels (VLASS 2.5 arcsec beam at
    1 arcsec/px, LoTSS 6 arcsec at 1.5), so they hold no structure finer than the
    1.8 arcsec output pixels to alias. Pixels outside the input are NaN. Without a WCS
    the image keeps its size (see :func:`resize_grey`); a FITS one is put in display
    order as FITS viewers show it, and the note says its orientation is unknown.
    """
    data = picture.data
    if picture.wcs is None:
        if picture.fits:
            return data[::-1], "no celestial WCS: orientation unknown, FITS rows shown bottom-up"
        return data, "no WCS (a picture, taken as displayed)"
    steps = sky_steps(picture.wcs, data.shape)
    scales = np.hypot(steps[:, 0], steps[:, 1])
    native = bool(np.all(np.abs(scales - MIRABEST_SCALE_ARCSEC) <= SCALE_TOLERANCE * MIRABEST_SCALE_ARCSEC))
    orientation = exact_orientation(steps)
    if native and orientation is not None:
        oriented = apply_orientation(data, orientation)
        note = f"native 1.8 arcsec/px, {_describe(orientation)}"
        if oriented.shape == (MIRABEST_SIZE, MIRABEST_SIZE):
            return np.ascontiguousarray(oriented), note
        return centre_crop(oriented), f"{note}; centre crop of {oriented.shape[1]}x{oriented.shape[0]}"
    from reproject import reproject_interp

    scale = float(np.sqrt(scales.prod())) if native else MIRABEST_SCALE_ARCSEC
    target = target_wcs(picture.ra, picture.dec, scale_arcsec=scale)
    out, _ = reproject_interp((data, picture.wcs), target, shape_out=(MIRABEST_SIZE, MIRABEST_SIZE), order="bilinear")
    how = "rotated or skewed axes" if orientation is None else "pixel scale"
    return out[::-1], f"reprojected north up, east left ({how}) from {scales[1]:.3g}x{scales[0]:.3g} arcsec/px to {scale:.3g}"


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
