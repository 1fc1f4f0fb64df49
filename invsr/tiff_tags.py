"""The two things about TIFF directories that neither tifffile nor Pillow does for us.

- tifffile writes our pixels (16-bit RGB, float) and every tag of the first directory but refuses EXIF's
  and GPS's sub-directories (their pointer tags are filtered: out of its scope, its author says), and
  Pillow, which writes them, has no 16-bit RGB(A) or float RGB mode. add_directories appends them to
  tifffile's file: the sub-directories, serialised by Pillow at their final offsets, and a new first
  directory, the old entries plus the two pointers in ascending order; the header then points to it. The
  old directory stays in the file, unreferenced (a few hundred bytes).
- Pillow writes a byte string of a tag it has no type for as BYTE, where EXIF has UNDEFINED (exiftool
  warns: "Non-standard format (int8u)"); bytes_as_undefined retypes them in place.
Classic TIFF and BigTIFF, either byte order.
"""

from __future__ import annotations

import struct

from PIL.ExifTags import IFD, Base
from PIL.TiffTags import BYTE, UNDEFINED

EXIF_IFD, GPS_IFD, INTEROP_IFD = IFD.Exif, IFD.GPSInfo, IFD.Interop
# Windows' own text tags, UCS-2 in BYTE by their standard; Pillow has no type for them
WINDOWS_TAGS = {Base.XPTitle, Base.XPComment, Base.XPAuthor, Base.XPKeywords, Base.XPSubject}


def add_directories(data: bytes, directories: dict[int, dict]) -> bytes:
    """`data`, a TIFF file, with `directories` (EXIF_IFD or GPS_IFD -> its tags, as Pillow's
    ImageFileDirectory_v2 takes them) added to its first directory, BYTE strings retyped as EXIF's."""
    if not directories:
        return data
    layout = _Layout.of(data)
    appended, directory_offset = _supplement(data, layout, directories)
    out = bytearray(data)
    layout.set_first_offset(out, directory_offset)
    out += appended
    return bytes_as_undefined(bytes(out))


def add_directories_to_file(path, directories: dict[int, dict]) -> None:
    """As `add_directories`, to the TIFF file at `path` in place: what is added goes at its end, and only its
    header and directories are read and retyped (mapped, not read: its pixels may be gigabytes)."""
    import mmap

    if not directories:
        return
    with open(path, "r+b") as file:
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            layout = _Layout.of(data)
            appended, directory_offset = _supplement(data, layout, directories)
        file.seek(0, 2)
        file.write(appended)
        file.seek(8 if layout.big else 4)
        file.write(layout.pack_offset(directory_offset))
        file.flush()
        with mmap.mmap(file.fileno(), 0) as out:
            _retype(out)
            out.flush()


def _supplement(data, layout: _Layout, directories: dict[int, dict]) -> tuple[bytes, int]:
    """What to append to the TIFF `data` for `add_directories`: the directories, then a copy of the first
    directory that points to them; and that copy's offset."""
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    entries = layout.entries(data, layout.first_offset(data))
    next_offset = layout.next_offset(data, layout.first_offset(data))
    start = len(data) + len(data) % 2  # TIFF offsets are word aligned
    supplement = ImageFileDirectory_v2(ifh=layout.header(data))
    for tag, directory in directories.items():
        supplement[tag] = directory
    serialised = supplement.tobytes(start)
    entries.update(layout.entries(serialised, 0))  # Pillow wrote offsets for `start`
    directory_offset = start + len(serialised) + len(serialised) % 2
    directory = layout.pack_count(len(entries)) + b"".join(entries[tag] for tag in sorted(entries))
    directory += layout.pack_offset(next_offset)
    return bytes(start - len(data)) + serialised + bytes(len(serialised) % 2) + directory, directory_offset


def bytes_as_undefined(data: bytes) -> bytes:
    """A TIFF stream (a file, or EXIF's) whose BYTE entries that Pillow has no type for are UNDEFINED, in
    the first directory and its EXIF, GPS and interoperability directories (same size: retyped in place)."""
    out = bytearray(data)
    _retype(out)
    return bytes(out)


def _retype(out) -> None:
    """`bytes_as_undefined` in the writable buffer `out`."""
    from PIL.TiffTags import lookup

    layout = _Layout.of(out)
    pending, seen = [(layout.first_offset(out), None)], set()
    while pending:
        offset, group = pending.pop()
        if offset in seen or not 0 < offset < len(out):
            continue
        seen.add(offset)
        for position in layout.entry_positions(out, offset):
            tag, kind = struct.unpack_from(layout.order + "HH", out, position)
            if tag in (EXIF_IFD, GPS_IFD, INTEROP_IFD):
                pending.append((layout.pointer(out, position), tag))
            elif kind == BYTE and lookup(tag, group).type != BYTE and tag not in WINDOWS_TAGS:
                struct.pack_into(layout.order + "H", out, position + 2, UNDEFINED)


class _Layout:
    """Byte order and field sizes of classic TIFF (16-bit counts, 12-byte entries, 32-bit offsets) or
    BigTIFF (64-bit counts, 20-byte entries, 64-bit offsets)."""

    def __init__(self, order: str, big: bool):
        self.order, self.big = order, big
        self.count_format, self.offset_format = ("Q", "Q") if big else ("H", "I")
        self.entry_size = 20 if big else 12

    @classmethod
    def of(cls, data: bytes) -> _Layout:
        orders = {b"II": "<", b"MM": ">"}
        if bytes(data[:2]) not in orders:
            raise ValueError("not a TIFF file")
        order = orders[bytes(data[:2])]
        version = struct.unpack(order + "H", data[2:4])[0]
        if version not in (42, 43):
            raise ValueError(f"not a TIFF file (version {version})")
        return cls(order, version == 43)

    def header(self, data: bytes) -> bytes:
        return data[:16] if self.big else data[:8]

    def first_offset(self, data: bytes) -> int:
        return struct.unpack_from(self.order + self.offset_format, data, 8 if self.big else 4)[0]

    def set_first_offset(self, data: bytearray, offset: int) -> None:
        struct.pack_into(self.order + self.offset_format, data, 8 if self.big else 4, offset)

    def _count(self, data: bytes, offset: int) -> int:
        return struct.unpack_from(self.order + self.count_format, data, offset)[0]

    def entry_positions(self, data: bytes, offset: int) -> list[int]:
        begin = offset + struct.calcsize(self.count_format)
        return [begin + i * self.entry_size for i in range(self._count(data, offset))]

    def entries(self, data: bytes, offset: int) -> dict[int, bytes]:
        """The raw entries of the directory at `offset`, by tag (their values' offsets stay valid)."""
        raw = [data[position : position + self.entry_size] for position in self.entry_positions(data, offset)]
        return {struct.unpack_from(self.order + "H", entry)[0]: entry for entry in raw}

    def pointer(self, data: bytes, position: int) -> int:
        """The directory offset an entry holds (LONG or IFD; in BigTIFF also LONG8 or IFD8)."""
        kind = struct.unpack_from(self.order + "H", data, position + 2)[0]
        value = position + (12 if self.big else 8)
        return struct.unpack_from(self.order + ("Q" if kind in (16, 18) else "I"), data, value)[0]

    def next_offset(self, data: bytes, offset: int) -> int:
        end = offset + struct.calcsize(self.count_format) + self._count(data, offset) * self.entry_size
        return struct.unpack_from(self.order + self.offset_format, data, end)[0]

    def pack_count(self, count: int) -> bytes:
        return struct.pack(self.order + self.count_format, count)

    def pack_offset(self, offset: int) -> bytes:
        return struct.pack(self.order + self.offset_format, offset)
