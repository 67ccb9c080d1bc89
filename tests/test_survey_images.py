"""The MiraBest recipe, the geometry and the readers of radioalign.survey, on images
built to known values."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")
pytest.importorskip("reproject")

from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from radioalign.survey import images, readers  # noqa: E402
from radioalign.survey.images import BadImageError, Picture  # noqa: E402


def sky_wcs(ra=150.0, dec=30.0, scale_arcsec=1.8, n=150, ctype=("RA---TAN", "DEC--TAN")) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = list(ctype)
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-scale_arcsec / 3600.0, scale_arcsec / 3600.0]
    return w


def background(n=150) -> np.ndarray:
    """Columns repeating -1, 0, +1: median 0 (a third of the pixels are 0, so blocks that
    replace a few pixels cannot move it) and standard deviation exactly sqrt(2/3) when
    whole periods are left."""
    xx = np.mgrid[:n, :n][1]
    return (xx % 3 - 1).astype(float)


# ---------------------------------------------------------------------------
# The recipe


def test_recipe_on_known_values():
    data = background(150)  # sigma = sqrt(2/3), so 3 sigma = 2.449
    # blocks 9 wide remove whole -1/0/+1 periods, so the clipped background keeps its statistics
    data[10:19, 0:9] = 10.0  # the peak -> 255
    data[30:39, 30:39] = 5.0  # -> 255 * 5 / 10 = 127.5 -> 128 (rint, half to even)
    data[50:59, 60:69] = 3.2  # -> 81.6 -> 82
    data[70:79, 90:99] = np.nan  # missing -> 0
    data[100, 100] = 2.5  # just above 3 sigma -> 63.75 -> 64
    data[110, 110] = 2.4  # just below 3 sigma -> 0
    median, sigma = images.background_sigma(data)
    assert median == 0.0
    assert sigma == pytest.approx(np.sqrt(2 / 3), rel=1e-3)  # the single 2.4 pixel is background
    out = images.mirabest_recipe(data)
    assert out.dtype == np.uint8 and out.shape == data.shape
    expected = np.zeros(data.shape, np.uint8)  # the +1 background lies below 3 sigma: zeroed
    expected[10:19, 0:9] = 255
    expected[30:39, 30:39] = 128
    expected[50:59, 60:69] = 82
    expected[100, 100] = 64
    assert np.array_equal(out, expected)


def test_recipe_threshold_follows_the_background_offset():
    data = background() + 100.0  # a survey that leaves an offset: the threshold is 100 + 3 sigma
    data[10:19, 9:18] = 110.0
    data[30:39, 30:39] = 105.0
    out = images.mirabest_recipe(data)
    expected = np.zeros(data.shape, np.uint8)
    expected[10:19, 9:18] = 255
    expected[30:39, 30:39] = 128  # (105 - 0) / 110 of 255 would be 243 if the offset were kept
    assert np.array_equal(out, expected)


def test_recipe_leaves_a_mirabest_png_unchanged():
    yy, xx = np.mgrid[:150, :150]
    blob = 255.0 * np.exp(-((yy - 70) ** 2 + (xx - 80) ** 2) / (2 * 8.0**2))
    png = np.where(blob >= 40, np.rint(blob), 0).astype(np.uint8)  # zero background, as MiraBest ships
    png[png.argmax() // 150, png.argmax() % 150] = 255
    assert np.array_equal(images.mirabest_recipe(png.astype(float)), png)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.full((20, 20), np.nan), "NaN"),
        (np.full((20, 20), 3.0), "constant"),
        (np.zeros(10), "2-D"),
    ],
)
def test_recipe_refuses_images_without_signal(data, message):
    with pytest.raises(BadImageError, match=message):
        images.mirabest_recipe(data)


# ---------------------------------------------------------------------------
# Geometry


def test_native_scale_is_kept_and_larger_images_are_centre_cropped():
    data = np.arange(160 * 170, dtype=float).reshape(160, 170)
    picture = Picture(data=data, wcs=sky_wcs(n=160), ra=150.0, dec=30.0)
    out, note = images.to_mirabest_geometry(picture)
    assert out.shape == (150, 150) and "crop" in note and "rows flipped" in note
    assert np.array_equal(out, data[::-1][5:155, 10:160])  # display order: FITS row 0 (south) at the bottom


def test_centre_crop_pads_small_images_with_nan():
    out = images.centre_crop(np.ones((100, 140)))
    assert out.shape == (150, 150)
    assert np.isnan(out[:25]).all() and np.isnan(out[125:]).all() and np.isnan(out[:, :5]).all()
    assert np.all(out[25:125, 5:145] == 1)


def test_reprojection_to_mirabest_geometry_puts_a_source_where_the_sky_says():
    scale = 3.0  # arcsec/px, not MiraBest's 1.8
    wcs = sky_wcs(ra=150.0, dec=30.0, scale_arcsec=scale, n=101)
    data = np.zeros((101, 101))
    data[50 + 15, 50] = 1.0  # 15 px north of the centre pixel = 45 arcsec
    picture = Picture(data=data, wcs=wcs, ra=150.0, dec=30.0)
    out, note = images.to_mirabest_geometry(picture)
    assert out.shape == (150, 150) and "reprojected" in note
    y, x = np.unravel_index(np.nanargmax(out), out.shape)
    # the output is centred on (150, 30) at 1.8 arcsec/px, north up: 45 arcsec north = 25 rows above
    # the centre (74.5, 74.5), towards row 0
    assert abs(y - (74.5 - 45.0 / 1.8)) <= 1.0 and abs(x - 74.5) <= 1.0
    footprint = target = images.target_wcs(150.0, 30.0)
    assert images.pixel_scale_arcsec(target) == pytest.approx((1.8, 1.8))
    assert footprint.pixel_shape == (150, 150)


def test_model_image_resizes_pictures_without_wcs():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (64, 80))
    data[20:40, 30:50] += 20
    image, record = images.model_image(Picture(data=data))
    assert image.shape == (150, 150) and image.dtype == np.uint8
    assert images.RECIPE in record and "resized" in record


def test_thumbnail_round_trip():
    image = np.random.default_rng(1).integers(0, 256, (150, 150), dtype=np.uint8)
    png = images.png_bytes(image)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(images.png_image(png), image)


# ---------------------------------------------------------------------------
# Readers


def write_fits(path, data, wcs: WCS | None = None, extra_axes: int = 0):
    header = wcs.to_header() if wcs is not None else fits.Header()
    if extra_axes:
        w = WCS(naxis=2 + extra_axes)
        w.wcs.ctype = [*wcs.wcs.ctype, "FREQ", "STOKES"][: 2 + extra_axes]
        w.wcs.crval = [*wcs.wcs.crval, 1.4e9, 1.0][: 2 + extra_axes]
        w.wcs.crpix = [*wcs.wcs.crpix, 1.0, 1.0][: 2 + extra_axes]
        w.wcs.cdelt = [*wcs.wcs.cdelt, 1e6, 1.0][: 2 + extra_axes]
        header = w.to_header()
        data = data.reshape((1,) * extra_axes + data.shape)
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(path, overwrite=True)
    return path


def test_fits_with_degenerate_freq_and_stokes_axes_is_a_2d_image(tmp_path):
    data = background(120)
    data[50:60, 50:70] = 30.0
    path = write_fits(tmp_path / "cube.fits", data, sky_wcs(ra=210.0, dec=-40.0, n=120), extra_axes=2)
    assert fits.getdata(path).shape == (1, 1, 120, 120)
    picture = readers.read_fits(path)
    assert picture.data.shape == (120, 120)
    assert picture.ra == pytest.approx(210.0, abs=1e-6) and picture.dec == pytest.approx(-40.0, abs=1e-6)
    assert any("degenerate" in note for note in picture.notes)


def test_fits_reader_skips_to_the_first_2d_image_hdu(tmp_path):
    data = background(40)
    data[10:20, 10:20] = 9.0
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.arange(5.0)), fits.ImageHDU(data, header=sky_wcs(n=40).to_header())])
    hdus.writeto(tmp_path / "multi.fits")
    picture = readers.read_fits(tmp_path / "multi.fits")
    assert np.array_equal(picture.data, data) and "HDU 2" in picture.notes


def test_fits_without_celestial_wcs_has_no_coordinates(tmp_path):
    path = write_fits(tmp_path / "plain.fits", background(50))
    picture = readers.read_fits(path)
    assert picture.wcs is None and picture.ra is None and "no celestial WCS" in picture.notes


@pytest.mark.parametrize("kind", ["truncated", "empty", "one_d", "all_nan", "text", "real_cube"])
def test_bad_files_raise_with_a_reason(tmp_path, kind):
    path = tmp_path / f"{kind}.fits"
    good = write_fits(tmp_path / "good.fits", background(), sky_wcs())
    if kind == "truncated":
        raw = good.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "one_d":
        fits.PrimaryHDU(np.arange(10.0)).writeto(path)
    elif kind == "all_nan":
        fits.PrimaryHDU(np.full((30, 30), np.nan)).writeto(path)
    elif kind == "text":
        path.write_text("not a FITS file\n" * 20)
    elif kind == "real_cube":  # a spectral axis with 3 channels is not 2-D
        fits.PrimaryHDU(np.zeros((3, 20, 20))).writeto(path)
    with pytest.raises(Exception) as info:
        readers.read_file(path)
    assert str(info.value)


def test_pictures_and_unsupported_files(tmp_path):
    from PIL import Image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    picture = readers.read_file(tmp_path / "colour.png")
    assert picture.data.shape == (40, 60) and picture.wcs is None and "RGB" in picture.notes[0]
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BadImageError, match="unsupported"):
        readers.read_file(tmp_path / "notes.txt")
    assert readers.source_name("J1234+5678.fits.gz") == "J1234+5678"


def test_cutouts_from_a_mosaic_land_on_the_catalogue_position(tmp_path):
    n, scale = 400, 1.8
    wcs = sky_wcs(ra=180.0, dec=10.0, scale_arcsec=scale, n=n)
    data = background(n)
    world = wcs.pixel_to_world(300, 120)  # a source off the mosaic's centre
    data[118:123, 298:303] = 50.0
    mosaic = write_fits(tmp_path / "mosaic.fits", data, wcs)
    readers.open_mosaic.cache_clear()
    ra, dec = world.ra.deg, world.dec.deg
    assert readers.best_mosaic([str(mosaic)], ra, dec) == str(mosaic)
    assert readers.best_mosaic([str(mosaic)], 20.0, -60.0) is None
    picture = readers.cut_from_mosaic(str(mosaic), ra, dec)
    out, _ = images.to_mirabest_geometry(picture)
    ys, xs = np.nonzero(out == 50.0)  # native scale: no interpolation, the block is copied
    assert out.shape == (150, 150) and len(ys) == 25
    assert abs(ys.mean() - 74.5) <= 1 and abs(xs.mean() - 74.5) <= 1


@pytest.mark.shared
def test_recipe_is_a_fixed_point_on_real_mirabest_images(mirabest_f_archive, tmp_path):
    """MiraBest images went through this recipe once: applying it again changes no pixel."""
    import shutil

    from radioalign.data.mirabest import load_mirabest

    shutil.copy(mirabest_f_archive, tmp_path / mirabest_f_archive.name)
    ds = load_mirabest("test", "F", root=tmp_path, download=False)
    assert len(ds.images) > 50
    changed = [i for i, im in enumerate(ds.images) if not np.array_equal(images.mirabest_recipe(im.astype(float)), im)]
    assert changed == []
