"""Image files: every format reads back what was written, 16-bit stays 16-bit, ICC profiles survive
(where they fit the pixels), transparency and orientation are kept, CMYK becomes RGB through its profile,
and damaged, unreadable or unwritable files fail with a clear message."""

import os

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from invsr.errors import ImageFileError
from invsr.image_io import ImageFile, read_image, write_image


def gradient(dtype, channels):
    maximum = {np.uint8: 255, np.uint16: 65535}.get(dtype, 1.0)
    ramp = np.linspace(0, 1, 37 * 23, dtype=np.float64).reshape(23, 37)
    across = np.linspace(0, 1, 37)[None, :].repeat(23, axis=0)
    planes = [ramp, ramp[::-1], across, 1 - across][:channels]
    image = np.dstack(planes) * maximum
    return (np.rint(image) if dtype != np.float32 else image).astype(dtype)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_lossless_formats_round_trip_exactly(tmp_path, suffix, dtype, channels):
    pixels = gradient(dtype, channels)
    pixels = pixels[..., 0] if channels == 1 else pixels
    write_image(tmp_path / f"x{suffix}", ImageFile(pixels))
    back = read_image(tmp_path / f"x{suffix}").pixels
    assert back.dtype == dtype and back.shape == pixels.shape  # gray + alpha TIFF too, not widened to RGBA
    np.testing.assert_array_equal(back, pixels)


def test_float_tiff_round_trips_exactly(tmp_path):
    pixels = gradient(np.float32, 3)
    write_image(tmp_path / "x.tif", ImageFile(pixels))
    np.testing.assert_array_equal(read_image(tmp_path / "x.tif").pixels, pixels)


def test_png_rows_across_filter_bands_round_trip(tmp_path):
    noise = np.random.default_rng(0).integers(0, 65536, size=(150, 17, 3), dtype=np.uint16)
    write_image(tmp_path / "x.png", ImageFile(noise))
    np.testing.assert_array_equal(read_image(tmp_path / "x.png").pixels, noise)


def test_sixteen_bit_png_keeps_all_levels(tmp_path):
    ramp = np.arange(0, 65536, 16, dtype=np.uint16).reshape(128, 32)
    write_image(tmp_path / "x.png", ImageFile(np.dstack([ramp] * 3)))
    assert len(np.unique(read_image(tmp_path / "x.png").pixels)) == 4096


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_lossy_formats_are_close(tmp_path, suffix):
    pixels = gradient(np.uint8, 3)
    write_image(tmp_path / f"x{suffix}", ImageFile(pixels))
    back = read_image(tmp_path / f"x{suffix}").pixels
    assert back.shape == pixels.shape and np.abs(back.astype(int) - pixels).mean() < 3


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_survives(tmp_path, suffix):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    write_image(tmp_path / f"x{suffix}", ImageFile(gradient(np.uint8, 3), profile))
    assert read_image(tmp_path / f"x{suffix}").icc_profile == profile
    with Image.open(tmp_path / f"x{suffix}") as image:  # and other programs see it too
        assert image.info.get("icc_profile") == profile


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_deep_tiff_keeps_its_icc_profile(tmp_path, dtype, channels):
    """16-bit and float TIFFs (which Pillow cannot write) carry their profile, as tifffile reads it."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() if channels > 2 else gray_profile()
    pixels = gradient(dtype, channels)
    write_image(tmp_path / "x.tif", ImageFile(pixels, profile))
    with tifffile.TiffFile(tmp_path / "x.tif") as tiff:
        page = tiff.pages[0]
        assert page.tags["InterColorProfile"].value == profile
        np.testing.assert_array_equal(page.asarray(), pixels)
    assert read_image(tmp_path / "x.tif").icc_profile == profile


def gray_profile() -> bytes:
    """A gray ICC profile (lcms has none built in to hand out): the sRGB one with its header's colour space
    set to GRAY, which is all that decides whether it is written."""
    srgb = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    srgb[16:20] = b"GRAY"
    return bytes(srgb)


@pytest.mark.parametrize(
    "mode, dtype", [("L", np.uint8), ("LA", np.uint8), ("RGB", np.uint8), ("RGBA", np.uint8), ("I;16", np.uint16)]
)
def test_our_png_encoder_is_read_correctly_by_pillow(tmp_path, mode, dtype):
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "I;16": 1}[mode]
    pixels = gradient(dtype, channels)
    pixels = pixels[..., 0] if channels == 1 else pixels
    write_image(tmp_path / "x.png", ImageFile(pixels))
    with Image.open(tmp_path / "x.png") as image:
        assert image.mode == mode
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_png_notes_are_readable_text(tmp_path):
    write_image(tmp_path / "x.png", ImageFile(gradient(np.uint8, 3)), {"invsr": "NOT A REAL UPSCALE"})
    with Image.open(tmp_path / "x.png") as image:
        assert image.text["invsr"] == "NOT A REAL UPSCALE"


def test_jpeg_refuses_alpha_instead_of_dropping_it(tmp_path):
    with pytest.raises(ImageFileError, match="JPEG has no alpha"):
        write_image(tmp_path / "x.jpg", ImageFile(gradient(np.uint8, 4)))


def test_damaged_files_are_reported(tmp_path):
    write_image(tmp_path / "x.png", ImageFile(gradient(np.uint8, 3)))
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg at all")
    for name in ("cut.png", "junk.jpg"):
        with pytest.raises(ImageFileError, match=name):
            read_image(tmp_path / name)


def test_missing_and_unsupported_files_are_reported(tmp_path):
    with pytest.raises(ImageFileError, match="no such file"):
        read_image(tmp_path / "absent.png")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ImageFileError, match="unsupported file type .gif"):
        read_image(tmp_path / "x.gif")


def test_exif_orientation_is_applied_to_jpeg(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "x.jpg", exif=exif, quality=100)
    back = read_image(tmp_path / "x.jpg").pixels
    assert back.shape == (20, 10, 3) and back[:10].mean() > 200  # the white half is now on top


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_becomes_rgb_through_its_own_profile(tmp_path, suffix, gray_cmyk_profile):
    cyan = np.zeros((8, 8, 4), np.uint8)
    cyan[..., 0] = 255
    Image.fromarray(cyan, "CMYK").save(tmp_path / f"profiled{suffix}", icc_profile=gray_cmyk_profile)
    Image.fromarray(cyan, "CMYK").save(tmp_path / f"plain{suffix}")
    profiled, plain = read_image(tmp_path / f"profiled{suffix}"), read_image(tmp_path / f"plain{suffix}")
    assert profiled.pixels.shape == plain.pixels.shape == (8, 8, 3)
    red, green, blue = profiled.pixels[4, 4].astype(int)
    assert abs(red - green) < 8 and abs(green - blue) < 8  # gray, as the profile says
    assert plain.pixels[4, 4, 0] < 20 and plain.pixels[4, 4, 1] > 230  # cyan, by the plain formula
    assert profiled.icc_profile is None  # the pixels are sRGB now; the CMYK profile no longer describes them


def test_a_profile_of_another_colour_space_is_not_written(tmp_path, gray_cmyk_profile):
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, pixels, profile in (
        ("cmyk_on_rgb", gradient(np.uint8, 3), gray_cmyk_profile),
        ("lab_on_rgb", gradient(np.uint8, 3), lab),
        ("rgb_on_gray", gradient(np.uint8, 2), srgb),
    ):
        for suffix in (".png", ".jpg", ".webp", ".tif"):
            if suffix == ".jpg" and pixels.shape[2] == 2:
                continue
            notes = write_image(tmp_path / f"{name}{suffix}", ImageFile(pixels, profile))
            assert any("ICC profile is for" in note and "written without it" in note for note in notes), notes
            with Image.open(tmp_path / f"{name}{suffix}") as image:
                assert "icc_profile" not in image.info, (name, suffix)


@pytest.mark.parametrize("depth, dtype", [(8, np.uint8), (16, np.uint16)])
def test_gray_png_transparency_chunk_becomes_alpha(tmp_path, depth, dtype):
    gray = np.full((6, 9), 180 if depth == 8 else 40000, dtype)
    gray[:, :4] = 7
    Image.fromarray(gray).save(tmp_path / "x.png", transparency=7)
    pixels = read_image(tmp_path / "x.png").pixels
    assert pixels.shape == (6, 9, 2) and pixels.dtype == dtype
    np.testing.assert_array_equal(pixels[..., 0], gray)
    np.testing.assert_array_equal(pixels[..., 1], np.where(gray == 7, 0, np.iinfo(dtype).max))


def test_gray_alpha_tiff_keeps_its_alpha(tmp_path):
    pixels = gradient(np.uint8, 2)
    Image.fromarray(pixels, "LA").save(tmp_path / "x.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "x.tif").pixels, pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_exif_orientation_is_applied_to_png_and_tiff(tmp_path, suffix, orientation):
    pixels = gradient(np.uint8, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / f"x{suffix}", exif=exif)
    with Image.open(tmp_path / f"x{suffix}") as image:
        upright = np.asarray(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(read_image(tmp_path / f"x{suffix}").pixels, upright)


def test_jpeg_drops_an_alpha_that_is_fully_opaque(tmp_path):
    opaque = np.dstack([gradient(np.uint8, 3), np.full((23, 37), 255, np.uint8)])
    write_image(tmp_path / "x.jpg", ImageFile(opaque))
    assert read_image(tmp_path / "x.jpg").pixels.shape == (23, 37, 3)


@pytest.mark.parametrize("suffix, side", [(".webp", 16384), (".jpg", 65501)])
def test_sizes_over_a_format_limit_are_refused_with_what_to_do(tmp_path, suffix, side):
    with pytest.raises(ImageFileError, match=f"at most {side - 1} pixels per side.*write PNG or TIFF"):
        write_image(tmp_path / f"x{suffix}", ImageFile(np.zeros((1, side), np.uint8)))


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs a file that cannot be read (Linux)")
def test_unreadable_file_is_reported(tmp_path):
    (tmp_path / "x.png").symlink_to("/proc/self/mem")  # a file whose every read fails
    with pytest.raises(ImageFileError, match="x.png: cannot read the file"):
        read_image(tmp_path / "x.png")


def test_palette_png_with_transparency_becomes_rgba(tmp_path):
    pixels = gradient(np.uint8, 3)
    palette = Image.fromarray(pixels).quantize(colors=16)
    palette.save(tmp_path / "x.png", transparency=0)
    with Image.open(tmp_path / "x.png") as image:
        expected = np.asarray(image.convert("RGBA"))
    np.testing.assert_array_equal(read_image(tmp_path / "x.png").pixels, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiffs_of_other_programs_layouts_are_read(tmp_path, dtype):
    """Separate planes, big-endian, tiles, no compression: as tifffile writes them for another program."""
    pixels = gradient(dtype, 4)
    layouts = {
        "planar": dict(planarconfig="separate"),
        "big_endian": dict(byteorder=">", compression="zlib"),
        "tiled": dict(tile=(16, 16)),
    }
    for name, options in layouts.items():
        stored = np.moveaxis(pixels, -1, 0) if name == "planar" else pixels  # the planes, one after the other
        tifffile.imwrite(tmp_path / f"{name}.tif", stored, photometric="rgb", extrasamples=["unassalpha"], **options)
        np.testing.assert_array_equal(read_image(tmp_path / f"{name}.tif").pixels, pixels, err_msg=name)
