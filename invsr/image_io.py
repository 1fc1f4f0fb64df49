"""Image files in and out: PNG, JPEG, WebP, TIFF, 8 and 16 bits per channel, with alpha and ICC profiles.

Pillow reduces 16-bit colour PNG and TIFF to 8 bits, so those two formats are read through OpenCV, which
keeps every bit (and reads float TIFFs); TIFF is written through OpenCV too. PNG is written here (a PNG
is a few zlib-compressed chunks), so that gray + alpha, 16 bits, ICC profiles and text notes all fit.
JPEG and WebP go through Pillow, which applies EXIF orientation. ICC profiles are read from every format
and written into PNG, JPEG and WebP (not TIFF). Files are written to a temporary name and renamed, so
an interrupted run never leaves half an image.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import ImageFileError

OPENCV_SUFFIXES = (".png", ".tif", ".tiff")
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".webp")
SUFFIXES = OPENCV_SUFFIXES + PILLOW_SUFFIXES
EIGHT_BIT_ONLY = PILLOW_SUFFIXES  # formats that cannot hold more than 8 bits per channel here


@dataclasses.dataclass(frozen=True)
class ImageFile:
    pixels: np.ndarray  # (H, W) or (H, W, C), C in 1..4, RGB(A) order; uint8, uint16 or float32
    icc_profile: bytes | None = None


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def read_image(path: str | Path) -> ImageFile:
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    data = path.read_bytes()
    try:
        pixels = _decode_opencv(data) if suffix in OPENCV_SUFFIXES else _decode_pillow(data)
    except ImageFileError as error:
        raise ImageFileError(f"{path}: {error}") from None
    except Exception as error:  # decoders raise many types for damaged files
        raise ImageFileError(f"{path}: cannot decode the image ({error}); the file may be damaged") from error
    return ImageFile(pixels, _icc_profile(data))


def _decode_opencv(data: bytes) -> np.ndarray:
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is not None and data[:8] == _PNG_SIGNATURE and data[25] == _PNG_GRAY_ALPHA:
        pixels = pixels[..., [0, 3]]  # OpenCV expands gray + alpha to BGRA; keep it gray
    if pixels is None:
        raise ImageFileError("not a readable image: the file is damaged or not what its name says")
    if pixels.dtype == np.float64:
        pixels = pixels.astype(np.float32)
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageFileError(f"{pixels.dtype} samples are not supported; save as 8-bit, 16-bit or float32")
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]  # OpenCV's BGR(A) -> RGB(A)
    return np.ascontiguousarray(pixels)


def _decode_pillow(data: bytes) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()  # decode now, so a truncated file fails here
        image = ImageOps.exif_transpose(opened)
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = "A" in image.mode or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(image).copy()


def _icc_profile(data: bytes) -> bytes | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads headers only
            return image.info.get("icc_profile") or None
    except Exception:  # a format Pillow cannot parse has no profile we could use
        return None


def write_image(path: str | Path, image: ImageFile, notes: dict[str, str] | None = None) -> None:
    """Write `image` in the format the suffix names; `notes` become PNG text chunks or a JPEG comment."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImageFileError(f"{path}: cannot write {suffix or 'files without a suffix'}; use {', '.join(SUFFIXES)}")
    pixels = image.pixels
    if suffix in (".jpg", ".jpeg") and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        raise ImageFileError(f"{path}: JPEG has no alpha channel; write PNG, TIFF or WebP to keep transparency")
    if suffix == ".png":
        data = encode_png(pixels, image.icc_profile, notes or {})
    elif suffix in OPENCV_SUFFIXES:
        data = _encode_opencv(pixels, suffix)
    else:
        data = _encode_pillow(pixels, suffix, image.icc_profile, notes or {})
    _write_atomically(path, data)


def _encode_opencv(pixels: np.ndarray, suffix: str) -> bytes:
    import cv2

    if pixels.ndim == 3 and pixels.shape[2] == 2:  # OpenCV cannot write gray + alpha TIFFs
        pixels = pixels[..., [0, 0, 0, 1]]
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(pixels))
    if not ok:
        raise ImageFileError(f"OpenCV could not encode a {pixels.dtype} image as {suffix}")
    return encoded.tobytes()


def _encode_pillow(pixels: np.ndarray, suffix: str, icc: bytes | None, notes: dict[str, str]) -> bytes:
    from PIL import Image

    if pixels.dtype != np.uint8:
        pixels = to_integer(pixels, np.uint8)
    image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    options = {"quality": 95}
    if icc:
        options["icc_profile"] = icc
    if notes and suffix in (".jpg", ".jpeg"):
        options["comment"] = "; ".join(f"{k}: {v}" for k, v in notes.items())
    out = io.BytesIO()
    image.save(out, format="JPEG" if suffix in (".jpg", ".jpeg") else "WEBP", **options)
    return out.getvalue()


def to_integer(pixels: np.ndarray, dtype) -> np.ndarray:
    """Convert between uint8, uint16 and float32 with rounding (only where a format demands it)."""
    source = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(pixels.dtype, 1.0)
    target = 255.0 if np.dtype(dtype) == np.uint8 else 65535.0
    return np.clip(np.rint(pixels.astype(np.float64) * (target / source)), 0, target).astype(dtype)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY_ALPHA = 4
_PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_PNG_BAND = 64  # rows filtered at a time


def encode_png(pixels: np.ndarray, icc: bytes | None = None, notes: dict[str, str] | None = None) -> bytes:
    """A PNG of 1 to 4 channels at 8 or 16 bits (float is stored as 16 bits), with Paeth-filtered rows."""
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
    for key, value in (notes or {}).items():
        chunks.append(_png_chunk(b"tEXt", key.encode("latin-1", "replace")[:79] + b"\0" + value.encode("latin-1", "replace")))
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
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ImageFileError(f"{path}: cannot write ({error.strerror or error})") from error
