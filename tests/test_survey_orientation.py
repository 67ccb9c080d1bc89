"""The orientation rule: every image reaches the model, and the thumbnail, north up and
east left. A letter "F" (always) and a real MiraBest image (when ../shared is present)
are written as a PNG and as FITS in four ways; the survey tool must see the same sky in
each, and never its upside-down copy."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("astropy")
pytest.importorskip("reproject")

from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.ndimage import map_coordinates  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from radioalign.survey import images  # noqa: E402
from radioalign.survey.ingest import file_tasks, read_task  # noqa: E402

N, SCALE, RA0, DEC0 = 150, 1.8, 187.25, 2.05  # MiraBest's grid near 3C 273


def letter_f() -> np.ndarray:
    """An "F" in display order (row 0 at the top), brightness rising to the right and down
    so that its ranks carry the orientation too."""
    yy, xx = np.mgrid[:N, :N]
    f = np.zeros((N, N))
    f[30:120, 45:58] = 1  # the stem, on the left (east)
    f[30:42, 45:110] = 1  # the top bar (north)
    f[70:80, 45:92] = 1  # the middle bar
    return np.rint(f * (120 + 0.5 * xx + 0.3 * yy)).clip(0, 255)


def display_wcs(shape=(N, N)) -> WCS:
    """The standard FITS WCS of the sky shown by a display-order image of ``shape``."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    w.wcs.cdelt = [-SCALE / 3600.0, SCALE / 3600.0]
    return w


def rotated_wcs(angle_deg: float, n: int, cdelt1: float = -1.0) -> WCS:
    w = display_wcs((n, n))
    w.wcs.cdelt = [cdelt1 * SCALE / 3600.0, SCALE / 3600.0]
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    w.wcs.pc = [[c, -s], [s, c]]
    return w


def sample_sky(display: np.ndarray, w: WCS, n: int) -> np.ndarray:
    """The FITS array (rows in FITS order) of WCS ``w`` that shows the sky of ``display``:
    each pixel is looked up, through astropy, in the display image (bilinear)."""
    j, i = np.mgrid[:n, :n]
    x, y = display_wcs().world_to_pixel(w.pixel_to_world(i.ravel(), j.ravel()))
    rows, cols = (N - 1) - y, x  # the standard FITS array is the display image bottom-up
    return map_coordinates(display, [rows, cols], order=1, cval=0.0).reshape(n, n)


def variants(display: np.ndarray) -> dict[str, tuple[np.ndarray, WCS]]:
    """The four FITS variants of one sky: three exact, one rotated by 30 degrees."""
    east_right = display_wcs()
    east_right.wcs.cdelt = [SCALE / 3600.0, SCALE / 3600.0]
    quarter = rotated_wcs(90.0, N)
    n30 = 213  # room for the rotated corners
    return {
        "standard": (display[::-1].copy(), display_wcs()),
        "east-right": (display[::-1, ::-1].copy(), east_right),
        "rotated-90": (sample_sky(display, quarter, N), quarter),
        "rotated-30": (sample_sky(display, rotated_wcs(30.0, n30), n30), rotated_wcs(30.0, n30)),
    }


def write_all(folder, display: np.ndarray) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": str(folder / "sky.png")}
    Image.fromarray(display.astype(np.uint8)).save(paths["png"])
    for name, (data, w) in variants(display).items():
        paths[name] = str(folder / f"{name}.fits")
        fits.PrimaryHDU(data.astype(np.float32), header=w.to_header()).writeto(paths[name])
    return paths


def items(paths: dict[str, str]) -> dict:
    out = {}
    for name, path in paths.items():
        item = read_task(next(file_tasks([path])))
        assert hasattr(item, "image"), f"{name}: {getattr(item, 'reason', '')}"
        out[name] = item
    return out


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a.ravel(), b.ravel())[0])


def check_orientation(paths: dict[str, str], encoder) -> dict:
    got = items(paths)
    png = got["png"].image
    thumbs = {name: images.png_image(it.thumbnail) for name, it in got.items()}
    for name in ("standard", "east-right", "rotated-90"):
        assert np.array_equal(got[name].image, png), f"{name}: the model input differs from the PNG's"
        assert "reprojected" not in got[name].preprocessing  # exact flips, no interpolation
    assert "reprojected" in got["rotated-30"].preprocessing
    vectors = encoder.images(np.stack([got[name].image for name in got]))
    cos = vectors @ vectors[0]
    assert np.all(cos[:4] >= 0.999), dict(zip(got, cos.round(4)))
    upside_down = png[::-1]
    correlations = {}
    for name in ("standard", "east-right", "rotated-90", "rotated-30"):
        same, flipped = rank_correlation(thumbs[name], png), rank_correlation(thumbs[name], upside_down)
        correlations[name] = (same, flipped)
        assert same >= (0.8 if name == "rotated-30" else 0.9), (name, same)
        assert same - flipped >= 0.3, (name, same, flipped)  # clearly not the upside-down copy
    return correlations


@pytest.fixture(scope="module")
def encoder(tiny_siglip_dir, one_thread):
    from radioalign.survey.encoder import load_encoder

    return load_encoder(tiny_siglip_dir, device="cpu", dtype="float32")


def test_the_test_variants_show_one_sky():
    """The construction itself: the F's top-left corner lies at one sky position in all."""
    display = letter_f()
    corner = display_wcs().pixel_to_world(45, N - 1 - 30)  # display (row 30, col 45)
    for name, (data, w) in variants(display).items():
        x, y = w.world_to_pixel(corner)
        assert data[int(round(float(y))), int(round(float(x)))] > 100, name


def test_letter_f_reaches_the_model_north_up_east_left(tmp_path, encoder):
    correlations = check_orientation(write_all(tmp_path, letter_f()), encoder)
    assert all(same > 0.9 for same, _ in correlations.values())


def test_real_mirabest_image_reaches_the_model_north_up_east_left(mirabest_f_archive, tmp_path, encoder):
    from radioalign.data import load_mirabest

    shutil.copy(mirabest_f_archive, tmp_path / mirabest_f_archive.name)  # extract in tmp, never in ../shared
    ds = load_mirabest("test", version="F", root=tmp_path, download=False)
    display = ds.images[-1].astype(float)  # an FR-II: two lobes, far from symmetric under a flip
    paths = write_all(tmp_path / "cutouts", display)
    check_orientation(paths, encoder)
    # the MiraBest loader's array, the PNG and the FITS files are one picture: the rule is shared
    assert np.array_equal(items({"png": paths["png"]})["png"].image, images.mirabest_recipe(display))


@pytest.mark.parametrize(
    "cdelt, pc, expected",
    [
        ((-1, 1), None, (False, True, False)),
        ((1, 1), None, (False, True, True)),
        ((-1, -1), None, (False, False, False)),
        ((-1, 1), [[0, -1], [-1, 0]], (True, False, True)),  # np.rot90 of the display image
    ],
)
def test_exact_orientation_from_the_wcs(cdelt, pc, expected):
    w = display_wcs()
    w.wcs.cdelt = [cdelt[0] * SCALE / 3600.0, cdelt[1] * SCALE / 3600.0]
    if pc is not None:
        w.wcs.pc = pc
    assert images.exact_orientation(images.sky_steps(w, (N, N))) == expected


def test_crota2_and_a_galactic_wcs_are_resampled():
    w = display_wcs()
    w.wcs.crota = [0.0, 30.0]
    assert images.exact_orientation(images.sky_steps(w, (N, N))) is None
    g = display_wcs()
    g.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    g.wcs.crval = [30.0, 10.0]
    assert images.exact_orientation(images.sky_steps(g, (N, N))) is None  # galactic north is not ICRS north


def test_a_fits_without_celestial_wcs_is_shown_as_fits_viewers_show_it(tmp_path):
    display = letter_f()
    fits.PrimaryHDU(display[::-1].astype(np.float32)).writeto(tmp_path / "nowcs.fits")
    item = read_task(next(file_tasks([tmp_path / "nowcs.fits"])))
    assert item.ra is None and "orientation unknown" in item.preprocessing
    assert np.array_equal(item.image, images.mirabest_recipe(display))


@pytest.mark.parametrize("system", ["ICRS", "FK5", "GALACTIC"])
def test_the_fast_orientation_path_agrees_with_astropy_skycoord(system):
    w = rotated_wcs(30.0, N)
    if system == "GALACTIC":
        w.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    else:
        w.wcs.radesys = system
    w.wcs.set()
    h = (N - 1) / 2.0
    points = w.pixel_to_world(np.array([h, h, h + 1]), np.array([h, h + 1, h])).icrs
    east, north = points[0].spherical_offsets_to(points[1:])
    expected = np.stack([east.arcsec, north.arcsec], axis=1)
    assert np.allclose(images.sky_steps(w, (N, N)), expected, atol=1e-5)  # 10 micro-arcsec on a 1.8 arcsec step
