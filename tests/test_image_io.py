"""Image files: every format reads back what was written, 16-bit stays 16-bit, ICC profiles survive,
and damaged files fail with a clear message."""

import numpy as np
import pytest
from PIL import Image, ImageCms

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
    assert back.dtype == dtype
    if suffix == ".tif" and channels == 2:  # OpenCV has no gray + alpha TIFF: it comes back as RGBA
        back = back[..., [0, 3]]
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


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_icc_profile_survives(tmp_path, suffix):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    write_image(tmp_path / f"x{suffix}", ImageFile(gradient(np.uint8, 3), profile))
    assert read_image(tmp_path / f"x{suffix}").icc_profile == profile
    with Image.open(tmp_path / f"x{suffix}") as image:  # and other programs see it too
        assert image.info.get("icc_profile") == profile


@pytest.mark.parametrize("mode, dtype", [("L", np.uint8), ("LA", np.uint8), ("RGB", np.uint8), ("RGBA", np.uint8), ("I;16", np.uint16)])
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
