"""Image files in and out: PNG, JPEG, WebP, TIFF, 8 and 16 bits per channel, with alpha and ICC profiles.

Pillow reduces 16-bit colour PNG and TIFF to 8 bits, so those two formats are read through OpenCV, which
keeps every bit (and reads float TIFFs); TIFF is written through OpenCV too. PNG is written here (a PNG
is a few zlib-compressed chunks), so that gray + alpha, 16 bits, ICC profiles and text notes all fit.
JPEG and WebP go through Pillow, and so do CMYK images (converted to RGB through their ICC profile) and
gray + alpha TIFFs, which OpenCV would flatten. EXIF orientation is applied on reading, for every format
(by OpenCV for TIFF, by Pillow for JPEG and WebP, here for PNG).
ICC profiles are read from every format and written into PNG, JPEG and WebP (not TIFF), but only where
the profile's colour space is the image's (gray or RGB). EXIF, XMP, IPTC and the resolution are read
and written by metadata.py (into TIFF by adding tags to OpenCV's file: tiff_tags.py). Files are written
to a temporary name and renamed, so an interrupted run never leaves half an image.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from invsr.wire.atomic import partial_path, write_atomically

from .errors import ImageFileError
from .metadata import IPTC_TAG, Metadata, fitted, pillow_options, png_chunks, png_chunks_for, read_metadata, tiff_tags
from .tiff_tags import add_tags

OPENCV_SUFFIXES = (".png", ".tif", ".tiff")
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".webp")
SUFFIXES = OPENCV_SUFFIXES + PILLOW_SUFFIXES
EIGHT_BIT_ONLY = PILLOW_SUFFIXES  # formats that cannot hold more than 8 bits per channel here
JPEG_SUFFIXES = (".jpg", ".jpeg")
MAX_SIDE = {".jpg": 65500, ".jpeg": 65500, ".webp": 16383}  # what libjpeg and libwebp can encode


@dataclasses.dataclass(frozen=True)
class ImageFile:
    pixels: np.ndarray  # (H, W) or (H, W, C), C in 1..4, RGB(A) order; uint8, uint16 or float32
    icc_profile: bytes | None = None
    metadata: Metadata | None = None  # EXIF, XMP, IPTC and resolution; None: none written


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def read_image(path: str | Path) -> ImageFile:
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageFileError(
            f"{path}: cannot read the file ({error.strerror or error}); check that it is readable"
        ) from error
    header = _Header.of(data)
    try:
        if suffix in OPENCV_SUFFIXES and not header.needs_pillow:
            pixels = _oriented(_decode_opencv(data), header.png_orientation)
            return ImageFile(pixels, header.icc_profile, read_metadata(data))
        return dataclasses.replace(_decode_pillow(data), metadata=read_metadata(data))
    except ImageFileError as error:
        raise ImageFileError(f"{path}: {error}") from None
    except Exception as error:  # decoders raise many types for damaged files
        raise ImageFileError(f"{path}: cannot decode the image ({error}); the file may be damaged") from error


@dataclasses.dataclass(frozen=True)
class _Header:
    """What Pillow sees in a file's headers, without decoding its pixels."""

    format: str | None = None
    mode: str | None = None
    icc_profile: bytes | None = None
    png_orientation: int = 1  # EXIF: 1 is upright, 2 to 8 mirror and/or rotate; OpenCV ignores it in PNG only

    @classmethod
    def of(cls, data: bytes) -> _Header:
        from PIL import Image

        try:
            with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:  # reads headers only
                warnings.simplefilter("ignore")  # Pillow's warnings of tags it takes as damaged
                icc = image.info.get("icc_profile") or None
                return cls(image.format, image.mode, icc, _png_orientation(data) if image.format == "PNG" else 1)
        except Exception:  # a format Pillow cannot parse: OpenCV decodes it, with no profile we could use
            return cls()

    @property
    def needs_pillow(self) -> bool:
        """OpenCV reads CMYK with no regard to its profile, and drops the alpha of gray + alpha TIFFs."""
        return self.mode == "CMYK" or (self.format == "TIFF" and self.mode == "LA")


def _png_orientation(data: bytes) -> int:
    from PIL import Image

    exif, body = Image.Exif(), _png_chunk_body(data, b"eXIf")  # Pillow would decode every pixel to find it
    if body:
        exif.load(body)
    return exif.get(_ORIENTATION, 1)


def _decode_opencv(data: bytes) -> np.ndarray:
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageFileError("not a readable image: the file is damaged or not what its name says")
    if data[:8] == _PNG_SIGNATURE and data[25] == _PNG_GRAY_ALPHA:
        pixels = pixels[..., [0, 3]]  # OpenCV expands gray + alpha to BGRA; keep it gray
    if data[:8] == _PNG_SIGNATURE and data[25] == _PNG_GRAY and pixels.ndim == 2:
        pixels = _with_gray_transparency(pixels, data)
    if pixels.dtype == np.float64:
        pixels = pixels.astype(np.float32)
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageFileError(f"{pixels.dtype} samples are not supported; save as 8-bit, 16-bit or float32")
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]  # OpenCV's BGR(A) -> RGB(A)
    return np.ascontiguousarray(pixels)


def _with_gray_transparency(gray: np.ndarray, data: bytes) -> np.ndarray:
    """Gray PNG pixels plus the alpha its tRNS chunk implies (one gray value fully transparent), which
    OpenCV ignores; unchanged without a tRNS chunk."""
    transparent = _png_chunk_body(data, b"tRNS")
    if transparent is None or len(transparent) < 2:
        return gray
    depth = data[24]
    value = struct.unpack(">H", transparent[:2])[0]
    if depth < 8:  # OpenCV widens 1, 2 and 4-bit gray to 8 bits, scaling the values
        value = value * 255 // (2**depth - 1)
    opaque = np.iinfo(gray.dtype).max
    alpha = np.where(gray == value, 0, opaque).astype(gray.dtype)
    return np.dstack([gray, alpha])


def _png_chunk_body(data: bytes, kind: bytes) -> bytes | None:
    """The body of the first chunk of this kind, or None."""
    return next((body for found, body in png_chunks(data) if found == kind), None)


def _oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright as EXIF orientation 1 to 8 says (as Pillow's ImageOps.exif_transpose)."""
    flipped = pixels[:, ::-1] if orientation in (2, 4, 5, 7) else pixels  # the mirrored ones
    turns = {2: 0, 3: 2, 4: 2, 5: 1, 6: 3, 7: 3, 8: 1}.get(orientation, 0)  # quarter turns anticlockwise
    return np.ascontiguousarray(np.rot90(flipped, turns))


def _decode_pillow(data: bytes) -> ImageFile:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()  # decode now, so a truncated file fails here
        image = ImageOps.exif_transpose(opened)
    icc = image.info.get("icc_profile") or None
    if image.mode == "CMYK":
        return ImageFile(np.asarray(_cmyk_to_rgb(image, icc)).copy())  # now sRGB: the CMYK profile no longer applies
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = "A" in image.mode or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return ImageFile(np.asarray(image).copy(), icc)


def _cmyk_to_rgb(image, icc: bytes | None):
    """sRGB through the file's own CMYK profile; without one (or with a broken one), Pillow's plain formula."""
    from PIL import ImageCms

    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a profile lcms cannot use: the plain conversion is still a fair picture
    return image.convert("RGB")


def write_image(path: str | Path, image: ImageFile, notes: dict[str, str] | None = None) -> list[str]:
    """Write `image` in the format the suffix names; `notes` become PNG text chunks or a JPEG comment.
    Returns a note for each part of the metadata that the format cannot hold (left out).

    A fully opaque alpha channel is dropped for JPEG (it holds nothing); any other alpha is refused there.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    pixels = without_opaque_alpha(image.pixels) if suffix in JPEG_SUFFIXES else image.pixels
    check_format(path, *pixels.shape[:2], _channels(pixels))
    icc = image.icc_profile if _profile_fits(image.icc_profile, _channels(pixels)) else None
    metadata, left_out = fitted(image.metadata or Metadata(), suffix, path.name)
    try:
        if suffix == ".png":
            data = encode_png(pixels, icc, notes or {}, metadata)
        elif suffix in OPENCV_SUFFIXES:
            data = _encode_opencv(pixels, suffix, metadata)
        else:
            data = _encode_pillow(pixels, suffix, icc, notes or {}, metadata)
    except ImageFileError as error:
        raise ImageFileError(f"{path}: {error}") from None
    _write_atomically(path, data)
    return left_out


def check_format(path: Path, height: int, width: int, channels: int) -> None:
    """Raise when the format `path` names cannot hold a height x width image of this many channels."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: cannot write {suffix or 'files without a suffix'}; use {', '.join(SUFFIXES)}")
    if suffix in JPEG_SUFFIXES and channels in (2, 4):
        raise ImageFileError(
            f"{path}: JPEG has no alpha channel and this image is partly transparent; "
            "write PNG, TIFF or WebP to keep transparency"
        )
    limit = MAX_SIDE.get(suffix)
    if limit is not None and max(height, width) > limit:
        raise ImageFileError(
            f"{path}: {suffix[1:].upper()} holds at most {limit} pixels per side, and the output would be "
            f"{width} x {height}; write PNG or TIFF, or choose a smaller scale"
        )


def check_output(path: Path, height: int, width: int, channels: int) -> None:
    """Raise now what writing a height x width result to `path` would raise later (the format cannot hold
    it, the folder cannot be made or written), so that no upscale runs for minutes only to be lost."""
    check_format(path, height, width, channels)
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder; choose a file name for the result")
    probe = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ImageFileError(
            f"{path}: cannot write there ({error.strerror or error}); choose another output folder"
        ) from error


def without_opaque_alpha(pixels: np.ndarray) -> np.ndarray:
    """The pixels without their alpha channel when every pixel is fully opaque; otherwise unchanged."""
    if _channels(pixels) not in (2, 4):
        return pixels
    opaque = 1.0 if pixels.dtype == np.float32 else np.iinfo(pixels.dtype).max
    return pixels[..., :-1] if bool((pixels[..., -1] == opaque).all()) else pixels


def _channels(pixels: np.ndarray) -> int:
    return pixels.shape[2] if pixels.ndim == 3 else 1


def _profile_fits(icc: bytes | None, channels: int) -> bool:
    """Whether an ICC profile describes pixels of this many channels: a gray one for gray (+ alpha), an RGB
    one for RGB(A). A profile of another colour space (a CMYK one, say) would make viewers misread them."""
    colour_space = icc[16:20] if icc and len(icc) >= 20 else None  # the ICC header's data colour space
    return colour_space == (b"GRAY" if channels <= 2 else b"RGB ")


def _encode_opencv(pixels: np.ndarray, suffix: str, metadata: Metadata) -> bytes:
    import cv2

    if pixels.ndim == 3 and pixels.shape[2] == 2:  # OpenCV cannot write gray + alpha TIFFs
        pixels = pixels[..., [0, 0, 0, 1]]
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(pixels))
    if not ok:
        raise ImageFileError(f"OpenCV could not encode a {pixels.dtype} image as {suffix}")
    return add_tags(encoded.tobytes(), tiff_tags(metadata), as_longs=(IPTC_TAG,))


def _encode_pillow(pixels: np.ndarray, suffix: str, icc: bytes | None, notes: dict, metadata: Metadata) -> bytes:
    from PIL import Image

    if pixels.dtype != np.uint8:
        pixels = to_integer(pixels, np.uint8)
    image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    options = {"quality": 95, **pillow_options(metadata)}
    if icc:
        options["icc_profile"] = icc
    if notes and suffix in JPEG_SUFFIXES:
        options["comment"] = "; ".join(f"{k}: {v}" for k, v in notes.items())
    out = io.BytesIO()
    try:
        image.save(out, format="JPEG" if suffix in JPEG_SUFFIXES else "WEBP", **options)
    except (OSError, ValueError) as error:  # the encoder's own limits, past what check_format knows
        raise ImageFileError(
            f"Pillow could not encode a {image.width} x {image.height} image as {suffix} ({error}); write PNG or TIFF"
        ) from error
    return out.getvalue()


def to_integer(pixels: np.ndarray, dtype) -> np.ndarray:
    """Convert between uint8, uint16 and float32 with rounding (only where a format demands it)."""
    source = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(pixels.dtype, 1.0)
    target = 255.0 if np.dtype(dtype) == np.uint8 else 65535.0
    return np.clip(np.rint(pixels.astype(np.float64) * (target / source)), 0, target).astype(dtype)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY = 0
_PNG_GRAY_ALPHA = 4
_ORIENTATION = 0x0112  # the EXIF tag
_PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_PNG_BAND = 64  # rows filtered at a time


def encode_png(
    pixels: np.ndarray, icc: bytes | None = None, notes: dict[str, str] | None = None, metadata: Metadata | None = None
) -> bytes:
    """A PNG of 1 to 4 channels at 8 or 16 bits (float is stored as 16 bits), with Paeth-filtered rows;
    `metadata` (EXIF, XMP, IPTC, resolution) in chunks before the pixels."""
    if pixels.dtype == np.float32:  # PNG has no float samples: 16 bits keep the detail
        pixels = to_integer(pixels, np.uint16)
    planes = pixels if pixels.ndim == 3 else pixels[:, :, None]
    height, width, channels = planes.shape
    depth = 16 if planes.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(planes, dtype=">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, depth, _PNG_COLOR_TYPES[channels], 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", header)]
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc)))
    chunks += [_png_chunk(kind, body) for kind, body in png_chunks_for(metadata or Metadata())]
    for key, value in (notes or {}).items():
        chunks.append(
            _png_chunk(b"tEXt", key.encode("latin-1", "replace")[:79] + b"\0" + value.encode("latin-1", "replace"))
        )
    compressor, compressed = zlib.compressobj(6), []
    for top in range(0, height, _PNG_BAND):  # in bands of rows, so memory stays small for big images
        above = rows[top - 1] if top else None
        compressed.append(compressor.compress(_paeth_filter(rows[top : top + _PNG_BAND], above, channels * depth // 8)))
    compressed.append(compressor.flush())
    chunks.append(_png_chunk(b"IDAT", b"".join(compressed)))
    chunks.append(_png_chunk(b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(chunks)


def _paeth_filter(rows: np.ndarray, above: np.ndarray | None, bytes_per_pixel: int) -> np.ndarray:
    """PNG filter type 4 on each row (prefixed by the filter byte), given the row above the first."""
    here = rows.astype(np.int16)
    left = np.zeros_like(here)
    left[:, bytes_per_pixel:] = here[:, :-bytes_per_pixel]
    up = np.zeros_like(here)
    up[1:] = here[:-1]
    if above is not None:
        up[0] = above
    up_left = np.zeros_like(here)
    up_left[:, bytes_per_pixel:] = up[:, :-bytes_per_pixel]
    estimate = left + up - up_left
    to_left, to_up, to_up_left = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
    predictor = np.where((to_left <= to_up) & (to_left <= to_up_left), left, np.where(to_up <= to_up_left, up, up_left))
    residual = ((here - predictor) % 256).astype(np.uint8)
    return np.hstack([np.full((rows.shape[0], 1), 4, np.uint8), residual])


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, data)
    except OSError as error:
        raise ImageFileError(f"{path}: cannot write ({error.strerror or error})") from error
