"""Watching the head (GCS) of a Ray cluster this process joined with `--ray ADDRESS`, so as to outlive it.

Ray's driver in this process cannot outlive the head: once the GCS has not answered for Ray's
`gcs_rpc_server_reconnect_timeout_s` (60 s by default), the driver's core worker ends the whole process
(exit status 1), and a head started again is a new cluster, which the old connection never rejoins. So
`HeadWatch` probes the head's address with a plain TCP connect every PROBE_S seconds: after LOST_AFTER
failures in a row the head is lost (`on_lost`: the caller leaves Ray with `ray.shutdown()`, which keeps the
process alive past the timeout), and once it accepts connections again it is back (`on_back`: the caller
joins it anew). Measured with Ray 2.60 on one machine: the process ended 6 s after its GCS was killed
under a 5 s timeout; with `ray.shutdown()` a second after the loss (it takes about 5 s) it lived on past
a 60 s timeout, and `ray.init` joined a new head at the same address.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("invsr.ray")
PROBE_S = 0.5  # between probes
CONNECT_S = 1.0  # a probe's connect: a head whose machine is gone may never refuse, only stay silent
LOST_AFTER = 3  # failed probes in a row that mean the head is lost (one may be a busy moment)
REJOIN_EVERY_S = 5.0  # after a failed rejoin (the head's port open before its GCS is ready), try again
RAY_RECONNECT_DEFAULT_S = 60.0  # Ray's gcs_rpc_server_reconnect_timeout_s when the environment does not set it


def reconnect_timeout() -> float:
    """Seconds after which Ray's driver ends this process when its GCS does not answer (Ray reads the
    setting from this environment variable, where set)."""
    try:
        return float(os.environ["RAY_gcs_rpc_server_reconnect_timeout_s"])
    except (KeyError, ValueError):
        return RAY_RECONNECT_DEFAULT_S


def reachable(address: str, timeout: float = CONNECT_S) -> bool:
    """Whether something accepts TCP connections at `address` ("host:port")."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


class HeadWatch:
    """A thread that calls `on_lost()` when the head at `address` stops accepting connections, then
    `on_back()` once it accepts them again, until that returns True (rejoined); and so on, until `stop()`."""

    def __init__(self, address: str, on_lost: Callable[[], None], on_back: Callable[[], bool]):
        self.address, self.on_lost, self.on_back = address, on_lost, on_back
        self.lost = False
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="invsr-ray-head", daemon=True)

    def start(self) -> HeadWatch:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        failures = 0
        while not self.stopping.wait(PROBE_S):
            up = reachable(self.address)
            if not self.lost:
                failures = 0 if up else failures + 1
                if failures >= LOST_AFTER:
                    self.lost = True
                    self._call(self.on_lost)
            elif up:
                self.lost = not self._call(self.on_back)
                if self.lost:
                    self.stopping.wait(REJOIN_EVERY_S)
                failures = 0

    @staticmethod
    def _call(callback) -> bool:
        """The callback's answer; False where it failed (logged: the watch must go on)."""
        try:
            return bool(callback())
        except Exception:
            log.exception("handling a change of the Ray head's state failed")
            return False
