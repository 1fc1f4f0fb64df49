"""The replay guard: refuses a signed message the worker has already received, or one too old to tell.

A message is fresh when its `sent` time is within REPLAY_WINDOW of the worker's clock. Its signature is
remembered until its `sent` time leaves that window: from then on a replay is refused as too old, so the
guard never needs to remember it longer. Memory is therefore bounded by time, and small per message:
signatures are HMAC outputs, unpredictable without the secret, so their first 8 bytes identify them
well enough (with a million remembered, a new message is taken for a replay once in 18 trillion), kept
per ten seconds of `sent` time, packed as sorted 8-byte numbers.

A message dated more than CLOCK_SKEW ahead of the worker's clock is refused on arrival: remembering it
would hold memory for as long as it stays ahead, and a flood of them could fill the guard with slices of
the future.

A count bound remains for a peer that sends faster than memory allows. Forgetting a signature that is
still fresh would let it be replayed, so when the guard is full it forgets its oldest ten seconds and
from then on refuses as too old everything sent before their end. It never forgets a slice that ends
less than CLOCK_SKEW before its clock: honest clients' messages, seconds old, are never refused for a
flood (the memory of those last and next CLOCK_SKEW seconds is bounded by how fast the worker can take
messages, some tens of thousands a second); replays are never accepted.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from array import array

from invsr.wire.errors import BadMessage

REPLAY_WINDOW = 1800.0  # seconds: older messages are refused; newer ones are remembered to refuse a replay
CLOCK_SKEW = 60.0  # seconds: a message dated further ahead is refused; one dated less far back is never forgotten
REPLAY_MEMORY = 1_000_000  # at most this many signatures remembered (about 8 MB)
SLICE_SECONDS = 10.0  # signatures are remembered and forgotten in slices of this much `sent` time
PACK_AT = 4096  # signatures that arrive into a slice are packed once there are this many (a set's are 9x larger)


def message_time(sent) -> float:
    """`sent` as seconds since 1970: only a finite number is a time."""
    if isinstance(sent, bool) or not isinstance(sent, (int, float)):
        raise BadMessage("every message needs its sending time, 'sent', in seconds since 1970")
    try:
        seconds = float(sent)
    except OverflowError:  # an integer of hundreds of digits
        seconds = math.inf
    if not math.isfinite(seconds):
        raise BadMessage(f"'sent' must be a finite number of seconds since 1970, got {str(sent)[:40]!r}")
    return seconds


class SignatureSlice:
    """The signatures of the messages sent in one slice of time: a sorted array of 8-byte numbers, and a
    set of those that arrived since it was last packed."""

    def __init__(self):
        self.packed = array("Q")
        self.arriving: set[int] = set()

    def __len__(self) -> int:
        return len(self.packed) + len(self.arriving)

    def __contains__(self, number: int) -> bool:
        at = bisect.bisect_left(self.packed, number)
        return number in self.arriving or (at < len(self.packed) and self.packed[at] == number)

    def add(self, number: int) -> None:
        self.arriving.add(number)
        if len(self.arriving) >= PACK_AT:
            self.pack()

    def pack(self) -> None:
        if self.arriving:  # both parts are sorted runs: Timsort merges them in linear time
            self.packed = array("Q", sorted(itertools.chain(self.packed, sorted(self.arriving))))
            self.arriving = set()


class ReplayGuard:
    def __init__(self, window: float = REPLAY_WINDOW, capacity: int = REPLAY_MEMORY, skew: float = CLOCK_SKEW):
        self.window, self.capacity, self.skew = window, capacity, skew
        self.slices: dict[int, SignatureSlice] = {}  # slice number (sent // SLICE_SECONDS) -> its signatures
        self.order: list[int] = []  # the slice numbers, as a heap: the oldest first
        self.count = 0
        self.forgotten_before = -math.inf  # messages sent before this are refused: their slice was dropped

    def check(self, signature, sent, now: float) -> None:
        """Raise BadMessage for a replay or a message outside the window; else remember its signature."""
        seconds = message_time(sent)
        self._forget_older_than(now - self.window)
        if seconds - now > self.skew or now - seconds > self.window:
            when = f"{now - seconds:.0f} s ago" if seconds < now else f"{seconds - now:.0f} s in the future"
            raise BadMessage(
                f"this message says it was sent {when}: a replay, or the two computers' clocks differ; "
                "set both clocks right (NTP)"
            )
        if seconds < self.forgotten_before:
            raise BadMessage(
                "this message was sent before a flood of messages the worker could not remember; send it again"
            )
        number = int.from_bytes(bytes(signature[:8]), "big")
        remembered = self._slice(int(seconds // SLICE_SECONDS))
        if number in remembered:
            raise BadMessage("this message was already received (replayed)")
        remembered.add(number)
        self.count += 1
        while self.count > self.capacity and self._oldest_slice_may_go(now):
            self._drop_oldest_slice()

    def _slice(self, number: int) -> SignatureSlice:
        if number not in self.slices:
            for earlier in self.slices.values():  # time has moved on: what arrived before is packed
                earlier.pack()
            self.slices[number] = SignatureSlice()
            heapq.heappush(self.order, number)
        return self.slices[number]

    def _forget_older_than(self, oldest: float) -> None:
        """Slices whose every message is now older than the window: a replay of them is refused as too old."""
        while self.order and (self.order[0] + 1) * SLICE_SECONDS < oldest:
            self._drop_oldest_slice()

    def _oldest_slice_may_go(self, now: float) -> bool:
        """Whether the oldest slice ended at least `skew` before `now`: forgetting one that ends later would
        refuse honest, current messages."""
        return bool(self.order) and (self.order[0] + 1) * SLICE_SECONDS <= now - self.skew

    def _drop_oldest_slice(self) -> None:
        number = heapq.heappop(self.order)
        self.count -= len(self.slices.pop(number))
        self.forgotten_before = max(self.forgotten_before, (number + 1) * SLICE_SECONDS)
