"""What a photo's file says besides its pixels (EXIF, XMP, IPTC, resolution): read from JPEG, PNG, TIFF
and WebP, made true for the upscaled picture, and put where each output format holds it.

Kept: IFD0's description of the picture (camera, author, copyright, dates, descriptions, rating), the
whole EXIF and GPS sub-directories (exposure, lens, capture date, maker notes, position), XMP and IPTC.
Made true: pixel dimensions, orientation (applied on reading, so 1, upright), resolution (DPI), and
Software, with the upscale's parameters appended to XMP's history. Dropped: thumbnails (EXIF IFD1, XMP
xmp:Thumbnails), pixel positions of the source (SubjectArea, SubjectLocation), and the other tags of a
TIFF's own directory (they describe its encoding). Where a format holds less (WebP has no IPTC; a JPEG
segment holds at most 64 KB), `fitted` says what was left out.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import warnings
import zlib
from fractions import Fraction

import numpy as np
from PIL.ExifTags import IFD, Base
from PIL.TiffImagePlugin import PHOTOSHOP_CHUNK

from . import xmp as xmp_packet
from .tiff_tags import WINDOWS_TAGS, bytes_as_undefined

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODEL = "InvSR (Yue et al., CVPR 2025) on SD-Turbo"  # as the plug-in's parasite names it
EXIF_IFD, GPS_IFD, INTEROP_IFD, MAKER_NOTE = IFD.Exif, IFD.GPSInfo, IFD.Interop, Base.MakerNote
ORIENTATION, X_RESOLUTION, Y_RESOLUTION = Base.Orientation, Base.XResolution, Base.YResolution
RESOLUTION_UNIT, SOFTWARE, YCBCR_POSITIONING = Base.ResolutionUnit, Base.Software, Base.YCbCrPositioning
PIXEL_X, PIXEL_Y = Base.ExifImageWidth, Base.ExifImageHeight
XMP_TAG, IPTC_TAG, PHOTOSHOP_TAG = Base.XMLPacket, Base.IPTCNAA, PHOTOSHOP_CHUNK  # the last: image resources
# EXIF's tags for compressed files only, left out of a TIFF: how the components and bits are packed (the
# TIFF's own tags say it) and the interoperability directory. The pixel dimensions are written, as Photoshop does.
_NOT_IN_TIFF = {Base.ComponentsConfiguration, Base.CompressedBitsPerPixel, INTEROP_IFD}
_IFD0_KEPT = {
    Base.ProcessingSoftware,
    Base.DocumentName,
    Base.ImageDescription,
    Base.Make,
    Base.Model,
    ORIENTATION,
    X_RESOLUTION,
    Y_RESOLUTION,
    RESOLUTION_UNIT,
    SOFTWARE,
    Base.DateTime,
    Base.Artist,
    Base.HostComputer,
    Base.Rating,
    Base.RatingPercent,
    Base.Copyright,
    *WINDOWS_TAGS,  # title, comment, author, keywords, subject
}
SUBJECT_AREA = 0x9214  # EXIF 2.2's; PIL.ExifTags names SubjectLocation but not this one
_EXIF_DROPPED = {SUBJECT_AREA, Base.SubjectLocation}  # positions in the source's pixels
_INCH, _CENTIMETRE = 2, 3  # EXIF and TIFF resolution units
_JPEG_SEGMENT = 65533  # bytes in a JPEG marker segment after its length field


@dataclasses.dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None  # a TIFF stream, from its byte-order mark: IFD0 and its EXIF and GPS directories
    xmp: bytes | None = None  # an XMP packet
    iptc: bytes | None = None  # IPTC-IIM datasets (each starts with 0x1C)
    dpi: tuple[float, float] | None = None  # horizontal and vertical pixels per inch, where the file states it


@dataclasses.dataclass(frozen=True)
class Provenance:
    """How an upscale was made, for the output's metadata: EXIF Software and an XMP history event."""

    software: str  # "InvSR for GIMP 0.1.0"
    parameters: str  # model, weights, steps, timesteps, seed, colour fix, tiling, device, in words

    @classmethod
    def of(cls, report: dict, version: str) -> Provenance:
        """From an upscale's report (the library's or a worker's), as the plug-in's parasite records it."""
        tiling, weights = report.get("tiling") or {}, report.get("weights") or {}
        noise_predictor = str(weights.get("noise_predictor", "")).replace("\\", "/").rsplit("/", 1)[-1]  # not the path
        (w0, h0), (w1, h1) = report.get("input_size") or ("?", "?"), report.get("output_size") or ("?", "?")
        timesteps = ", ".join(str(t) for t in report.get("timesteps") or [])
        parts = [
            f"{MODEL}" + (f", noise predictor {noise_predictor}" if noise_predictor else ""),
            f"{w0} x {h0} to {w1} x {h1}",
            f"steps {report.get('steps')} (timesteps {timesteps})",
            f"seed {report.get('seed')}",
            f"colour fix {report.get('color_fix')}",
            f"tile {tiling.get('tile')}, overlap {tiling.get('overlap')}",
            f"{report.get('device')}, {report.get('dtype')}",
        ]
        if weights.get("tiny_random"):
            parts.append("NOT A REAL UPSCALE: random tiny test weights")
        return cls(f"InvSR for GIMP {report.get('version') or version}", "; ".join(parts))


# --- reading ------------------------------------------------------------------------------------------


def read_metadata(data: bytes) -> Metadata:
    """EXIF, XMP, IPTC and resolution of an image file's bytes; what is missing or damaged is None (damaged
    metadata costs the metadata, never the picture)."""
    if data[:8] == PNG_SIGNATURE:
        return _read_png(data)
    from PIL import Image

    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:  # headers only
            warnings.simplefilter("ignore")  # Pillow warns of tags it takes as damaged (an IPTC tag of many words)
            exif = _quietly(lambda: _canonical_exif(image.getexif()))
            xmp = image.info.get("xmp") or None
            iptc = _quietly(lambda: _iptc_of(image, data))
            dpi = _quietly(lambda: _container_dpi(image)) or _exif_dpi(exif)
    except Exception:  # Pillow cannot parse these headers (tifffile or libpng may still read the pixels)
        return Metadata()
    return Metadata(exif, bytes(xmp) if isinstance(xmp, (bytes, bytearray)) else None, iptc, dpi)


def _quietly(read):
    try:
        return read()
    except Exception:  # Pillow's EXIF and TIFF parsers raise many kinds on damaged directories
        return None


def _read_png(data: bytes) -> Metadata:
    texts, exif, dpi = {}, None, None
    for kind, body in png_chunks(data):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            key, text = _quietly(lambda: _png_text(kind, body)) or (None, None)  # noqa: B023 (called at once)
            texts.setdefault(key, text)
        elif kind == b"eXIf":
            exif = body
        elif kind == b"pHYs" and len(body) == 9 and body[8] == 1:  # pixels per metre
            dpi = tuple(round(v * 0.0254, 2) for v in struct.unpack(">II", body[:8]))
    exif = exif or _raw_profile(texts.get("Raw profile type exif") or texts.get("Raw profile type APP1"))
    exif = _quietly(lambda: _canonical_exif(_exif_object(exif))) if exif else None
    xmp = texts.get("XML:com.adobe.xmp") or _raw_profile(texts.get("Raw profile type xmp"))
    iptc = _iim(_raw_profile(texts.get("Raw profile type iptc")))
    return Metadata(exif, xmp or None, iptc, dpi or _exif_dpi(exif))


def png_chunks(data: bytes):
    """(kind, body) of each chunk of a PNG file, in order, up to IEND (a walk from length to length)."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        yield kind, data[offset + 8 : offset + 8 + length]
        if kind == b"IEND":
            return
        offset += 12 + length


def _png_text(kind: bytes, body: bytes) -> tuple[str, bytes]:
    key, _, rest = body.partition(b"\0")
    if kind == b"zTXt":
        rest = zlib.decompress(rest[1:])
    elif kind == b"iTXt":  # compressed?, method, language\0, translated keyword\0, text
        compressed, rest = rest[0], rest[2:]
        rest = rest.split(b"\0", 2)[2]
        rest = zlib.decompress(rest) if compressed else rest
    return key.decode("latin-1"), rest


def _raw_profile(text: bytes | None) -> bytes | None:
    """The bytes of ImageMagick's 'Raw profile type NAME' text: a newline, the name, the length, then hex."""
    if not text:
        return None
    try:
        lines = text.decode("latin-1").strip("\n").split("\n")
        return bytes.fromhex("".join(lines[2:]))[: int(lines[1])]
    except (ValueError, IndexError):
        return None


def _exif_object(data: bytes):
    from PIL import Image

    exif = Image.Exif()
    exif.load(data)
    return exif


def _sub_directories(exif) -> dict:
    """EXIF's and GPS's directories as dicts, the interoperability one inside EXIF's as a dict too."""
    found = {}
    for tag in (EXIF_IFD, GPS_IFD):
        directory = dict(exif.get_ifd(tag)) if tag in exif else {}
        if tag == EXIF_IFD and INTEROP_IFD in directory:
            interop = exif.get_ifd(INTEROP_IFD)
            if interop:
                directory[INTEROP_IFD] = dict(interop)
            else:
                del directory[INTEROP_IFD]  # a pointer to nothing
        if directory:
            found[tag] = directory
    return found


def _canonical_exif(source) -> bytes | None:
    """IFD0's picture tags and the EXIF and GPS directories of a Pillow Exif, as a TIFF stream of their own."""
    from PIL import Image

    kept = Image.Exif()
    for tag in sorted(_IFD0_KEPT & set(source)):
        kept[tag] = source[tag]
    for tag, directory in _sub_directories(source).items():
        kept[tag] = directory
    return _stream(kept) if len(kept) else None


def _stream(exif) -> bytes:
    """A Pillow Exif as a TIFF stream (without the Exif header of JPEG's segment), with EXIF's types."""
    return bytes_as_undefined(exif.tobytes()[6:])


def _iptc_of(image, data: bytes) -> bytes | None:
    """IPTC-IIM from a JPEG's Photoshop segments (APP13) or a TIFF's IPTC tag (or its Photoshop tag)."""
    if image.format == "JPEG":
        segments = [body for marker, body in image.applist if marker == "APP13"]
        return _iim(b"".join(body[14:] for body in segments if body.startswith(b"Photoshop 3.0\0")))
    if image.format == "TIFF":  # read raw: Pillow keeps one word of a tag it expects to hold one
        return _iim(_tiff_raw_value(data, IPTC_TAG)) or _iim(_tiff_raw_value(data, PHOTOSHOP_TAG))
    return None


def _tiff_raw_value(data: bytes, tag: int) -> bytes | None:
    """The bytes of a tag's value in a TIFF's first directory as stored (tifffile finds where), whatever its
    type: Pillow keeps one word of an IPTC tag of many, and tifffile reads 32-bit words in the file's order."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        found = tiff.pages.first.tags.get(tag)
        return data[found.valueoffset : found.valueoffset + found.valuebytecount] if found is not None else None


def _iim(data: bytes | None) -> bytes | None:
    """IPTC-IIM datasets, whether given bare or inside Photoshop image resources (8BIM, resource 0x0404)."""
    if not data:
        return None
    data = bytes(data)
    if data.startswith(b"8BIM"):
        data = _photoshop_resource(data, 0x0404)
    end = 0
    while data and end + 5 <= len(data) and data[end] == 0x1C:  # 0x1C, record, dataset, size, value
        size = struct.unpack_from(">H", data, end + 3)[0]
        if size & 0x8000:  # an extended dataset: the size's own length, then the size
            length = size & 0x7FFF
            size = int.from_bytes(data[end + 5 : end + 5 + length], "big") + length
        end += 5 + size
    return data[:end] if 0 < end <= len(data) else None


def _photoshop_resource(data: bytes, wanted: int) -> bytes | None:
    offset = 0
    while offset + 12 <= len(data) and data[offset : offset + 4] == b"8BIM":
        kind = struct.unpack_from(">H", data, offset + 4)[0]
        name_length = data[offset + 6]
        offset += 6 + name_length + 1 + (name_length + 1) % 2  # the Pascal name, padded to even
        size = struct.unpack_from(">I", data, offset)[0]
        if kind == wanted:
            return data[offset + 4 : offset + 4 + size]
        offset += 4 + size + size % 2
    return None


def _container_dpi(image) -> tuple[float, float] | None:
    if image.format == "JPEG":
        unit, density = image.info.get("jfif_unit"), image.info.get("jfif_density")
        if unit not in (1, 2) or not all(density):  # 0: the aspect ratio only
            return None
        return tuple(float(d) * (2.54 if unit == 2 else 1) for d in density)
    if image.format == "TIFF" and X_RESOLUTION in image.tag_v2 and Y_RESOLUTION in image.tag_v2:
        unit = image.tag_v2.get(RESOLUTION_UNIT, _INCH)
        per_inch = 2.54 if unit == _CENTIMETRE else 1
        dpi = tuple(float(image.tag_v2[tag]) * per_inch for tag in (X_RESOLUTION, Y_RESOLUTION))
        return dpi if unit in (_INCH, _CENTIMETRE) and all(d > 0 for d in dpi) else None
    return None


def _exif_dpi(exif: bytes | None) -> tuple[float, float] | None:
    if not exif:
        return None
    tags = _exif_object(exif)
    unit = tags.get(RESOLUTION_UNIT, _INCH)
    if unit not in (_INCH, _CENTIMETRE) or X_RESOLUTION not in tags or Y_RESOLUTION not in tags:
        return None
    per_inch = 2.54 if unit == _CENTIMETRE else 1.0
    dpi = (float(tags[X_RESOLUTION]) * per_inch, float(tags[Y_RESOLUTION]) * per_inch)
    return dpi if all(d > 0 for d in dpi) else None


# --- made true for the output -------------------------------------------------------------------------


Size = tuple[int, int]  # (width, height)


def for_output(
    metadata: Metadata, in_size: Size, out_size: Size, provenance: Provenance, keep_print_size: bool = False
) -> Metadata:
    """The metadata of an upscale of `in_size` to `out_size` (width, height): the same resolution (DPI),
    or with `keep_print_size` one scaled with the pixels, so that the print keeps its size."""
    dpi = metadata.dpi
    if dpi is not None and keep_print_size:
        dpi = (dpi[0] * out_size[0] / in_size[0], dpi[1] * out_size[1] / in_size[1])
    exif = _exif_for_output(metadata.exif, out_size, dpi, provenance)
    values = {
        (xmp_packet.TIFF, "Orientation"): "1",
        (xmp_packet.TIFF, "ImageWidth"): str(out_size[0]),
        (xmp_packet.TIFF, "ImageLength"): str(out_size[1]),
        (xmp_packet.EXIF, "PixelXDimension"): str(out_size[0]),
        (xmp_packet.EXIF, "PixelYDimension"): str(out_size[1]),
    }
    if dpi is not None:  # as EXIF now states it
        tags = _exif_object(exif)
        values[(xmp_packet.TIFF, "XResolution")] = _rational_text(tags[X_RESOLUTION])
        values[(xmp_packet.TIFF, "YResolution")] = _rational_text(tags[Y_RESOLUTION])
        values[(xmp_packet.TIFF, "ResolutionUnit")] = str(tags[RESOLUTION_UNIT])
    removed = {(xmp_packet.XMP, "Thumbnails"), (xmp_packet.EXIF, "SubjectArea"), (xmp_packet.EXIF, "SubjectLocation")}
    event = {"action": "resized", "softwareAgent": provenance.software, "parameters": provenance.parameters}
    return Metadata(exif, xmp_packet.updated(metadata.xmp, values, removed, event), metadata.iptc, dpi)


def _exif_for_output(exif: bytes | None, out_size: tuple[int, int], dpi, provenance: Provenance) -> bytes:
    from PIL import Image

    tags = _exif_object(exif) if exif else Image.Exif()
    directories = _sub_directories(tags)
    if ORIENTATION in tags:
        tags[ORIENTATION] = 1
    tags[SOFTWARE] = provenance.software
    if dpi is not None:
        unit = _CENTIMETRE if tags.get(RESOLUTION_UNIT) == _CENTIMETRE else _INCH
        per_unit = 1 / 2.54 if unit == _CENTIMETRE else 1.0
        tags[X_RESOLUTION], tags[Y_RESOLUTION] = (_rational(d * per_unit) for d in dpi)
        tags[RESOLUTION_UNIT] = unit
    if EXIF_IFD in directories:
        directory = {tag: value for tag, value in directories[EXIF_IFD].items() if tag not in _EXIF_DROPPED}
        directory[PIXEL_X], directory[PIXEL_Y] = out_size
        directories[EXIF_IFD] = directory
    for tag, directory in directories.items():
        tags[tag] = directory
    return _stream(tags)


def _rational(value: float):
    from PIL.TiffImagePlugin import IFDRational

    fraction = Fraction(value).limit_denominator(10000)
    return IFDRational(fraction.numerator, fraction.denominator)


def _rational_text(value) -> str:
    fraction = Fraction(float(value)).limit_denominator(10000)
    return f"{fraction.numerator}/{fraction.denominator}"


# --- into each format ---------------------------------------------------------------------------------


def fitted(metadata: Metadata, suffix: str, name: str) -> tuple[Metadata, list[str]]:
    """What of `metadata` a file of this suffix can hold, and a note for each part left out (`name` is the file's)."""
    notes = []
    if suffix == ".webp" and metadata.iptc:
        notes.append(
            f"{name}: WebP holds no IPTC, so its IPTC fields are not kept (its EXIF and XMP are); "
            "write JPEG, PNG or TIFF to keep them"
        )
        metadata = dataclasses.replace(metadata, iptc=None)
    if suffix in (".jpg", ".jpeg"):
        if metadata.exif:  # EXIF requires it in JPEG files; 1: centred chroma samples, as libjpeg writes them
            tags = _exif_object(metadata.exif)
            tags[YCBCR_POSITIONING] = 1
            metadata = dataclasses.replace(metadata, exif=_with_directories(tags, _sub_directories(tags)))
        if metadata.exif and len(metadata.exif) + 6 > _JPEG_SEGMENT:
            metadata = dataclasses.replace(metadata, exif=_without_maker_note(metadata.exif))
            kept = len(metadata.exif) + 6 <= _JPEG_SEGMENT
            left_out = "its maker note is left out" if kept else "it is left out"
            notes.append(
                f"{name}: the EXIF is larger than a JPEG segment holds; {left_out}; write PNG or TIFF to keep all"
            )
            metadata = metadata if kept else dataclasses.replace(metadata, exif=None)
        if metadata.xmp and len(metadata.xmp) + 29 > _JPEG_SEGMENT:
            size = f"{len(metadata.xmp) // 1024} KB"
            notes.append(
                f"{name}: the XMP ({size}) is larger than a JPEG segment holds and is left out; write PNG or TIFF"
            )
            metadata = dataclasses.replace(metadata, xmp=None)
        if metadata.iptc and len(_photoshop_iptc(metadata.iptc)) + 14 > _JPEG_SEGMENT:
            notes.append(f"{name}: the IPTC is larger than a JPEG segment holds and is left out; write PNG or TIFF")
            metadata = dataclasses.replace(metadata, iptc=None)
    return metadata, notes


def _without_maker_note(exif: bytes) -> bytes:
    tags = _exif_object(exif)
    directories = _sub_directories(tags)
    directories.get(EXIF_IFD, {}).pop(MAKER_NOTE, None)
    return _with_directories(tags, directories)


def _with_directories(tags, directories: dict) -> bytes:
    for tag, directory in directories.items():
        tags[tag] = directory
    return _stream(tags)


def _photoshop_iptc(iim: bytes) -> bytes:
    """Photoshop image resources holding one resource, IPTC-IIM (0x0404), with an empty name."""
    return b"8BIM" + struct.pack(">HHI", 0x0404, 0, len(iim)) + iim + bytes(len(iim) % 2)


def pillow_options(metadata: Metadata) -> dict:
    """Pillow's save() options for JPEG and WebP (the JPEG's IPTC goes in as a Photoshop segment, APP13)."""
    options = {}
    if metadata.exif:
        options["exif"] = b"Exif\0\0" + metadata.exif
    if metadata.xmp:
        options["xmp"] = metadata.xmp
    if metadata.dpi:
        options["dpi"] = metadata.dpi
    if metadata.iptc:
        segment = b"Photoshop 3.0\0" + _photoshop_iptc(metadata.iptc)
        options["extra"] = b"\xff\xed" + struct.pack(">H", len(segment) + 2) + segment
    return options


def png_chunks_for(metadata: Metadata) -> list[tuple[bytes, bytes]]:
    """Chunks for a PNG, before its pixels: pHYs, eXIf, iTXt XML:com.adobe.xmp, and IPTC as exiftool and
    ImageMagick write it: a zTXt 'Raw profile type iptc' of hex text (there is no standard chunk)."""
    chunks = []
    if metadata.dpi:
        chunks.append((b"pHYs", struct.pack(">IIB", *(round(d / 0.0254) for d in metadata.dpi), 1)))
    if metadata.exif:
        chunks.append((b"eXIf", metadata.exif))
    if metadata.xmp:
        chunks.append((b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + metadata.xmp))
    if metadata.iptc:
        data = _photoshop_iptc(metadata.iptc)
        lines = "\n".join(data[i : i + 36].hex() for i in range(0, len(data), 36))
        text = f"\nIPTC profile\n{len(data):8d}\n{lines}\n".encode("latin-1")
        chunks.append((b"zTXt", b"Raw profile type iptc\0\0" + zlib.compress(text)))
    return chunks


@dataclasses.dataclass(frozen=True)
class TiffTags:
    """What a TIFF writer (tifffile) is given of `metadata`: its first directory's tags, the resolution,
    and the EXIF and GPS sub-directories, which tifffile does not write (tiff_tags.add_directories does)."""

    extratags: list[tuple]  # tifffile's (code, type, count, value, write once), for a little-endian file
    resolution: tuple[tuple[int, int], tuple[int, int]] | None = None  # pixels per unit, as fractions
    unit: int | None = None  # 2: inch, 3: centimetre
    directories: dict[int, dict] = dataclasses.field(default_factory=dict)  # EXIF_IFD, GPS_IFD -> their tags


def tiff_tags(metadata: Metadata) -> TiffTags:
    """EXIF's IFD0 tags and its EXIF and GPS directories (less what EXIF records for compressed files only),
    XMP, IPTC (as 32-bit words, its type in TIFF) and the resolution, for a TIFF's first directory."""
    tags, directories = {}, {}
    if metadata.exif:
        exif = _exif_object(metadata.exif)
        tags.update({tag: exif[tag] for tag in exif if tag not in (EXIF_IFD, GPS_IFD)})
        directories = _sub_directories(exif)
        if EXIF_IFD in directories:
            directories[EXIF_IFD] = {tag: v for tag, v in directories[EXIF_IFD].items() if tag not in _NOT_IN_TIFF}
        directories = {tag: directory for tag, directory in directories.items() if directory}
    resolution, unit = None, None
    if X_RESOLUTION in tags and Y_RESOLUTION in tags:
        resolution = tuple((value.numerator, value.denominator) for value in (tags[X_RESOLUTION], tags[Y_RESOLUTION]))
        unit = tags.get(RESOLUTION_UNIT, _INCH)
    elif metadata.dpi:
        resolution = tuple((r.numerator, r.denominator) for r in (_rational(d) for d in metadata.dpi))
        unit = _INCH
    for tag in (X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT):
        tags.pop(tag, None)
    extratags = [_tifffile_tag(tag, value) for tag, value in sorted(tags.items())]
    if metadata.xmp:
        extratags.append((XMP_TAG, 1, len(metadata.xmp), bytes(metadata.xmp), True))
    if metadata.iptc:
        words = bytes(metadata.iptc) + bytes(-len(metadata.iptc) % 4)
        extratags.append((IPTC_TAG, 4, len(words) // 4, np.frombuffer(words, "<u4"), True))
    return TiffTags([tag for tag in extratags if tag is not None], resolution, unit, directories)


def _tifffile_tag(tag: int, value) -> tuple | None:
    """One IFD0 tag as tifffile writes it, typed by its value as Pillow read it; None for a kind of value
    IFD0's picture tags never hold."""
    from PIL.TiffImagePlugin import IFDRational
    from PIL.TiffTags import BYTE, UNDEFINED, lookup

    if isinstance(value, str):
        return (tag, 2, 0, value.encode("utf-8"), True)  # ASCII (tifffile adds the terminating zero)
    if isinstance(value, bytes):
        byte = tag in WINDOWS_TAGS or lookup(tag).type == BYTE
        return (tag, BYTE if byte else UNDEFINED, len(value), value, True)
    values = value if isinstance(value, tuple) else (value,)
    if values and all(isinstance(v, IFDRational) for v in values):
        return (tag, 5, len(values), tuple(part for v in values for part in (v.numerator, v.denominator)), True)
    if values and all(isinstance(v, int) for v in values):
        return (tag, 3 if all(0 <= v < 65536 for v in values) else 4, len(values), values, True)
    return None
