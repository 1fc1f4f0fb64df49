"""Image files in and out: PNG, JPEG, WebP, TIFF, 8 and 16 bits per channel (and float TIFF), with alpha and
ICC profiles.

Pillow reduces 16-bit colour PNG and TIFF to 8 bits and has no 16-bit RGB(A) mode to write, so PNG is read
by imagecodecs (libpng) and written band by band by png_bands.py (libpng encodes whole arrays only), and
TIFF goes through tifffile both ways; they keep every bit, gray + alpha and float TIFFs. JPEG and WebP go
through Pillow, and so do CMYK images (converted to RGB through their ICC profile) and TIFFs that are not
plain gray or RGB samples (palette, YCbCr, bilevel...). Files are told apart by their first bytes, not by
their names. EXIF orientation is applied on reading, for every format (by Pillow for JPEG and WebP, here for
PNG and TIFF). ICC profiles are read from every format and written into every one, but only where the
profile's colour space is the image's (gray or RGB). EXIF, XMP, IPTC and the resolution are read and written
by metadata.py. Files are written to a temporary name and renamed, so an interrupted run never leaves half
an image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np

from invsr.wire.atomic import partial_path, write_atomically

from .errors import ImageFileError
from .metadata import (
    ORIENTATION,
    Metadata,
    fitted,
    pillow_options,
    png_chunks,
    read_metadata,
    tiff_tags,
)
from .tiff_tags import add_directories, add_directories_to_file

TIFF_SUFFIXES = (".tif", ".tiff")
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".webp")
SUFFIXES = (".png", *TIFF_SUFFIXES, *PILLOW_SUFFIXES)
EIGHT_BIT_ONLY = PILLOW_SUFFIXES  # formats that cannot hold more than 8 bits per channel here
JPEG_SUFFIXES = (".jpg", ".jpeg")
MAX_SIDE = {".jpg": 65500, ".jpeg": 65500, ".webp": 16383}  # what libjpeg and libwebp can encode
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic TIFF and BigTIFF, either byte order
MEMINFO = Path("/proc/meminfo")  # Linux: what `available_memory` reads


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
        decoded = None  # (pixels, ICC profile)
        if data.startswith(PNG_SIGNATURE):
            decoded = _oriented(_decode_png(data), header.png_orientation), header.icc_profile
        elif data.startswith(TIFF_SIGNATURES) and header.mode != "CMYK":
            decoded = _decode_tiff(data)
        if decoded is None:
            return dataclasses.replace(_decode_pillow(data), metadata=read_metadata(data))
        return ImageFile(*decoded, read_metadata(data))
    except ImageFileError as error:
        raise ImageFileError(f"{path}: {error}") from None
    except Exception as error:  # decoders raise many types for damaged files
        raise ImageFileError(f"{path}: cannot decode the image ({error}); the file may be damaged") from error


@dataclasses.dataclass(frozen=True)
class _Header:
    """What Pillow sees in a file's headers, without decoding its pixels."""

    mode: str | None = None
    icc_profile: bytes | None = None
    png_orientation: int = 1  # EXIF: 1 is upright, 2 to 8 mirror and/or rotate

    @classmethod
    def of(cls, data: bytes) -> _Header:
        from PIL import Image

        try:
            with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:  # reads headers only
                warnings.simplefilter("ignore")  # Pillow's warnings of tags it takes as damaged
                icc = image.info.get("icc_profile") or None
                return cls(image.mode, icc, _png_orientation(data) if image.format == "PNG" else 1)
        except Exception:  # a file Pillow cannot parse (a float RGB TIFF): tifffile or libpng may still read it
            return cls()


def _png_orientation(data: bytes) -> int:
    from PIL import Image

    exif, body = Image.Exif(), next((body for kind, body in png_chunks(data) if kind == b"eXIf"), None)
    if body:  # Pillow would decode every pixel to find it
        exif.load(body)
    return exif.get(ORIENTATION, 1)


def _decode_png(data: bytes) -> np.ndarray:
    """Every PNG as its samples, 8 or 16 bits: libpng expands palettes and depths under 8 bits, and turns a
    transparency chunk (tRNS) into an alpha channel."""
    import imagecodecs

    return _checked(imagecodecs.png_decode(data))


def _decode_tiff(data: bytes) -> tuple[np.ndarray, bytes | None] | None:
    """A TIFF's first image, turned upright as its Orientation tag says, and its ICC profile, when it holds
    plain gray or RGB samples (with alpha or not; 8, 16, 32 or 64 bits); None for the others, which Pillow
    converts (palette, YCbCr, bilevel, CMYK, Lab)."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages[0]
        plain = page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
        if not plain or page.bitspersample not in (8, 16, 32, 64) or not 1 <= page.samplesperpixel <= 4:
            return None
        pixels = page.asarray()
        orientation = int(page.tags.valueof(ORIENTATION, 1))
        icc = page.tags.valueof("InterColorProfile")  # Pillow cannot open a float RGB TIFF to find it
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and pixels.ndim == 3:
        pixels = np.moveaxis(pixels, 0, -1)  # planes of samples -> samples of each pixel
    return _oriented(_checked(pixels), orientation), bytes(icc) if icc else None


def _checked(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype in (np.float16, np.float64):
        pixels = pixels.astype(np.float32)
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageFileError(f"{pixels.dtype} samples are not supported; save as 8-bit, 16-bit or float32")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return np.ascontiguousarray(pixels)


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
    Returns a note for each part of the metadata that the format cannot hold (left out), and for float
    values beyond [0, 1] that it clips.

    A fully opaque alpha channel is dropped for JPEG (it holds nothing); any other alpha is refused there.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    pixels = without_opaque_alpha(image.pixels) if suffix in JPEG_SUFFIXES else image.pixels
    check_format(path, *pixels.shape[:2], _channels(pixels))
    icc, profile_notes = fitting_profile(image.icc_profile, _channels(pixels), path.name)
    metadata, left_out = fitted(image.metadata or Metadata(), suffix, path.name)
    left_out += profile_notes
    if suffix == ".png":  # the encoder of an upscale's bands, for one encoder (as fast as libpng: bench/png_write.py)
        from .png_bands import write_png

        return left_out + write_png(path, pixels, icc, notes, metadata)  # with its own note of clipped values
    if pixels.dtype == np.float32 and suffix in PILLOW_SUFFIXES and beyond_one(pixels):
        left_out.append(clipping_note(path.name))
    try:
        if suffix in TIFF_SUFFIXES:
            data = encode_tiff(pixels, icc, metadata)
        else:
            data = _encode_pillow(pixels, suffix, icc, notes or {}, metadata)
    except ImageFileError as error:
        raise ImageFileError(f"{path}: {error}") from None
    _write_atomically(path, data)
    return left_out


def check_format(path: Path, height: int, width: int, channels: int, input_size=None) -> None:
    """Raise when the format `path` names cannot hold a height x width image of this many channels;
    given the (height, width) of the input, the error names the largest scale the format holds."""
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
        largest = ""
        if input_size is not None:
            scale = math.floor(100 * limit / max(input_size)) / 100
            largest = f" (at most --scale {scale:g} for this {input_size[1]} x {input_size[0]} input)"
        raise ImageFileError(
            f"{path}: {suffix[1:].upper()} holds at most {limit} pixels per side, and the output would be "
            f"{width} x {height}; write PNG or TIFF, or choose a smaller scale{largest}"
        )


def check_output(path: Path, height: int, width: int, channels: int, input_size=None, dtype=np.uint8) -> None:
    """Raise now what writing a height x width result to `path` would raise later (the format cannot hold
    it, the folder cannot be made or written, the memory or the disk cannot hold it: `needs`), so that no
    upscale runs for minutes only to be lost."""
    check_format(path, height, width, channels, input_size)
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
    check_needs(path, height, width, channels, dtype)


@dataclasses.dataclass(frozen=True)
class Needs:
    """What writing a result to a file needs beside the upscale itself, in bytes."""

    memory: int  # host memory for the result: the whole of it in its pixel type and its encoding, or a band
    disk: int  # the file, at most (compressed formats: what photos take at worst)
    streamed: bool  # written band by band (TIFF, PNG)


BAND_BYTES = 64 << 20  # what a file written band by band holds of the result at most, about


def needs(path: Path, height: int, width: int, channels: int, dtype) -> Needs:
    """What writing a height x width result of `channels` samples of `dtype` to `path` needs. TIFF and PNG
    are written band by band (a band of memory; on disk at most the raw samples, and deflate's stored blocks
    and PNG's filter bytes); JPEG and WebP are encoded from the whole result (the encoders take whole arrays),
    which is held in its pixel type, its encoding beside it (a tenth)."""
    suffix = path.suffix.lower()
    raw = height * width * channels * np.dtype(dtype).itemsize
    if suffix in (*TIFF_SUFFIXES, ".png"):
        return Needs(BAND_BYTES, raw + raw // 100 + height, True)
    return Needs(raw + raw // 10, raw // 4, False)


def available_memory() -> int | None:
    """Host memory available to a new allocation without swapping, or None: Linux's MemAvailable, free pages
    plus the page cache the kernel gives back on demand (free pages alone shrink with every file read, and
    the automatic tile size, so the result, would follow them)."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # given in kB
    except (OSError, ValueError, IndexError):
        pass
    try:  # elsewhere (macOS): the pages free now
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_needs(path: Path, height: int, width: int, channels: int, dtype) -> Needs:
    """Raise when this machine has not the memory or the disk that writing the result to `path` needs."""
    import shutil

    need = needs(path, height, width, channels, dtype)
    memory = available_memory()
    if memory is not None and need.memory > memory:
        raise ImageFileError(
            f"{path}: writing a {width} x {height} {path.suffix[1:].upper()} holds the whole result, about "
            f"{need.memory / 1e9:.1f} GB of memory, and this machine has {memory / 1e9:.1f} GB available; "
            "write PNG or TIFF (written band by band), or choose a smaller scale"
        )
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return need
    if need.disk > free:
        raise ImageFileError(
            f"{path}: the result may take up to {need.disk / 1e9:.1f} GB on disk, and {path.parent} has "
            f"{free / 1e9:.1f} GB free; free some space or write elsewhere"
        )
    return need


def without_opaque_alpha(pixels: np.ndarray) -> np.ndarray:
    """The pixels without their alpha channel when every pixel is fully opaque; otherwise unchanged."""
    if _channels(pixels) not in (2, 4):
        return pixels
    opaque = 1.0 if pixels.dtype == np.float32 else np.iinfo(pixels.dtype).max
    return pixels[..., :-1] if bool((pixels[..., -1] == opaque).all()) else pixels


def _channels(pixels: np.ndarray) -> int:
    return pixels.shape[2] if pixels.ndim == 3 else 1


def fitting_profile(icc: bytes | None, channels: int, name: str) -> tuple[bytes | None, list[str]]:
    """The ICC profile where it describes pixels of this many channels, else None and a note saying so (every
    format holds a profile: this one does not describe these pixels)."""
    if not icc or _profile_fits(icc, channels):
        return icc or None, []
    space = icc[16:20].decode("latin-1", "replace").strip() or "unknown"
    kind = "gray" if channels <= 2 else "RGB"
    return None, [f"{name}: the ICC profile is for {space} colours, not {kind}; written without it"]


def beyond_one(pixels: np.ndarray) -> bool:
    """Whether a colour value lies outside [0, 1] (alpha, the last of 2 or 4 channels, does not count)."""
    colour = pixels[..., : 3 if pixels.shape[2] >= 3 else 1] if pixels.ndim == 3 else pixels
    return bool(colour.min() < 0 or colour.max() > 1)


def clipping_note(name: str) -> str:
    """What a format holding [0, 1] only says of a float result with values beyond it."""
    return (
        f"note: {name} holds values from 0 to 1 only, so values above 1 or below 0 are clipped; write TIFF to keep them"
    )


def _profile_fits(icc: bytes | None, channels: int) -> bool:
    """Whether an ICC profile describes pixels of this many channels: a gray one for gray (+ alpha), an RGB
    one for RGB(A). A profile of another colour space (a CMYK one, say) would make viewers misread them."""
    colour_space = icc[16:20] if icc and len(icc) >= 20 else None  # the ICC header's data colour space
    return colour_space == (b"GRAY" if channels <= 2 else b"RGB ")


def encode_tiff(pixels: np.ndarray, icc: bytes | None = None, metadata: Metadata | None = None) -> bytes:
    """A TIFF of 1 to 4 channels (gray, gray + alpha, RGB, RGBA) at 8 or 16 bits or float32, deflate
    compressed with a predictor, with its ICC profile and `metadata` (metadata.tiff_tags) in its tags."""
    import tifffile

    channels = _channels(pixels)
    tags = tiff_tags(metadata or Metadata())
    out = io.BytesIO()
    tifffile.imwrite(
        out,
        pixels,
        byteorder="<",
        photometric="minisblack" if channels <= 2 else "rgb",
        planarconfig="contig",
        extrasamples=["unassalpha"] if channels in (2, 4) else None,
        compression="zlib",
        predictor=True,  # horizontal differences for integers, the floating-point predictor for float32
        iccprofile=icc,
        resolution=tags.resolution,
        resolutionunit=tags.unit,
        metadata=None,  # no JSON description of the array
        software=False,  # ours is among the tags, from the EXIF
        extratags=tags.extratags,
    )
    # tifffile writes no EXIF or GPS directory (its author: out of its scope); they are added after it
    return add_directories(out.getvalue(), tags.directories)


class TiffBands:
    """A TIFF written band by band as an upscale finishes its rows, holding no more than a few tiles of it
    (tiles as wide as the image, of about 256 KB or 16 rows): the pixels deflate-compressed by
    tifffile on a thread of its own, which takes the tiles from a short queue; the metadata finished at the
    end (`finish`: the tags that only the finished job knows, such as its provenance, overwritten; EXIF and
    GPS directories added in place), the file renamed into place only then. `abort` removes what was
    written."""

    TILE_BYTES = 1 << 18  # about this much a tile (at least 16 rows, as TIFF tiles are multiples of 16)

    def __init__(self, path: Path, height: int, width: int, channels: int, dtype, icc, metadata: Metadata | None):
        import queue
        import threading

        self.path, self.partial = Path(path), partial_path(Path(path))
        self.shape, self.dtype = (height, width, channels), np.dtype(dtype)
        self.icc, self.notes = fitting_profile(icc, channels, self.path.name)
        self.metadata = None if metadata is None else fitted(metadata, self.path.suffix.lower(), self.path.name)[0]
        row_bytes = -(-width // 16) * 16 * channels * self.dtype.itemsize
        self.tile_rows = min(max(1, self.TILE_BYTES // row_bytes // 16), -(-height // 16)) * 16
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.pending: list[np.ndarray] = []  # rows not yet a whole tile
        self.rows = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, name="invsr-tiff-writer", daemon=True)
        self.thread.start()

    def add(self, top: int, rows: np.ndarray) -> None:
        """Rows [top, top + n) of the image, (n, W[, C]) in its dtype, following those added before; what
        is kept of them is copied, so that the caller's band can go when this returns."""
        if top != self.rows:
            raise ValueError(f"rows must come top to bottom: expected row {self.rows}, got {top}")
        self.rows += rows.shape[0]
        self.pending.append(rows.reshape(rows.shape[0], self.shape[1], self.shape[2]))
        held = sum(part.shape[0] for part in self.pending)
        while held >= self.tile_rows or (self.rows == self.shape[0] and held):
            tile = self._take(min(held, self.tile_rows))
            self._put(tile)
            held -= tile.shape[0]
        self.pending = [part.copy() for part in self.pending]  # under a tile's rows

    def _take(self, count: int) -> np.ndarray:
        """The first `count` pending rows, as a new array."""
        tile, filled = np.empty((count, *self.shape[1:]), self.dtype), 0
        while filled < count:
            part = self.pending[0]
            taken = min(count - filled, part.shape[0])
            tile[filled : filled + taken] = part[:taken]
            filled += taken
            self.pending[0:1] = [part[taken:]] if taken < part.shape[0] else []
        return tile

    def finish(self, metadata: Metadata | None, notes: dict[str, str] | None = None) -> list[str]:
        """Close the file with `metadata` (the final one: what differs from that given at the start, which
        only the finished job knows, is overwritten) and put it in place; notes as write_image's. `notes`
        (text, as PNG's) are not written: write_image leaves them out of TIFFs too."""
        if self.rows != self.shape[0]:
            raise ImageFileError(f"{self.path}: only {self.rows} of {self.shape[0]} rows were written")
        self._put(None)
        self.thread.join()
        if self.error is not None:
            self._remove()
            raise ImageFileError(f"{self.path}: cannot write ({self.error})") from self.error
        try:
            left_out = self.notes + self._finish_tags(metadata)
            os.replace(self.partial, self.path)
        except OSError as error:
            self._remove()
            raise ImageFileError(f"{self.path}: cannot write ({error.strerror or error})") from error
        return left_out

    def abort(self) -> None:
        """Stop writing and remove the partial file."""
        if self.thread.is_alive():
            self.error = self.error or RuntimeError("aborted")
            with contextlib.suppress(Exception):
                while True:
                    self.queue.get_nowait()
            self.queue.put(_ABORT)
            self.thread.join()
        self._remove()

    def _put(self, tile) -> None:
        if self.error is not None and tile is not None:
            raise ImageFileError(f"{self.path}: cannot write ({self.error})") from self.error
        self.queue.put(tile)

    def _tiles(self):
        while (tile := self.queue.get()) is not None:
            if tile is _ABORT:
                raise RuntimeError("aborted")
            yield tile

    def _write(self) -> None:
        import tifffile

        height, width, channels = self.shape
        tags = tiff_tags(self.metadata or Metadata())
        tile = (self.tile_rows, -(-width // 16) * 16)
        # tifffile compresses on several threads where the machine has 4 cores or more, and by default
        # gathers up to 512 MB of tiles (all of them, for most images) before writing any: one tile per
        # thread at a time instead (a buffer of one tile's bytes).
        tile_bytes = tile[0] * tile[1] * channels * self.dtype.itemsize
        big = height * width * channels * self.dtype.itemsize > 2**32 - 2**25  # as tifffile.imwrite decides
        try:
            with tifffile.TiffWriter(self.partial, bigtiff=big, byteorder="<") as tiff:
                tiff.write(
                    self._tiles(),
                    shape=self.shape if channels > 1 else self.shape[:2],
                    dtype=self.dtype,
                    tile=tile,
                    photometric="minisblack" if channels <= 2 else "rgb",
                    planarconfig="contig" if channels > 1 else None,
                    extrasamples=["unassalpha"] if channels in (2, 4) else None,
                    compression="zlib",
                    predictor=True,
                    buffersize=tile_bytes,
                    iccprofile=self.icc,
                    resolution=tags.resolution,
                    resolutionunit=tags.unit,
                    metadata=None,
                    software=False,
                    extratags=tags.extratags,
                )
        except BaseException as error:  # the upscale thread hears of it at its next band
            self.error = self.error or error
            with contextlib.suppress(Exception):
                while True:  # unblock a producer waiting on a full queue
                    self.queue.get_nowait()

    def _finish_tags(self, metadata: Metadata | None) -> list[str]:
        import tifffile

        left_out = []
        if metadata is None:
            return left_out
        metadata, left_out = fitted(metadata, self.path.suffix.lower(), self.path.name)
        started = {tag[0]: tag for tag in tiff_tags(self.metadata or Metadata()).extratags}
        final = tiff_tags(metadata)
        changed = [tag for tag in final.extratags if not _same_tag(started.get(tag[0]), tag)]
        if changed:
            with tifffile.TiffFile(self.partial, mode="r+b") as tiff:
                page_tags = tiff.pages[0].tags
                for code, kind, _, value, _ in changed:
                    if code not in page_tags:
                        raise OSError(f"tag {code} was not written at the start, so it cannot be set at the end")
                    page_tags[code].overwrite(value, dtype=kind)
        add_directories_to_file(self.partial, final.directories)
        return left_out

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            self.partial.unlink()


_ABORT = object()


def _same_tag(a: tuple | None, b: tuple) -> bool:
    """Whether two tifffile extratags are the same (values may be arrays)."""
    return a is not None and a[:3] == b[:3] and np.array_equal(np.asarray(a[3]), np.asarray(b[3]))


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


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, data)
    except OSError as error:
        raise ImageFileError(f"{path}: cannot write ({error.strerror or error})") from error
