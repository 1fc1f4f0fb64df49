"""EXIF, XMP and IPTC of an input go into its upscale, in JPEG, PNG, TIFF and WebP, made true for it:
pixel dimensions, orientation 1 (it was applied), no thumbnails, the resolution kept (or scaled with
--keep-print-size), and how it was made (Software, XMP history). Inputs are made by real tools (Pillow;
exiftool where installed) and outputs read back by an independent reader: exiftool, else Pillow.
"""

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile
from PIL import ExifTags, Image, ImageCms

from invsr import __version__
from invsr.files import FileOptions, upscale_files
from invsr.image_io import ImageFile, read_image, write_image
from invsr.request import UpscaleRequest
from invsr_server.cli.commands import main

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    not EXIFTOOL, reason="IPTC is written and read back by exiftool (apt-get install libimage-exiftool-perl)"
)
SOFTWARE = f"InvSR for GIMP {__version__}"
FORMATS = [".jpg", ".png", ".tif", ".webp"]
XMP_PACKET = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:exif="http://ns.adobe.com/exif/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
 xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/" tiff:Orientation="6">
<exif:PixelXDimension>40</exif:PixelXDimension><exif:PixelYDimension>24</exif:PixelYDimension>
<dc:creator><rdf:Seq><rdf:li>Jane Doe</rdf:li></rdf:Seq></dc:creator>
<xmp:Thumbnails><rdf:Alt><rdf:li rdf:parseType="Resource"><xmpGImg:width>8</xmpGImg:width></rdf:li></rdf:Alt>
</xmp:Thumbnails>
</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


def camera_exif() -> Image.Exif:
    """What a camera writes: make, model, author, copyright, exposure, lens, capture date, GPS; turned 90
    degrees (orientation 6); 300 dpi."""
    from PIL.TiffImagePlugin import IFDRational

    exif = Image.Exif()
    exif.update({0x010F: "Canon", 0x0110: "EOS R5", 0x013B: "Jane Doe", 0x8298: "(c) 2025 Jane Doe", 0x0112: 6})
    exif.update({0x011A: IFDRational(300), 0x011B: IFDRational(300), 0x0128: 2})
    exif[0x8769] = {
        0x9000: b"0232",
        0x9101: b"\x01\x02\x03\x00",
        0xA000: b"0100",
        0xA001: 1,  # versions, YCbCr, sRGB
        0x9003: "2025:06:01 10:11:12",
        0x829A: IFDRational(1, 250),
        0x829D: IFDRational(56, 10),
        0x8827: 400,
        0xA434: "RF24-70mm F2.8 L IS USM",
        0xA002: 40,
        0xA003: 24,
        0x9214: (10, 10, 5, 5),
    }
    degrees = lambda d, m, s: (IFDRational(d), IFDRational(m), IFDRational(round(s * 100), 100))  # noqa: E731
    exif[0x8825] = {0: b"\x02\x03\x00\x00", 1: "N", 2: degrees(48, 51, 29.88), 3: "E", 4: degrees(2, 17, 40.2)}
    return exif


def stored_pixels() -> np.ndarray:
    """40 x 24 as stored; upright (turned by orientation 6) 24 x 40, bright at the top."""
    pixels = np.full((24, 40, 3), 60, np.uint8)
    pixels[:, :12] = 230
    return pixels


@pytest.fixture
def camera_jpeg(tmp_path):
    path = tmp_path / "camera.jpg"
    Image.fromarray(stored_pixels()).save(path, exif=camera_exif(), xmp=XMP_PACKET.encode(), dpi=(300, 300), quality=95)
    if EXIFTOOL:  # IPTC and a thumbnail, as a photo manager writes them
        thumbnail = tmp_path / "thumb.jpg"
        Image.fromarray(stored_pixels()[::4, ::4].copy()).save(thumbnail)
        iptc = ["-IPTC:By-line=Jane Doe", "-IPTC:Keywords=paris", "-IPTC:Keywords=tower"]
        iptc.append("-IPTC:CopyrightNotice=(c) Jane")
        exiftool(*iptc, f"-ThumbnailImage<={thumbnail}", path)
    return path


def exiftool(*args):
    return subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *map(str, args)], check=True, capture_output=True)


def read_back(path) -> dict:
    """Tags as exiftool names them (-G1 -n): by exiftool, or where it is absent by Pillow (EXIF and XMP)."""
    if EXIFTOOL:
        out = subprocess.run([EXIFTOOL, "-j", "-G1", "-a", "-n", str(path)], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)[0]
    with Image.open(path) as image:
        image.load()  # a PNG's eXIf may follow its pixels
        exif, xmp = image.getexif(), image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
        ifd, gps, thumbnail = exif.get_ifd(0x8769), exif.get_ifd(0x8825), exif.get_ifd(ExifTags.IFD.IFD1)
    names = {"Make": 0x010F, "Model": 0x0110, "Artist": 0x013B, "Copyright": 0x8298, "Orientation": 0x0112}
    names.update(Software=0x0131, XResolution=0x011A)
    found = {f"IFD0:{name}": exif[tag] for name, tag in names.items() if tag in exif}
    names = {"DateTimeOriginal": 0x9003, "LensModel": 0xA434, "ExifImageWidth": 0xA002, "ExifImageHeight": 0xA003}
    names.update(SubjectArea=0x9214, ISO=0x8827)
    found.update({f"ExifIFD:{name}": ifd[tag] for name, tag in names.items() if tag in ifd})
    if 2 in gps:
        found["GPS:GPSLatitude"] = sum(float(v) / 60**i for i, v in enumerate(gps[2]))
    if 0x0202 in thumbnail:
        found["IFD1:ThumbnailLength"] = thumbnail[0x0202]
    if xmp:
        found.update(_xmp_fields(xmp))
    return found


def _xmp_fields(packet) -> dict:
    packet = packet if isinstance(packet, bytes) else packet.encode()
    root = ET.fromstring(re.sub(rb"<\?xpacket[^>]*\?>", b"", packet).strip())
    ns = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "tiff": "http://ns.adobe.com/tiff/1.0/"}
    ns.update(stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#", xmp="http://ns.adobe.com/xap/1.0/")
    found = {}
    for description in root.iter(f"{{{ns['rdf']}}}Description"):
        orientation = description.get(f"{{{ns['tiff']}}}Orientation")
        orientation = orientation or description.findtext("tiff:Orientation", namespaces=ns)
        if orientation:
            found["XMP-tiff:Orientation"] = int(orientation)
        if description.find("xmp:Thumbnails", ns) is not None:
            found["XMP-xmp:ThumbnailsWidth"] = 8
    items = [item for item in root.iter(f"{{{ns['rdf']}}}li") if item.find("stEvt:action", ns) is not None]
    events = [
        (e.findtext("stEvt:softwareAgent", namespaces=ns), e.findtext("stEvt:parameters", namespaces=ns)) for e in items
    ]
    if events:
        found["XMP-xmpMM:HistorySoftwareAgent"], found["XMP-xmpMM:HistoryParameters"] = events[-1]
    return found


@pytest.fixture
def upscaled(camera_jpeg, pipeline, tmp_path, capsys):
    """The camera JPEG upscaled x2 (seed 3) into each format, the notes printed, and the report entries."""
    jobs = [(camera_jpeg, tmp_path / f"out{suffix}") for suffix in FORMATS]
    entries = upscale_files(pipeline, jobs, UpscaleRequest(scale=2, seed=3))
    assert all("error" not in entry for entry in entries), entries
    return {suffix: tmp_path / f"out{suffix}" for suffix in FORMATS}, capsys.readouterr().err, entries


@pytest.mark.parametrize("suffix", FORMATS)
def test_camera_exif_and_xmp_are_kept_and_made_true(upscaled, suffix):
    outputs, _, _ = upscaled
    tags = read_back(outputs[suffix])
    pixels = read_image(outputs[suffix]).pixels
    assert pixels.shape[:2] == (80, 48) and pixels[:20].mean() > pixels[-20:].mean() + 60  # upright, bright on top
    assert (tags["IFD0:Make"], tags["IFD0:Model"], tags["IFD0:Artist"]) == ("Canon", "EOS R5", "Jane Doe")
    assert tags["IFD0:Copyright"] == "(c) 2025 Jane Doe"
    assert tags["ExifIFD:DateTimeOriginal"] == "2025:06:01 10:11:12"
    assert tags["ExifIFD:LensModel"] == "RF24-70mm F2.8 L IS USM"
    assert tags["GPS:GPSLatitude"] == pytest.approx(48.8583, abs=1e-4)
    assert tags["IFD0:Orientation"] == 1 and tags["XMP-tiff:Orientation"] == 1  # applied, so upright as stored
    assert (tags["ExifIFD:ExifImageWidth"], tags["ExifIFD:ExifImageHeight"]) == (48, 80)  # TIFF too (issue 23)
    assert "ExifIFD:SubjectArea" not in tags  # a position in the source's pixels
    assert "IFD1:ThumbnailLength" not in tags and "XMP-xmp:ThumbnailsWidth" not in tags  # stale previews
    assert float(tags["IFD0:XResolution"]) == 300  # the resolution is kept
    assert tags["IFD0:Software"] == SOFTWARE and tags["XMP-xmpMM:HistorySoftwareAgent"] == SOFTWARE


def test_how_it_was_made_is_in_the_xmp_history_as_in_the_report(upscaled):
    outputs, _, entries = upscaled
    report = entries[0]
    parameters = read_back(outputs[".png"])["XMP-xmpMM:HistoryParameters"]
    assert "InvSR (Yue et al., CVPR 2025) on SD-Turbo, noise predictor noise_predictor_sd_turbo_v5" in parameters
    assert f"steps 1 (timesteps {report['timesteps'][0]})" in parameters and "seed 3" in parameters
    assert "24 x 40 to 48 x 80" in parameters and "colour fix wavelet" in parameters
    assert "NOT A REAL UPSCALE" in parameters  # tiny weights
    assert str(report["weights"]["noise_predictor"]) not in parameters  # a file name, not a path of this machine


@needs_exiftool
def test_iptc_is_kept_where_the_format_holds_it(upscaled):
    outputs, notes, _ = upscaled
    for suffix in (".jpg", ".png", ".tif"):
        tags = read_back(outputs[suffix])
        assert tags["IPTC:By-line"] == "Jane Doe" and tags["IPTC:Keywords"] == ["paris", "tower"], suffix
        assert tags["IPTC:CopyrightNotice"] == "(c) Jane"
    assert not any(key.startswith("IPTC:") for key in read_back(outputs[".webp"]))
    assert "out.webp: WebP holds no IPTC, so its IPTC fields are not kept (its EXIF and XMP are)" in notes


@needs_exiftool
def test_exiftool_finds_the_outputs_metadata_valid(upscaled, camera_jpeg):
    def warnings(path):
        command = [EXIFTOOL, "-validate", "-warning", "-a", "-j", str(path)]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        return set(np.atleast_1d(json.loads(out.stdout)[0].get("Warning", [])).tolist())

    # Pillow writes the byte strings of tags it has no type for as BYTE; EXIF has them UNDEFINED, as we write them
    assert warnings(camera_jpeg) == {"Non-standard format (int8u) for ExifIFD 0x9101 ComponentsConfiguration"}
    outputs, _, _ = upscaled
    for path in outputs.values():
        found = {w for w in warnings(path) if "GPSProcessingMethod" not in w}  # required in TIFF only, not by cameras
        if path.suffix == ".tif":  # EXIF reserves the pixel sizes for compressed files; kept in TIFF (issue 23), as
            # Photoshop keeps them; exiftool calls it minor, and nothing else may be
            found -= {
                f"[minor] ExifIFD tag 0xa00{n} ExifImage{side} is not allowed in TIFF"
                for n, side in ((2, "Width"), (3, "Height"))
            }
        assert found == set(), path.name


def test_the_written_metadata_reads_back_as_written(tmp_path, camera_jpeg):
    """read_image finds in each output format what write_image put there."""
    image = read_image(camera_jpeg)
    assert image.metadata.dpi == (300, 300) and b"Jane Doe" in image.metadata.xmp
    written = exif_tags(image.metadata.exif)
    assert written[0x010F] == "Canon" and written[0xA434] == "RF24-70mm F2.8 L IS USM" and 0x0202 not in written
    for suffix in FORMATS:
        write_image(tmp_path / f"x{suffix}", ImageFile(image.pixels, None, image.metadata))
        back = read_image(tmp_path / f"x{suffix}").metadata
        assert back.dpi == pytest.approx((300, 300), abs=0.01) and back.xmp == image.metadata.xmp, suffix
        assert back.iptc == (None if suffix == ".webp" else image.metadata.iptc), suffix
        tags = exif_tags(back.exif)
        if suffix == ".tif":  # how a compressed file packs its components is left out of a TIFF (its tags say)
            written = {tag: v for tag, v in written.items() if tag != 0x9101}
        compared = [tag for tag in written if tag != 0x0213]  # YCbCrPositioning: added for JPEG
        assert {tag: tags.get(tag) for tag in compared} == {tag: written[tag] for tag in compared}, suffix


def exif_tags(stream: bytes) -> dict:
    """IFD0's tags and the EXIF directory's, by number (Pillow)."""
    exif = Image.Exif()
    exif.load(stream)
    tags = {tag: value for tag, value in exif.items() if tag not in (0x8769, 0x8825)}
    return {**tags, **exif.get_ifd(0x8769)}


def icc_rgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_strip_metadata_writes_none_but_keeps_the_colour_profile(tmp_path, camera_jpeg, tiny_weights):
    source = tmp_path / "profiled.jpg"
    with Image.open(camera_jpeg) as image:
        image.save(source, exif=image.getexif(), xmp=image.info["xmp"], icc_profile=icc_rgb(), dpi=(300, 300))
    profile = read_image(source).icc_profile
    assert profile is not None
    for suffix in (".jpg", ".png"):
        out = tmp_path / f"stripped{suffix}"
        weights = str(tiny_weights.noise_predictor.parent)
        options = ["--strip-metadata", "--weights", weights, "--device", "cpu"]
        assert main(["upscale", str(source), "-o", str(out), *options]) == 0
        tags = read_back(out)
        groups = ("IFD0", "ExifIFD", "GPS", "IFD1", "IPTC")
        assert not [key for key in tags if key.split(":")[0] in groups or key.startswith("XMP")], tags
        assert read_image(out).icc_profile == profile


def test_a_tiff_output_keeps_the_colour_profile_and_the_exif_sizes(tmp_path, camera_jpeg, pipeline):
    """Issue 23: a TIFF output lost the input's ICC profile (a 16-bit tagged TIFF became untagged, while
    PNG kept it) and its ExifImageWidth/Height. Read back by tifffile, and by exiftool where installed."""
    profile = icc_rgb()
    photo = tmp_path / "profiled.jpg"
    with Image.open(camera_jpeg) as image:
        image.save(photo, exif=image.getexif(), icc_profile=profile, quality=95)
    deep = tmp_path / "deep.tif"  # written by tifffile itself, as another program would
    pixels = (np.random.default_rng(2).random((24, 40, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(deep, pixels, photometric="rgb", iccprofile=profile, metadata=None)
    jobs = [(photo, tmp_path / "photo.tif"), (deep, tmp_path / "deep-out.tif")]
    assert all("error" not in entry for entry in upscale_files(pipeline, jobs, UpscaleRequest(scale=2)))
    for (_, out), depth, size in zip(jobs, (np.uint8, np.uint16), ((48, 80), (80, 48)), strict=True):
        with tifffile.TiffFile(out) as tiff:
            page = tiff.pages[0]
            assert page.tags["InterColorProfile"].value == profile, out.name
            assert page.dtype == depth and (page.imagewidth, page.imagelength) == size, out.name
        assert read_image(out).icc_profile == profile
    with tifffile.TiffFile(tmp_path / "photo.tif") as tiff:
        exif = tiff.pages[0].tags["ExifTag"].value
        assert (exif["PixelXDimension"], exif["PixelYDimension"]) == (48, 80)  # ExifImageWidth/Height
    if EXIFTOOL:
        tags = read_back(tmp_path / "photo.tif")
        assert (tags["ExifIFD:ExifImageWidth"], tags["ExifIFD:ExifImageHeight"]) == (48, 80)
        for _, out in jobs:
            extracted = subprocess.run([EXIFTOOL, "-b", "-ICC_Profile", str(out)], check=True, capture_output=True)
            assert extracted.stdout == profile, out.name


def test_keep_print_size_scales_the_resolution_with_the_pixels(tmp_path, camera_jpeg, tiny_weights):
    """By default the DPI is kept (test_camera_exif_and_xmp_are_kept_and_made_true)."""
    weights = str(tiny_weights.noise_predictor.parent)
    for suffix in (".png", ".jpg"):
        scaled = tmp_path / f"scaled{suffix}"
        options = ["--scale", "2", "--keep-print-size", "--weights", weights, "--device", "cpu"]
        assert main(["upscale", str(camera_jpeg), "-o", str(scaled), *options]) == 0
        assert float(read_back(scaled)["IFD0:XResolution"]) == 600
        assert read_image(scaled).metadata.dpi == pytest.approx((600, 600))
        if EXIFTOOL and suffix == ".png":  # the PNG's own resolution chunk says the same
            assert read_back(scaled)["PNG-pHYs:PixelsPerUnitX"] == round(600 / 0.0254)
        if EXIFTOOL and suffix == ".jpg":  # and so does the JPEG's JFIF header
            assert read_back(scaled)["JFIF:XResolution"] == 600


@needs_exiftool
@pytest.mark.parametrize("source_suffix, depth", [(".png", np.uint16), (".tif", np.uint16), (".webp", np.uint8)])
def test_files_tagged_by_exiftool_keep_their_tags(tmp_path, pipeline, source_suffix, depth):
    """exiftool's own way of storing each kind in each format (PNG: eXIf, iTXt and a zTXt raw IPTC
    profile; TIFF: tags, IPTC as 32-bit words), read by us and written again."""
    source = tmp_path / f"tagged{source_suffix}"
    pixels = (np.random.default_rng(1).random((20, 30, 3)) * np.iinfo(depth).max).astype(depth)
    write_image(source, ImageFile(pixels))
    tags = ["-EXIF:Make=Nikon", "-EXIF:Orientation#=3", "-EXIF:DateTimeOriginal=2024:01:02 03:04:05"]
    tags += ["-XMP-dc:Title=Harbour", "-IPTC:City=Brest"]
    exiftool(*tags, "-EXIF:XResolution=240", "-EXIF:YResolution=240", "-EXIF:ResolutionUnit=inches", source)
    before = read_back(source)
    outputs = [tmp_path / f"out{suffix}" for suffix in (".png", ".tif", ".jpg")]
    upscale_files(pipeline, [(source, out) for out in outputs], UpscaleRequest(scale=2))
    for out in outputs:
        tags = read_back(out)
        assert tags["IFD0:Make"] == "Nikon" and tags["ExifIFD:DateTimeOriginal"] == "2024:01:02 03:04:05", out.name
        assert tags["XMP-dc:Title"] == "Harbour" and tags["IFD0:Orientation"] == 1, out.name
        assert float(tags["IFD0:XResolution"]) == 240, out.name
        assert tags.get("IPTC:City") == ("Brest" if "IPTC:City" in before else None), out.name
        assert read_image(out).pixels.shape == (40, 60, 3)


def test_exif_too_large_for_a_jpeg_segment_loses_its_maker_note_and_says_so(tmp_path, pipeline, capsys):
    source = tmp_path / "big.png"
    exif = camera_exif()
    exif[0x8769] = {**exif[0x8769], 0x927C: bytes(70_000)}  # a maker note of 70 KB
    Image.fromarray(stored_pixels()).save(source, exif=exif)
    (entry,) = upscale_files(pipeline, [(source, tmp_path / "out.jpg")], UpscaleRequest(scale=1))
    assert "error" not in entry
    err = capsys.readouterr().err
    assert "out.jpg: the EXIF is larger than a JPEG segment holds; its maker note is left out" in err
    tags = read_back(tmp_path / "out.jpg")
    assert tags["IFD0:Make"] == "Canon" and tags["ExifIFD:LensModel"] == "RF24-70mm F2.8 L IS USM"
    assert "ExifIFD:MakerNoteUnknownBinary" not in tags and "ExifIFD:MakerNote" not in tags


def test_a_file_without_metadata_gets_only_the_provenance(tmp_path, pipeline, small_photo):
    source = tmp_path / "plain.png"
    write_image(source, ImageFile(small_photo))
    upscale_files(pipeline, [(source, tmp_path / "out.png")], UpscaleRequest(scale=1), FileOptions())
    tags = read_back(tmp_path / "out.png")
    assert tags["IFD0:Software"] == SOFTWARE and "IFD0:XResolution" not in tags and "IFD0:Make" not in tags
