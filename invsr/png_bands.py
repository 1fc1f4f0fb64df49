"""A PNG written band by band as an upscale finishes its rows (issue 24), holding a band and zlib's window,
never the whole result.

libpng (through imagecodecs) encodes whole arrays only, and Pillow cannot write 16-bit colour, so the
stream is made here, as libpng makes it: each row filtered with the one of the five PNG filters whose
output has the least sum of absolute values as signed bytes (libpng's adaptive choice; vectorised with
numpy over blocks of rows), the filtered rows deflated by one zlib stream at level 6, in IDAT chunks as it
gives them out.

What only the finished job knows (its provenance: EXIF Software and an XMP history event, and the run's
warning as a text note) must still come before the pixels: the PNG specification puts eXIf before IDAT,
and readers look for XMP there (exiftool warns of text after IDAT). So those chunks are written at the
start in a region with room to spare, and rewritten in place at the end: the XMP packet takes up the
slack as whitespace padding before its trailer (the padding XMP provides for editing in place), or, with
no XMP, the EXIF as zero bytes after its TIFF stream (which nothing points to).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import ImageFileError
from .image_io import BAND_BYTES, PNG_SIGNATURE, beyond_one, clipping_note, fitting_profile, to_integer
from .metadata import Metadata, fitted, png_chunks_for
from .wire.atomic import partial_path

COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: gray, gray + alpha, RGB, RGBA
LEVEL = 6  # zlib's default, as image_io asked libpng for
STRATEGY = zlib.Z_DEFAULT_STRATEGY  # libpng's size and speed; Z_FILTERED: 10% smaller, 1.5x slower (bench/png_write.py)
ROOM = 8192  # bytes kept for what the finished job adds to the metadata (its provenance is a few hundred)
IDAT_BYTES = 1 << 18  # compressed bytes gathered before they go out as one IDAT chunk
BLOCK_BYTES = 1 << 18  # rows filtered together: the candidates of one block stay in the CPU's caches
_XMP_KEY = b"XML:com.adobe.xmp\0"
_XMP_TRAILER = b'<?xpacket end="'


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def text_chunks(notes: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    """tEXt chunks of `notes` (Latin-1, keys cut to PNG's 79 bytes)."""
    latin = lambda text: text.encode("latin-1", "replace")  # noqa: E731
    return [(b"tEXt", latin(key)[:79] + b"\0" + latin(value)) for key, value in (notes or {}).items()]


def filter_rows(rows: np.ndarray, prior: np.ndarray, bpp: int) -> np.ndarray:
    """(n, 1 + row bytes): each of `rows` (n, row bytes; uint8, samples big-endian) preceded by its filter
    type and filtered with it; `prior` is the row above the first (zeros above the image), `bpp` the bytes
    per pixel. The filter is libpng's adaptive choice: the least sum of |byte as int8|, the first on ties."""
    up = np.concatenate([prior[None], rows[:-1]])
    left, up_left = np.zeros_like(rows), np.zeros_like(up)
    left[:, bpp:], up_left[:, bpp:] = rows[:, :-bpp], up[:, :-bpp]
    average = ((left.astype(np.uint16) + up) >> 1).astype(np.uint8)
    candidates = np.stack([rows, rows - left, rows - up, rows - average, rows - _paeth(left, up, up_left)])
    costs = np.minimum(candidates, 0 - candidates)  # |v as int8|: min(v, 256 - v)
    costs = costs.sum(axis=2, dtype=np.uint32 if rows.shape[1] < 1 << 24 else np.uint64)  # at most 128 a byte
    best = costs.argmin(axis=0)  # the first of equal sums: None before Sub before Up...
    out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(rows.shape[0])]
    return out


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The Paeth predictor (PNG specification 9.4) of left `a`, above `b` and above-left `c`; the choices
    made with bit masks (np.where on bytes is three times slower)."""
    a16, b16, c16 = (x.astype(np.int16) for x in (a, b, c))
    pa, pb, pc = np.abs(b16 - c16), np.abs(a16 - c16), np.abs(a16 + b16 - 2 * c16)
    take_b = 0 - (pb <= pc).view(np.uint8)  # 255 where b, else 0
    take_a = 0 - ((pa <= pb) & (pa <= pc)).view(np.uint8)
    b_or_c = c ^ ((b ^ c) & take_b)
    return b_or_c ^ ((a ^ b_or_c) & take_a)


def write_png(
    path: Path, pixels: np.ndarray, icc: bytes | None, notes: dict[str, str] | None, metadata: Metadata | None
) -> list[str]:
    """A whole image written as an upscale's bands are (one encoder, and no encoding held beside the
    pixels); notes as write_image's."""
    height, width = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    writer = PngBands(path, height, width, channels, pixels.dtype, icc, metadata, notes, room=0)
    rows = max(1, BAND_BYTES // max(1, pixels[:1].nbytes))  # a strided array (alpha dropped) copied a band at a time
    try:
        for top in range(0, height, rows):
            writer.add(top, pixels[top : top + rows])
        return writer.finish(None)
    except BaseException:
        writer.abort()
        raise


class PngBands:
    """A PNG written band by band: `add` the rows top to bottom, then `finish` with the final metadata (that
    of the start, made true for the finished job) and the run's notes; the file is written under a
    temporary name and put in place only then. `abort` removes what was written. 8 or 16 bits per sample,
    float32 stored as 16 bits (rounded, as image_io.to_integer); 1 to 4 channels.

    `room`: bytes kept before the pixels for what the final metadata and notes add to those of the start
    (0 where they are final from the start, as for a whole image). Without EXIF or XMP to take up the
    slack, the notes given at the end follow the pixels (text chunks may; exiftool notes it)."""

    def __init__(
        self,
        path: Path,
        height: int,
        width: int,
        channels: int,
        dtype,
        icc: bytes | None,
        metadata: Metadata | None,
        notes: dict[str, str] | None = None,
        room: int = ROOM,
    ):
        self.path, self.partial = Path(path), partial_path(Path(path))
        self.shape, self.dtype = (height, width, channels), np.dtype(dtype)
        self.stored = np.dtype(">u1" if self.dtype == np.uint8 else ">u2")  # PNG has no float samples
        self.icc, self.notes = fitting_profile(icc, channels, self.path.name)
        self.metadata = None if metadata is None else fitted(metadata, ".png", self.path.name)[0]
        self.texts, self.room = text_chunks(notes), room
        self.rows, self.clipped = 0, False
        self.prior = np.zeros(width * channels * self.stored.itemsize, np.uint8)
        self.deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, 15, 8, STRATEGY)
        self.compressed = bytearray()
        try:
            self.file = open(self.partial, "wb")  # noqa: SIM115 (open until finish or abort)
        except OSError as error:
            raise ImageFileError(f"{self.path}: cannot write ({error.strerror or error})") from error
        self._write(self._header())

    def _header(self) -> bytes:
        height, width, channels = self.shape
        ihdr = struct.pack(">IIBBBBB", width, height, 8 * self.stored.itemsize, COLOUR_TYPES[channels], 0, 0, 0)
        chunks = [(b"IHDR", ihdr)]
        if self.icc:
            chunks.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(self.icc)))
        early, late = _split(png_chunks_for(self.metadata or Metadata()))
        chunks, region = chunks + early, late + self.texts
        self.region = _size(region) + (self.room if late else 0)  # rewritten at the end, in place
        self.region_at = len(PNG_SIGNATURE) + _size(chunks)
        return PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in chunks) + _filled(region, self.region)

    def add(self, top: int, rows: np.ndarray) -> None:
        """Rows [top, top + n) of the image, (n, W[, C]) in its dtype, following those added before."""
        if top != self.rows:
            raise ValueError(f"rows must come top to bottom: expected row {self.rows}, got {top}")
        self.rows += rows.shape[0]
        samples = rows.reshape(rows.shape[0], -1)
        step = max(1, BLOCK_BYTES // (samples.shape[1] * self.stored.itemsize))
        for start in range(0, samples.shape[0], step):  # converted a block at a time: a float band is not copied
            block = self._stored(samples[start : start + step])
            self.compressed += self.deflate.compress(
                filter_rows(block, self.prior, self.shape[2] * self.stored.itemsize)
            )
            self.prior = block[-1].copy()
            if len(self.compressed) >= IDAT_BYTES:
                self._write(png_chunk(b"IDAT", bytes(self.compressed)))
                self.compressed.clear()

    def _stored(self, samples: np.ndarray) -> np.ndarray:
        """Rows of samples as the file stores them: bytes, 16-bit samples big-endian, float as 16 bits."""
        if self.dtype == np.float32:
            self.clipped = self.clipped or beyond_one(samples.reshape(samples.shape[0], *self.shape[1:]))
            samples = to_integer(samples, np.uint16)
        return samples.astype(self.stored, copy=False).view(np.uint8)

    def finish(self, metadata: Metadata | None, notes: dict[str, str] | None = None) -> list[str]:
        """Close the file with `metadata` and `notes` (text chunks; None: those of the start) and put it in
        place; notes as write_image's."""
        if self.rows != self.shape[0]:
            raise ImageFileError(f"{self.path}: only {self.rows} of {self.shape[0]} rows were written")
        left_out, final = [], self.metadata
        if metadata is not None:
            final, left_out = fitted(metadata, ".png", self.path.name)
        try:
            inside, after = self._placed(final, self.texts if notes is None else text_chunks(notes))
            self._write(png_chunk(b"IDAT", bytes(self.compressed) + self.deflate.flush()))
            self._write(b"".join(png_chunk(kind, body) for kind, body in after) + png_chunk(b"IEND", b""))
            if inside:
                self.file.seek(self.region_at)
                self._write(_filled(inside, self.region))
            self.file.close()
            os.replace(self.partial, self.path)
        except OSError as error:
            self.abort()
            raise ImageFileError(f"{self.path}: cannot write ({error.strerror or error})") from error
        clipping = [clipping_note(self.path.name)] if self.clipped else []
        return self.notes + left_out + clipping

    def _placed(self, final: Metadata | None, texts: list) -> tuple[list, list]:
        """(the chunks that go in the region kept before the pixels, the text chunks that follow them)."""
        early, late = _split(png_chunks_for(final or Metadata()))
        if early != _split(png_chunks_for(self.metadata or Metadata()))[0]:
            raise OSError("the resolution or IPTC differ from those given at the start; give them then")
        for inside, after in ((late + texts, []), (late, texts)):  # text may follow the pixels; EXIF may not
            fill = _size(inside) == self.region or (_size(inside) < self.region and bool(late))  # late: elastic
            if fill:
                return inside, after
        raise OSError(
            f"the final EXIF, XMP and notes ({_size(late + texts)} bytes) cannot fill the {self.region} bytes "
            "kept for them before the pixels; give the metadata at the start"
        )

    def abort(self) -> None:
        """Stop writing and remove the partial file."""
        self.file.close()
        self.partial.unlink(missing_ok=True)

    def _write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as error:
            self.abort()
            raise ImageFileError(f"{self.path}: cannot write ({error.strerror or error})") from error


def _split(chunks: list[tuple[bytes, bytes]]) -> tuple[list, list]:
    """(those that do not depend on the job, those that do: EXIF and XMP, which carry its provenance)."""
    late = [chunk for chunk in chunks if _elastic(chunk)]
    return [chunk for chunk in chunks if not _elastic(chunk)], late


def _elastic(chunk: tuple[bytes, bytes]) -> bool:
    kind, body = chunk
    return kind == b"eXIf" or (kind == b"iTXt" and body.startswith(_XMP_KEY))


def _size(chunks: list[tuple[bytes, bytes]]) -> int:
    return sum(12 + len(body) for _, body in chunks)


def _filled(chunks: list[tuple[bytes, bytes]], size: int) -> bytes:
    """`chunks` made `size` bytes long in all: the XMP padded with whitespace before its trailer (or the EXIF
    with zeros after its TIFF stream, where there is no XMP)."""
    slack = size - _size(chunks)
    if not slack:
        return b"".join(png_chunk(kind, body) for kind, body in chunks)
    xmp = next((k for k, chunk in enumerate(chunks) if chunk[0] == b"iTXt" and _elastic(chunk)), None)
    grown = xmp if xmp is not None else next(k for k, chunk in enumerate(chunks) if _elastic(chunk))
    kind, body = chunks[grown]
    if kind == b"eXIf":
        body += bytes(slack)
    else:
        padding = (b" " * 99 + b"\n") * (slack // 100) + b" " * (slack % 100)
        at = body.rfind(_XMP_TRAILER)
        body = body[:at] + padding + body[at:] if at >= 0 else body + padding
    chunks = [*chunks[:grown], (kind, body), *chunks[grown + 1 :]]
    return b"".join(png_chunk(kind, body) for kind, body in chunks)
