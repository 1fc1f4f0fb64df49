"""Image files in and out: PNG, JPEG, WebP, TIFF, 8 and 16 bits per channel, with alpha and ICC profiles.

Pillow reduces 16-bit colour PNG and TIFF to 8 bits, so those two formats go through OpenCV, which keeps
every bit (and reads float TIFFs); JPEG and WebP go through Pillow, which applies EXIF orientation. ICC
profiles are read from every format and written back into PNG, JPEG and WebP (not TIFF). Files are
written to a temporary name and renamed, so an interrupted run never leaves half an image.
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
    if suffix in OPENCV_SUFFIXES:
        data = _encode_opencv(pixels, suffix)
        if suffix == ".png":
            data = _png_with_chunks(data, image.icc_profile, notes or {})
    else:
        data = _encode_pillow(pixels, suffix, image.icc_profile, notes or {})
    _write_atomically(path, data)


def _encode_opencv(pixels: np.ndarray, suffix: str) -> bytes:
    import cv2

    if suffix == ".png" and pixels.dtype == np.float32:  # PNG has no float samples: 16 bits keep the detail
        pixels = to_integer(pixels, np.uint16)
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


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_chunks(png: bytes, icc: bytes | None, notes: dict[str, str]) -> bytes:
    """Insert an iCCP chunk and tEXt chunks right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc))
    for key, value in notes.items():
        chunks += _png_chunk(b"tEXt", key.encode("latin-1", "replace")[:79] + b"\0" + value.encode("latin-1", "replace"))
    return png[:33] + chunks + png[33:]


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ImageFileError(f"{path}: cannot write ({error.strerror or error})") from error
