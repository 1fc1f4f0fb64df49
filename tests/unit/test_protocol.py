"""The signature of every message, checked against its definition in docs/PROTOCOL.md, whole or hashed
in parallel, for any kind of buffer; a change anywhere in a frame is caught."""

import hashlib
import hmac

import numpy as np
import pytest
from protocol_helpers import signature_as_documented, signed_as_version_1, signed_as_version_3_0

from invsr.wire import errors, protocol
from invsr.wire.protocol import PIECE_BYTES, Message, sign

KEY = bytes(range(32))


@pytest.mark.parametrize(
    "sizes", [(), (0,), (1,), (PIECE_BYTES,), (PIECE_BYTES + 1,), (3 * PIECE_BYTES + 5, 7, 0, PIECE_BYTES - 1)]
)
def test_signature_follows_the_documented_definition(sizes):
    rng = np.random.default_rng(sum(sizes))
    buffers = [rng.bytes(size) for size in sizes]
    header = b'{"type":"echo"}'
    assert sign(KEY, header, buffers) == signature_as_documented(KEY, [header, *buffers])


def test_signature_is_the_same_for_any_view_of_the_same_bytes():
    image = np.random.default_rng(1).integers(0, 65535, (1500, 1000, 4), dtype=np.uint16)  # 12 MB: hashed in parallel
    expected = signature_as_documented(KEY, [b"{}", image.tobytes()])
    for view in (image, memoryview(image), memoryview(image).cast("B"), image.tobytes(), bytearray(image.tobytes())):
        assert sign(KEY, b"{}", [view]) == expected


def test_a_change_in_any_piece_or_a_moved_boundary_is_refused():
    payload = bytearray(np.random.default_rng(2).bytes(3 * PIECE_BYTES))
    frames = Message("echo", {"id": "x"}, [payload]).encode(KEY)
    assert Message.decode(KEY, frames).buffers[0] == payload
    for position in (0, PIECE_BYTES + 17, len(payload) - 1):
        tampered = bytearray(payload)
        tampered[position] ^= 1
        with pytest.raises(errors.Unauthorized):
            Message.decode(KEY, [frames[0], frames[1], tampered])
    with pytest.raises(errors.Unauthorized):  # the same bytes cut into two buffers
        Message.decode(KEY, [frames[0], frames[1], payload[:PIECE_BYTES], payload[PIECE_BYTES:]])
    with pytest.raises(errors.Unauthorized):
        Message.decode(b"another secret", frames)


def test_a_message_of_another_major_version_is_named_as_such_not_as_a_wrong_secret():
    with pytest.raises(
        errors.VersionMismatch, match=f"protocol 1.0 is not compatible with this side's {protocol.version_text()}"
    ):
        Message.decode(KEY, signed_as_version_1(KEY, {"type": "ping", "id": "a"}))
    garbage = [b"x" * 32, b"\xff not json"]
    with pytest.raises(errors.Unauthorized):
        Message.decode(KEY, garbage)


def test_a_header_nested_too_deeply_is_refused_not_a_crash():
    nested = b"[" * 30_000 + b"]" * 30_000  # under the 64 KiB limit, far over the parser's recursion limit
    with pytest.raises(errors.Unauthorized):
        Message.decode(KEY, [b"x" * 32, nested])
    with pytest.raises(errors.BadMessage, match="nested too deeply"):
        Message.decode(KEY, [sign(KEY, nested, []), nested])


def signature_of_lengths_as_documented(key, header, buffers):
    """HMAC(key, len(header) || SHA-256 of each of its pieces || len(buffer) for each buffer): where the
    transport protects frames (protocol 3.1), buffers are signed by their lengths alone."""
    text = len(header).to_bytes(8, "big") + hashlib.sha256(header).digest()
    text += b"".join(len(bytes(buffer)).to_bytes(8, "big") for buffer in buffers)
    return hmac.new(key, text, hashlib.sha256).digest()


def test_unsigned_buffers_are_signed_by_their_number_and_lengths_as_documented():
    payload = bytearray(np.random.default_rng(3).bytes(PIECE_BYTES + 9))
    header = b'{"type":"echo"}'
    assert sign(KEY, header, [payload, b"ab"], signed_buffers=False) == signature_of_lengths_as_documented(
        KEY, header, [payload, b"ab"]
    )
    frames = Message("echo", {"id": "x"}, [payload]).encode(KEY, signed_buffers=False)
    tampered = bytearray(payload)
    tampered[5] ^= 1  # the transport's to protect: the signature does not see it
    assert Message.decode(KEY, [frames[0], frames[1], tampered], signed_buffers=False).buffers[0] == tampered
    for moved in ([payload[:-1]], [payload, b""], [payload[:PIECE_BYTES], payload[PIECE_BYTES:]], []):
        with pytest.raises(errors.Unauthorized):  # another length or number of buffers is refused
            Message.decode(KEY, [frames[0], frames[1], *moved], signed_buffers=False)
    with pytest.raises(errors.Unauthorized):  # nor does either way of signing pass for the other
        Message.decode(KEY, frames, signed_buffers=True)
    with pytest.raises(errors.Unauthorized):
        Message.decode(KEY, Message("echo", {"id": "y"}, [payload]).encode(KEY), signed_buffers=False)


def test_a_3_0_message_is_refused_as_another_version_with_or_without_buffers():
    for buffers in ((), (b"pixels",)):
        with pytest.raises(errors.VersionMismatch, match="protocol 3.0 is not compatible with this side's 3.3"):
            Message.decode(KEY, signed_as_version_3_0(KEY, {"type": "echo", "id": "a"}, buffers), signed_buffers=False)
