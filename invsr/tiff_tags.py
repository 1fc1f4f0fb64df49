"""Tags added to a TIFF file that another encoder (OpenCV's libtiff) wrote, without touching its pixels.

A TIFF's first directory (IFD) lists its tags; values longer than the entry's slot live elsewhere in the
file, at offsets the entry gives. To add tags, the new values (and any sub-directories, such as EXIF's)
are appended, serialised by Pillow at their final offsets, and a new first directory, the old entries
and the new ones in ascending order, is appended after them; the header then points to it. The old
directory stays in the file, unreferenced (a few hundred bytes). Classic TIFF and BigTIFF, either byte
order.
"""

from __future__ import annotations

import struct

BYTE, LONG, UNDEFINED = 1, 4, 7
EXIF_IFD, GPS_IFD, INTEROP_IFD = 0x8769, 0x8825, 0xA005
_TYPE_SIZES = {3: 2, 4: 4, 5: 8, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}  # others: 1
_WINDOWS_TAGS = range(0x9C9B, 0x9CA0)  # XPTitle to XPSubject: BYTE by the standard, unknown to Pillow


def add_tags(data: bytes, tags: dict, as_longs: tuple[int, ...] = ()) -> bytes:
    """`data`, a TIFF file, with `tags` (tag number -> value, as Pillow's ImageFileDirectory_v2 takes
    them: a dict for a sub-directory) added to its first directory; a tag it has already is replaced.
    The bytes of the tags in `as_longs` are written as they are, padded with zeros and typed as 32-bit
    words (IPTC's type in TIFF; Pillow would keep only the first word)."""
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    if not tags:
        return data
    layout = _Layout.of(data)
    entries = layout.entries(data, layout.first_offset(data))
    next_offset = layout.next_offset(data, layout.first_offset(data))
    start = len(data) + len(data) % 2  # TIFF offsets are word aligned
    supplement = ImageFileDirectory_v2(ifh=layout.header(data))
    for tag, value in tags.items():
        if tag not in as_longs:
            supplement[tag] = value
    serialised = supplement.tobytes(start) if len(supplement) else b""
    entries.update(layout.entries(serialised, 0) if serialised else {})  # Pillow wrote offsets for `start`
    blobs = bytes(len(serialised) % 2)
    for tag in (tag for tag in as_longs if tag in tags):
        value = bytes(tags[tag]) + bytes(-len(tags[tag]) % 4)
        inline = len(value) <= layout.slot
        field = value.ljust(layout.slot, b"\0") if inline else layout.pack_offset(start + len(serialised) + len(blobs))
        entries[tag] = layout.pack_entry(tag, LONG, len(value) // 4, field)
        blobs += b"" if inline else value
    directory_offset = start + len(serialised) + len(blobs)
    directory = layout.pack_count(len(entries)) + b"".join(entries[tag] for tag in sorted(entries))
    directory += layout.pack_offset(next_offset)
    out = bytearray(data)
    layout.set_first_offset(out, directory_offset)
    out += bytes(start - len(data)) + serialised + blobs + directory
    return bytes_as_undefined(bytes(out))


def raw_value(data: bytes, tag: int) -> bytes | None:
    """The bytes of a tag's value in a TIFF file's first directory, as stored; None when absent."""
    layout = _Layout.of(data)
    for position in layout.entry_positions(data, layout.first_offset(data)):
        found, kind = struct.unpack_from(layout.order + "HH", data, position)
        if found == tag:
            count = struct.unpack_from(layout.order + layout.offset_format, data, position + 4)[0]
            size = count * _TYPE_SIZES.get(kind, 1)
            field = position + 4 + struct.calcsize(layout.offset_format)
            if size <= layout.slot:
                return data[field : field + size]
            offset = struct.unpack_from(layout.order + layout.offset_format, data, field)[0]
            return data[offset : offset + size]
    return None


def bytes_as_undefined(data: bytes) -> bytes:
    """A TIFF stream (a file, or EXIF's) whose BYTE entries that Pillow has no type for are UNDEFINED, in
    the first directory and its EXIF, GPS and interoperability directories (same size: retyped in place)."""
    from PIL.TiffTags import lookup

    layout, out = _Layout.of(data), bytearray(data)
    pending, seen = [(layout.first_offset(data), None)], set()
    while pending:
        offset, group = pending.pop()
        if offset in seen or not 0 < offset < len(out):
            continue
        seen.add(offset)
        for position in layout.entry_positions(out, offset):
            tag, kind = struct.unpack_from(layout.order + "HH", out, position)
            if tag in (EXIF_IFD, GPS_IFD, INTEROP_IFD):
                pending.append((layout.pointer(out, position), tag))
            elif kind == BYTE and lookup(tag, group).type != BYTE and tag not in _WINDOWS_TAGS:
                struct.pack_into(layout.order + "H", out, position + 2, UNDEFINED)
    return bytes(out)


class _Layout:
    """Byte order and field sizes of classic TIFF (16-bit counts, 12-byte entries, 32-bit offsets) or
    BigTIFF (64-bit counts, 20-byte entries, 64-bit offsets)."""

    def __init__(self, order: str, big: bool):
        self.order, self.big = order, big
        self.count_format, self.offset_format = ("Q", "Q") if big else ("H", "I")
        self.entry_size = 20 if big else 12
        self.slot = 8 if big else 4  # bytes of a value held in the entry itself

    @classmethod
    def of(cls, data: bytes) -> _Layout:
        orders = {b"II": "<", b"MM": ">"}
        if data[:2] not in orders:
            raise ValueError("not a TIFF file")
        order = orders[data[:2]]
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

    def pack_entry(self, tag: int, kind: int, count: int, field: bytes) -> bytes:
        return struct.pack(self.order + "HH" + self.offset_format, tag, kind, count) + field

    def pack_offset(self, offset: int) -> bytes:
        return struct.pack(self.order + self.offset_format, offset)
