"""The wire protocol between the InvSR worker and its clients (docs/PROTOCOL.md is its description).

Standard library only: this module also runs inside GIMP's Python, in the plug-in. Errors travel as
their code (errors.py), and the receiver raises the same class again.

A message is a list of ZeroMQ frames: [signature, header, buffer...]. The header is UTF-8 JSON; buffers
are raw bytes (pixels). The signature is HMAC-SHA256, keyed with the per-start secret from the connection
file, over each frame's length and the SHA-256 of each of its 4 MiB pieces: the pieces hash on all cores
at once, which a single HMAC over the bytes could not. Where the transport itself keeps others from
altering frames (an ipc socket, loopback, CurveZMQ: the connection file's `signed_buffers` is false), a
buffer is signed by its length alone, not its bytes (docs/PROTOCOL.md, "What the signature covers, and
why"). It is checked before anything is decoded. Nothing from the wire is ever unpickled or evaluated.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import hmac
import json
import os
import time
import uuid

from .contract import CHANNELS, PIXEL_DTYPES, sample_bytes
from .errors import BadMessage, InvalidImage, InvSRError, TooLarge, Unauthorized, VersionMismatch

PROTOCOL_VERSION = (3, 3)  # the one place the version is written; docs/PROTOCOL.md must match
# 3.0 signed every buffer's bytes; a 3.1 peer whose transport protects frames signs only their lengths, which 3.0
# cannot verify: so 3.0 is refused like another major version, with a message that says to update both sides.
# 3.2 adds results in bands of rows (`bands` in an upscale, `band` replies); a 3.1 peer still gets whole results.
# 3.3 adds flow control of bands (`window` in an upscale, `taken` requests); a 3.2 client gets bands unpaced.
OLDEST_COMPATIBLE = (3, 1)
MAX_HEADER_BYTES = 64 * 1024
MAX_BUFFERS = 16  # buffers in one message at most: an upscale has one, an echo a few (docs/PROTOCOL.md)
SIGNATURE_BYTES = 32
PIECE_BYTES = 4 * 1024 * 1024  # frames are hashed in pieces of this size (part of the signature's definition)
PARALLEL_FROM_BYTES = 2 * PIECE_BYTES  # smaller messages hash faster than a thread pool starts work

REQUESTS = ("hello", "ping", "echo", "status", "upscale", "cancel", "taken")


def version_text(version=PROTOCOL_VERSION) -> str:
    return f"{version[0]}.{version[1]}"


def parse_version(text) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        raise BadMessage(f"protocol version must look like '1.0', got {text!r}") from None


def new_id() -> str:
    return uuid.uuid4().hex


# --- messages ---------------------------------------------------------------------------------------


def sign(key: bytes, header: bytes, buffers, signed_buffers: bool = True) -> bytes:
    """HMAC(key, for each frame: its length as 8 bytes big-endian || SHA-256 of each of its pieces).

    With `signed_buffers` False only the header's pieces are hashed: each buffer adds its length alone, so
    the buffers' number and sizes stay signed, their bytes are left to the transport to protect."""
    frames = [_bytes_view(frame) for frame in (header, *buffers)]
    hashed = frames if signed_buffers else frames[:1]
    pieces = [frame[start : start + PIECE_BYTES] for frame in hashed for start in range(0, frame.nbytes, PIECE_BYTES)]
    digests = iter(_hash_pieces(pieces, sum(frame.nbytes for frame in hashed)))
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for index, frame in enumerate(frames):
        mac.update(frame.nbytes.to_bytes(8, "big"))
        if index < len(hashed):
            for _ in range(0, frame.nbytes, PIECE_BYTES):
                mac.update(next(digests))
    return mac.digest()


def _bytes_view(frame) -> memoryview:
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _sha256(piece) -> bytes:
    return hashlib.sha256(piece).digest()


def _hash_pieces(pieces: list, total_bytes: int) -> list:
    if total_bytes < PARALLEL_FROM_BYTES:
        return [_sha256(piece) for piece in pieces]
    return list(_HASHERS.map(_sha256, pieces))  # hashlib lets go of the GIL while it hashes


# Its threads start at the first large message, and are shared by every thread that signs or checks.
_HASHERS = concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1), thread_name_prefix="invsr-sign")


@dataclasses.dataclass
class Message:
    """`type` and `fields` make the JSON header (with the protocol version); `buffers` travel raw.

    `signed_buffers`, in `encode` and `decode`: whether the signature covers the buffers' bytes or only their
    lengths; both sides take it from the connection file (connection.Connection.signed_buffers)."""

    type: str
    fields: dict = dataclasses.field(default_factory=dict)
    buffers: list = dataclasses.field(default_factory=list)

    def encode(self, key: bytes, signed_buffers: bool = True) -> list:
        header = dict(self.fields, protocol=version_text(), type=self.type, sent=time.time())
        data = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
        return [sign(key, data, self.buffers, signed_buffers), data, *self.buffers]

    @classmethod
    def decode(cls, key: bytes, frames: list, signed_buffers: bool = True) -> Message:
        """Verify, then parse. Raises Unauthorized, BadMessage or VersionMismatch."""
        if len(frames) < 2:
            raise BadMessage(f"a message has a signature and a header frame, got {len(frames)} frame(s)")
        signature, header, buffers = frames[0], frames[1], frames[2:]
        if memoryview(header).nbytes > MAX_HEADER_BYTES:
            raise BadMessage(f"header over {MAX_HEADER_BYTES} bytes")
        if len(buffers) > MAX_BUFFERS:
            raise BadMessage(f"a message carries at most {MAX_BUFFERS} buffers, got {len(buffers)}")
        if not hmac.compare_digest(bytes(signature), sign(key, header, buffers, signed_buffers)):
            claimed = _unverified_version(header)
            if claimed is not None:
                _check_version(claimed)  # another version signs differently: say so, not blame the secret
            raise Unauthorized(
                "wrong or missing signature: the secret does not match the worker's connection file, "
                "or the message was altered on its way"
            )
        try:
            fields = json.loads(bytes(header).decode("utf-8"))
        except (ValueError, RecursionError) as error:  # ValueError: not UTF-8, not JSON, or a number too long
            raise BadMessage(f"header is not UTF-8 JSON (or nested too deeply): {error}") from None
        if not isinstance(fields, dict) or not isinstance(fields.get("type"), str):
            raise BadMessage("header must be a JSON object with a string 'type'")
        _check_version(fields.get("protocol"))
        return cls(fields.pop("type"), fields, list(buffers))


def _check_version(text) -> None:
    major, minor = parse_version(text)
    if major != PROTOCOL_VERSION[0] or (major, minor) < OLDEST_COMPATIBLE:
        raise VersionMismatch(
            f"protocol {text} is not compatible with this side's {version_text()}: "
            "update the plug-in and the worker together",
            {"supported": version_text()},
        )


def _unverified_version(header) -> str | None:
    """The protocol version an unverified header names, if readable (at most 64 KiB of JSON, only read)."""
    try:
        text = json.loads(bytes(header).decode("utf-8"))["protocol"]
        parse_version(text)
        return text
    except (ValueError, RecursionError, TypeError, KeyError, BadMessage):
        return None


def unverified_request_id(header) -> str | None:
    """The request id an unverified header names, if readable: only to tell its sender which request an error
    answers (a frame altered on its way, an older version), on the connection it came by; nothing else in it
    is acted upon. Without it a client would take the error for no answer and wait on."""
    try:
        request_id = json.loads(bytes(header).decode("utf-8"))["id"]
    except (ValueError, RecursionError, TypeError, KeyError):
        return None
    return request_id if isinstance(request_id, str) and len(request_id) <= 200 else None


def error_message(error: InvSRError, reply_to: str | None) -> Message:
    fields = {"code": error.code, "message": str(error), "details": error.details}
    if reply_to:
        fields["re"] = reply_to
    return Message("error", fields)


def pixel_frame_size(header: dict, max_pixels: int) -> int:
    """Check an upscale header's image description; return the byte size its pixel frame must have."""
    width, height, channels, dtype = (header.get(k) for k in ("width", "height", "channels", "dtype"))
    for name, value in (("width", width), ("height", height), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadMessage(f"{name} must be a positive integer, got {value!r}")
    if channels not in CHANNELS:
        raise InvalidImage(f"channels must be 1 to 4 (gray, gray+alpha, RGB, RGBA), got {channels}")
    if not isinstance(dtype, str):  # an object or a list cannot even be looked up
        raise BadMessage(f"dtype must be a string ({', '.join(PIXEL_DTYPES)}), got {type(dtype).__name__}")
    if dtype not in PIXEL_DTYPES:
        raise InvalidImage(f"dtype must be one of {', '.join(PIXEL_DTYPES)}, got {dtype!r}")
    if width * height > max_pixels:
        raise TooLarge(f"a {width} x {height} image is over this worker's limit of {max_pixels:,} input pixels")
    return width * height * channels * sample_bytes(dtype)
