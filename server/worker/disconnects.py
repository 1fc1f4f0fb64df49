"""Noticing that a client has gone sooner than its missing heartbeats would.

When a client's process dies (GIMP's Cancel kills the plug-in), its system closes the connection, and
libzmq reports that to a socket monitor at once. The event names the connection, not the ROUTER's routing
id of the peer, so the worker then asks the ROUTER which of the clients with jobs are still connected:
with ZMQ_ROUTER_MANDATORY, sending to a routing id whose connection is gone fails (EHOSTUNREACH) instead of
vanishing in silence. The probe is a `pong` without `re`, which a client takes as a sign of life and
nothing more. A client across a network that vanishes without closing its connection is still noticed by
its missing heartbeats.
"""

from __future__ import annotations

import time

import zmq

# Seconds after a disconnection during which clients with jobs are probed: libzmq forgets the peer's
# routing id a moment after it reports the event, not before.
RECHECK_SECONDS = 2.0
PROBE_EVERY = 0.1  # seconds: the worker's loop may turn far more often than that while messages flow


class DisconnectWatch:
    def __init__(self, router: zmq.Socket):
        self.router = router
        self.monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.last_disconnection = -RECHECK_SECONDS
        self.last_probe = -PROBE_EVERY

    def gone(self, clients: set[bytes], probe) -> list[bytes]:
        """Those of `clients` (routing ids) whose connection has closed. `probe()` makes the message to try."""
        while self.monitor.poll(0):
            self.monitor.recv_multipart()
            self.last_disconnection = time.monotonic()
        now = time.monotonic()
        if not clients or now - self.last_disconnection > RECHECK_SECONDS or now - self.last_probe < PROBE_EVERY:
            return []
        self.last_probe = now
        return [client for client in clients if not self._connected(client, probe())]

    def _connected(self, client: bytes, message: list) -> bool:
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        try:
            self.router.send_multipart([client, *message], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:  # connected, with its queue full
            return True
        except zmq.ZMQError as error:
            if error.errno == zmq.EHOSTUNREACH:
                return False
            raise
        finally:
            self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)

    def close(self) -> None:
        self.router.disable_monitor()
        self.monitor.close(linger=0)
