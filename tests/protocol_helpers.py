"""Messages as the protocol's document defines them, and as older versions of the protocol signed them: what
a peer that is not our client sends (tests of the signature, of versions, of the worker's refusals)."""

import hashlib
import hmac
import json


def signature_as_documented(key, frames):
    """HMAC(key, for each frame: len as 8 bytes big-endian || SHA-256 of each 4 MiB piece)."""
    text = b""
    for frame in frames:
        data = bytes(frame)
        text += len(data).to_bytes(8, "big")
        text += b"".join(
            hashlib.sha256(data[i : i + 4 * 1024 * 1024]).digest() for i in range(0, len(data), 4 * 1024 * 1024)
        )
    return hmac.new(key, text, hashlib.sha256).digest()


def signed_as_version_1(key, fields, buffers=()):
    """A message as protocol 1.0 signed it: one HMAC over every frame's length and bytes."""
    header = json.dumps(dict(fields, protocol="1.0")).encode()
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in (header, *buffers):
        mac.update(len(frame).to_bytes(8, "big") + bytes(frame))
    return [mac.digest(), header, *buffers]


def signed_as_version_3_0(key, fields, buffers=()):
    """A message as protocol 3.0 signed it: every buffer's bytes, whatever the transport."""
    header = json.dumps(dict(fields, protocol="3.0", sent=1e9)).encode()
    return [signature_as_documented(key, [header, *buffers]), header, *buffers]
