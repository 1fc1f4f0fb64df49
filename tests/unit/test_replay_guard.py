"""The worker's replay guard (invsr_server.worker/replay.py): a replay is never accepted, memory is bounded by
time and by count, and small per message. Through a real worker: test_worker.py, test_worker_hardening.py."""

import os
import tracemalloc

import pytest

from invsr.wire.errors import BadMessage
from invsr_server.worker.replay import CLOCK_SKEW, REPLAY_WINDOW, ReplayGuard

pytestmark = pytest.mark.slow  # minutes on a 2-core machine

NOW = 1_800_000_000.0


def signatures(count):
    return [os.urandom(32) for _ in range(count)]


def test_a_replay_is_refused_and_a_new_message_accepted():
    guard = ReplayGuard()
    first, second = signatures(2)
    guard.check(first, NOW - 5, NOW)
    with pytest.raises(BadMessage, match="already received"):
        guard.check(first, NOW - 5, NOW + 1)
    guard.check(second, NOW - 5, NOW + 1)


@pytest.mark.parametrize("sent", [float("nan"), float("inf"), -float("inf"), 10**400, -(10**400), True, "1", None])
def test_only_a_finite_number_is_a_time(sent):
    with pytest.raises(BadMessage, match="'sent'"):
        ReplayGuard().check(os.urandom(32), sent, NOW)


def test_signatures_are_forgotten_once_their_messages_are_too_old_to_replay():
    guard = ReplayGuard()
    old = signatures(1000)
    for signature in old:
        guard.check(signature, NOW, NOW)
    guard.check(os.urandom(32), NOW + REPLAY_WINDOW, NOW + REPLAY_WINDOW)
    assert guard.count == 1001
    later = NOW + REPLAY_WINDOW + 60
    guard.check(os.urandom(32), later, later)
    assert guard.count == 2  # the first thousand are gone
    with pytest.raises(BadMessage, match="s ago"):  # and still refused: as too old
        guard.check(old[0], NOW, later)


def test_a_flood_beyond_the_count_bound_never_lets_a_replay_through():
    guard = ReplayGuard(capacity=1000)
    early = signatures(600)
    for signature in early:
        guard.check(signature, NOW - 100, NOW)
    for signature in signatures(600):
        guard.check(signature, NOW, NOW)
    assert guard.count <= 1000
    with pytest.raises(BadMessage, match="before a flood"):  # forgotten, so refused
        guard.check(early[0], NOW - 100, NOW)
    guard.check(os.urandom(32), NOW + 1, NOW + 1)  # an honest client, seconds behind, goes on


def test_a_message_dated_beyond_the_clock_skew_is_refused_on_arrival_and_not_remembered():
    guard = ReplayGuard()
    with pytest.raises(BadMessage, match="in the future"):
        guard.check(os.urandom(32), NOW + CLOCK_SKEW + 1, NOW)
    assert guard.count == 0
    guard.check(os.urandom(32), NOW + CLOCK_SKEW - 1, NOW)  # a clock a little ahead is still served


@pytest.mark.parametrize("ahead", [REPLAY_WINDOW - 10, CLOCK_SKEW - 1, 0.0], ids=["half an hour", "the skew", "now"])
def test_a_flood_beyond_the_count_bound_never_refuses_honest_current_messages(ahead):
    """A flood of valid messages dated ahead (half an hour: refused on arrival; within the skew; or now) used to
    make the guard forget the slice it fell in and refuse, as sent before the flood, every message dated before
    that slice's end: for half an hour, everyone's."""
    guard = ReplayGuard(capacity=1000)
    flood = signatures(3000)
    for signature in flood:
        try:
            guard.check(signature, NOW + ahead, NOW)
        except BadMessage as error:
            assert "in the future" in str(error) and ahead > CLOCK_SKEW
    with pytest.raises(BadMessage):  # a replay of it: remembered, or refused as sent in the future
        guard.check(flood[0], NOW + ahead, NOW + 1)
    for second in range(0, 120, 7):  # honest clients, from now on, a second or two behind
        guard.check(os.urandom(32), NOW + second - 2, NOW + second)
    with pytest.raises(BadMessage):  # and later: remembered, or refused as sent before the flood
        guard.check(flood[0], NOW + ahead, NOW + 120)


def test_once_the_flood_is_past_the_skew_the_count_bound_holds_again():
    guard = ReplayGuard(capacity=1000)
    for signature in signatures(3000):
        guard.check(signature, NOW, NOW)
    assert guard.count == 3000  # all of them current: none may be forgotten yet
    later = NOW + CLOCK_SKEW + 20
    guard.check(os.urandom(32), later, later)
    assert guard.count == 1  # the flood's slice is forgotten; a replay of it is refused as sent before the flood
    with pytest.raises(BadMessage, match="before a flood"):
        guard.check(os.urandom(32), NOW, later)


def test_a_hundred_thousand_signatures_take_under_3_mb():
    """The first guard took 19 MB per 100,000 (an OrderedDict of 32-byte keys and float times; 25 MB of a
    worker's resident memory); packed, they take about 1 MB."""
    pending = signatures(100_000)
    guard = ReplayGuard()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, signature in enumerate(pending):
            guard.check(signature, NOW + n / 100, NOW + n / 100)  # 1,000 seconds of 100 messages a second
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert guard.count == 100_000
    assert held < 3e6, f"{held / 1e6:.1f} MB per 100,000 signatures"
