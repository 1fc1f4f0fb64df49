"""Reading the worker's messages a frame at a time, and refusing what the protocol does not allow before it is
hashed, parsed or kept.

libzmq hands a multipart message to the application only once its last frame has arrived; until then its I/O
thread holds the frames (how long one frame may take is bounded by the heartbeats, listening.py). Read with
recv_multipart, every frame would then become a Python object, and checking the signature would hash them
all: a million empty frames (2 MB on the wire) used to cost the worker 14 to 24 s and 860 MB. So the frames
are read one at a time (ZMQ_RCVMORE) and checked as they come: the signature's size, the header's (a header
over MAX_HEADER_BYTES is never parsed, not even for its request id), the number of buffers (MAX_BUFFERS) and
their total size (the message limit). At the first frame beyond a limit the message is refused, what was kept
of it let go, and the rest read and dropped frame by frame, in slices of DROP_SLICE frames between which the
worker's loop goes on forwarding progress and results to the clients of running jobs.
"""

from __future__ import annotations

import dataclasses
import time

import zmq

from invsr.wire.errors import BadMessage
from invsr.wire.protocol import MAX_BUFFERS, MAX_HEADER_BYTES, SIGNATURE_BYTES, unverified_request_id

DROP_SLICE = 20_000  # frames of a refused message dropped per turn of the worker's loop (some milliseconds)


@dataclasses.dataclass
class Arrival:
    """One message: whole (`frames`: signature, header, buffers), or refused (`refusal`, and no frames)."""

    client: bytes  # the routing id of the connection it came by
    frames: list = dataclasses.field(default_factory=list)
    refusal: BadMessage | None = None
    request_id: str | None = None  # of a refused message, read from a header within the size limit only


class Intake:
    def __init__(self, router: zmq.Socket, max_message_bytes: int):
        self.router, self.max_message_bytes = router, max_message_bytes
        self.refused: Arrival | None = None  # a refused message whose remaining frames are being dropped
        self.refused_at = 0.0  # when it was refused (time.monotonic)
        self.more = False  # whether the refused message has frames left

    def receive(self) -> Arrival | None:
        """The next message, whole or refused; None while a refused one still has frames to drop (the ROUTER
        stays readable until its last frame is read: call again)."""
        if self.refused is None:
            arrival = self._read()
            if arrival.refusal is None:
                return arrival
            self.refused, self.refused_at = arrival, time.monotonic()
        if not self._drop(DROP_SLICE):
            return None
        arrival, self.refused = self.refused, None
        return arrival

    def _read(self) -> Arrival:
        first = self.router.recv(copy=False)
        arrival, more, buffered = Arrival(first.bytes), first.more, 0
        while more:
            frame = self.router.recv(zmq.NOBLOCK, copy=False)  # the whole message has arrived: never waits
            more, index, size = frame.more, len(arrival.frames), len(frame)
            problem = self._problem(index, size, buffered)
            if problem is not None:
                if index >= 2:  # a header within the limit: its id tells the sender which request is refused
                    arrival.request_id = unverified_request_id(arrival.frames[1].buffer)
                arrival.refusal, arrival.frames, self.more = BadMessage(problem), [], more
                return arrival
            arrival.frames.append(frame)
            buffered += size if index >= 2 else 0
        return arrival

    def _problem(self, index: int, size: int, buffered: int) -> str | None:
        """What is wrong with frame `index` of a message (0 the signature, 1 the header, then the buffers)."""
        if index == 0 and size > SIGNATURE_BYTES:
            return f"a signature is {SIGNATURE_BYTES} bytes, got a frame of {size}"
        if index == 1 and size > MAX_HEADER_BYTES:
            return f"header over {MAX_HEADER_BYTES} bytes (refused unread)"
        if index - 1 > MAX_BUFFERS:
            return f"a message carries at most {MAX_BUFFERS} buffers; the rest of this one was dropped unread"
        if index >= 2 and buffered + size > self.max_message_bytes:
            return f"the buffers of a message may hold {self.max_message_bytes} bytes in all, these hold more"
        return None

    def _drop(self, budget: int) -> bool:
        """Read and drop up to `budget` frames of the refused message; whether none is left."""
        try:
            while self.more and budget > 0:
                self.more = self.router.recv(zmq.NOBLOCK, copy=False).more
                budget -= 1
        except zmq.Again:  # not expected (a message arrives whole); try again at the next turn
            return False
        return not self.more
