"""PNG written band by band (issue 24, invsr/png_bands.py): the samples libpng decodes are those given, for
every pixel type and channel layout and bands of any heights; the filters are libpng's adaptive choice; the
metadata reads back as that of a whole image, where libpng, Pillow and exiftool look for it; an abandoned
file leaves nothing; and the command line's PNG is the library's result."""

import json
import re
import shutil
import subprocess
import zlib

import imagecodecs
import numpy as np
import pytest
from PIL import Image, ImageCms

from invsr.image_io import ImageFile, read_image, to_integer, write_image
from invsr.metadata import Metadata, Provenance, for_output, png_chunks
from invsr.png_bands import PngBands, filter_rows
from invsr.request import UpscaleRequest
from invsr.wire.errors import ImageFileError

EXIFTOOL = shutil.which("exiftool")
BANDS = (5, 23, 1, 40, 2)  # heights that are no multiple of anything, repeated to the bottom
WARNING = {"invsr": "NOT A REAL UPSCALE: a test"}


def samples(photo: np.ndarray, dtype, channels: int) -> np.ndarray:
    """A 61 x 37 crop of the photo (an odd width) with noise, a flat block, a ramp and a checkerboard, so that
    every filter is chosen somewhere; alpha with clear, opaque and partial areas; float beyond [0, 1] in places."""
    rng = np.random.default_rng(channels)
    rgb = photo[10:71, 20:57].astype(np.float64) / 255
    rgb[40:50] = 0.25  # flat
    rgb[50:] = np.linspace(0, 1, 37)[None, :, None]  # a ramp
    rgb[:20] += rng.normal(0, 0.05, rgb[:20].shape)
    alpha = np.linspace(0, 1, 61)[:, None, None].repeat(37, axis=1)
    layers = {1: rgb[..., :1], 2: np.dstack([rgb[..., :1], alpha]), 3: rgb, 4: np.dstack([rgb, alpha])}[channels]
    layers[35:37] = (np.indices((2, 37)).sum(axis=0) % 2)[..., None]  # black and white: None filters it best
    if dtype == np.float32:
        layers[:3] *= 1.2  # values beyond 1: clipped, with a note
        return layers.astype(np.float32)[..., 0] if channels == 1 else layers.astype(np.float32)
    top = np.iinfo(dtype).max
    out = np.clip(np.rint(layers * top), 0, top).astype(dtype)
    return out[..., 0] if channels == 1 else out


def written_in_bands(path, pixels, metadata=None, icc=None, final=None, notes=None):
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    writer = PngBands(path, pixels.shape[0], pixels.shape[1], channels, pixels.dtype, icc, metadata)
    top, heights = 0, iter(BANDS * 100)
    while top < pixels.shape[0]:
        rows = pixels[top : top + next(heights)]
        writer.add(top, rows)
        top += rows.shape[0]
        assert not path.exists()  # put in place only when finished
    return writer.finish(final, notes)


def filter_types(data: bytes, height: int, row_bytes: int) -> set[int]:
    stream = zlib.decompress(b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT"))
    return {stream[row * (row_bytes + 1)] for row in range(height)}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_libpng_decodes_the_samples_given_in_bands(tmp_path, photo, dtype, channels):
    pixels = samples(photo, dtype, channels)
    notes = written_in_bands(tmp_path / "out.png", pixels)
    data = (tmp_path / "out.png").read_bytes()
    stored = to_integer(pixels, np.uint16) if dtype == np.float32 else pixels  # as image_io wrote floats before
    before = imagecodecs.png_decode(imagecodecs.png_encode(stored, level=6))  # libpng's whole-image encode
    decoded = imagecodecs.png_decode(data)
    assert decoded.dtype == stored.dtype and decoded.tobytes() == stored.tobytes() == before.tobytes()
    assert read_image(tmp_path / "out.png").pixels.tobytes() == stored.tobytes()
    if dtype == np.uint8:  # and Pillow, another decoder
        assert np.asarray(Image.open(tmp_path / "out.png")).tobytes() == stored.tobytes()
    assert len(filter_types(data, 61, stored[0].nbytes)) >= 3  # rows filtered from those above, across bands too
    clipped = "out.png holds values from 0 to 1 only, so values above 1 or below 0 are clipped; write TIFF to keep them"
    assert notes == ([f"note: {clipped}"] if dtype == np.float32 else [])
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def reference_filter(rows: np.ndarray, prior: np.ndarray, bpp: int) -> np.ndarray:
    """libpng's choice, row by row in plain Python: the least sum of |byte as int8| over the five filters,
    the first on ties (PNG specification 9.2 to 9.4)."""
    out = []
    for row in rows.astype(int):
        up = prior.astype(int)
        left = np.concatenate([np.zeros(bpp, int), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, int), up[:-bpp]])
        paeth = []
        for a, b, c in zip(left, up, up_left, strict=True):
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            paeth.append(a if pa <= pb and pa <= pc else b if pb <= pc else c)
        predictions = [0 * row, left, up, (left + up) // 2, np.array(paeth)]
        filtered = [(row - p) % 256 for p in predictions]
        costs = [int(np.minimum(f, 256 - f).sum()) for f in filtered]
        best = costs.index(min(costs))
        out.append(np.concatenate([[best], filtered[best]]))
        prior = row
    return np.array(out, np.uint8)


@pytest.mark.parametrize("bpp", [1, 3, 8])
def test_each_row_gets_libpngs_adaptive_filter(bpp):
    rng = np.random.default_rng(bpp)
    smooth = np.cumsum(rng.integers(-3, 4, (12, 9 * bpp)), axis=1) % 256
    rows = np.concatenate([smooth, rng.integers(0, 256, (4, 9 * bpp)), np.full((3, 9 * bpp), 7)]).astype(np.uint8)
    prior = rng.integers(0, 256, 9 * bpp).astype(np.uint8)
    expected = reference_filter(rows, prior, bpp)
    assert len(set(expected[:, 0])) >= 3
    assert filter_rows(rows, prior, bpp).tobytes() == expected.tobytes()


@pytest.fixture
def camera_metadata():
    """What a camera's file says, and that metadata made true for a 4 x upscale at the start of a job (its
    provenance not yet known) and at its end."""
    exif = Image.Exif()
    exif.update({0x010F: "Canon", 0x0110: "EOS R5", 0x0112: 6, 0x013B: "Jane Doe"})
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>'
    read = Metadata(exif.tobytes()[6:], xmp + b"</x:xmpmeta>", b"\x1c\x02\x50\x00\x08Jane Doe", (300.0, 300.0))
    at_start = for_output(read, (37, 61), (148, 244), Provenance("InvSR for GIMP", ""))
    job = Provenance("InvSR for GIMP 9.9.9", "InvSR, seed 3, steps 1, tile 128, overlap 16; " + "x" * 600)
    return at_start, for_output(read, (37, 61), (148, 244), job)


def srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exiftool_tags(path) -> dict:
    """Every tag exiftool finds (-G1 names), less those of the file system, and its warnings (-validate)."""
    run = lambda *args: json.loads(subprocess.run([EXIFTOOL, "-j", *args, str(path)], capture_output=True).stdout)[0]  # noqa: E731
    tags = {key: value for key, value in run("-G1", "-a").items() if not key.startswith(("System:", "SourceFile"))}
    return dict(tags, warnings=run("-validate", "-warning", "-a").get("Warning", []))


def without_padding(xmp: bytes) -> bytes:
    return re.sub(rb"\s+(<\?xpacket end)", rb"\n\1", xmp)


def test_the_metadata_reads_back_as_a_whole_images(tmp_path, photo, camera_metadata):
    """The job's provenance, known only at the end, is where a whole image's is (EXIF and XMP before the
    pixels), the XMP packet padded to the room kept for it; everything else byte for byte."""
    at_start, final = camera_metadata
    pixels = samples(photo, np.uint8, 3)
    whole_notes = write_image(tmp_path / "whole.png", ImageFile(pixels, srgb(), final), WARNING)
    band_notes = written_in_bands(tmp_path / "bands.png", pixels, at_start, srgb(), final, WARNING)
    assert band_notes == whole_notes == []
    whole, bands = read_image(tmp_path / "whole.png"), read_image(tmp_path / "bands.png")
    assert bands.pixels.tobytes() == whole.pixels.tobytes() and bands.icc_profile == whole.icc_profile == srgb()
    assert bands.metadata.exif == whole.metadata.exif and b"InvSR for GIMP 9.9.9" in bands.metadata.exif
    assert (
        (bands.metadata.iptc, bands.metadata.dpi)
        == (whole.metadata.iptc, whole.metadata.dpi)
        == (final.iptc, final.dpi)
    )
    assert without_padding(bands.metadata.xmp) == whole.metadata.xmp == final.xmp
    kinds = [kind for kind, _ in png_chunks((tmp_path / "bands.png").read_bytes())]
    assert kinds.index(b"IDAT") > max(kinds.index(kind) for kind in (b"iCCP", b"pHYs", b"eXIf", b"iTXt", b"tEXt"))
    with Image.open(tmp_path / "bands.png") as image:
        assert image.text["invsr"] == WARNING["invsr"] and image.info["icc_profile"] == srgb()
        assert image.getexif()[0x0131] == "InvSR for GIMP 9.9.9" and image.info["dpi"] == pytest.approx(
            (300, 300), abs=0.01
        )
    if EXIFTOOL:  # the same tags, and no warning
        by_band, by_whole = exiftool_tags(tmp_path / "bands.png"), exiftool_tags(tmp_path / "whole.png")
        assert by_band == by_whole
        assert by_band["IFD0:Software"] == "InvSR for GIMP 9.9.9" and by_band["IPTC:By-line"] == "Jane Doe"
        assert by_band["warnings"] == []


def test_notes_without_metadata_follow_the_pixels(tmp_path, photo):
    """With no EXIF or XMP to take up the slack, the run's notes go after the pixels, as text may."""
    pixels = samples(photo, np.uint16, 2)
    written_in_bands(tmp_path / "out.png", pixels, notes=WARNING)
    kinds = [kind for kind, _ in png_chunks((tmp_path / "out.png").read_bytes())]
    assert kinds == [b"IHDR", b"IDAT", b"tEXt", b"IEND"]
    with Image.open(tmp_path / "out.png") as image:
        image.load()
        assert image.text == WARNING


def test_metadata_that_outgrows_its_room_is_refused_and_leaves_nothing(tmp_path, photo, camera_metadata):
    at_start, final = camera_metadata
    huge = for_output(at_start, (1, 1), (1, 1), Provenance("InvSR", "y" * 20000))
    with pytest.raises(ImageFileError, match="cannot fill the .* bytes kept for them before the pixels"):
        written_in_bands(tmp_path / "out.png", samples(photo, np.uint8, 3), at_start, None, huge)
    assert list(tmp_path.iterdir()) == []


def test_a_png_abandoned_half_way_leaves_nothing(tmp_path):
    writer = PngBands(tmp_path / "out.png", 200, 40, 3, np.uint8, None, None)
    writer.add(0, np.zeros((100, 40, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == [writer.partial.name]
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_failing_upscale_leaves_no_png(tmp_path, pipeline, small_photo):
    from invsr.files import upscale_file

    source = tmp_path / "in.png"
    write_image(source, ImageFile(small_photo))

    class FailsHalfWay:
        def upscale(self, image, request, progress=None, on_band=None):
            def band(top, rows):
                on_band(top, rows)  # written: the partial file is there
                raise RuntimeError("the device went away")

            return pipeline.upscale(image, request, progress, on_band=band)

    with pytest.raises(RuntimeError, match="went away"):
        upscale_file(FailsHalfWay(), source, tmp_path / "out.png", UpscaleRequest(tile=32, overlap=8))
    assert [p.name for p in tmp_path.iterdir()] == ["in.png"]


def test_the_command_lines_png_is_the_librarys_result(tmp_path, small_photo, pipeline, tiny_weights):
    """`invsr upscale` to PNG, by bands, gives the pixels of the whole result (as before bands) and says in
    the file that it is not a real upscale."""
    from invsr_server.cli.commands import main

    rgba = np.dstack([small_photo, np.linspace(0, 255, small_photo.shape[1]).astype(np.uint8)[None].repeat(24, 0)])
    write_image(tmp_path / "in.png", ImageFile(rgba))
    args = ["--seed", "5", "--steps", "2", "--tile", "32", "--overlap", "8"]
    weights = ["--weights", str(tiny_weights.noise_predictor.parent), "--device", "cpu"]
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), *args, *weights]) == 0
    expected = pipeline.upscale(rgba, UpscaleRequest(seed=5, steps=2, tile=32, overlap=8)).image
    assert read_image(tmp_path / "out.png").pixels.tobytes() == expected.tobytes()
    with Image.open(tmp_path / "out.png") as image:
        assert "NOT A REAL UPSCALE" in image.text["invsr"]
