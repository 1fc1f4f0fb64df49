"""Who may connect to the worker: the handler that ZeroMQ's handshake asks (ZAP, RFC 27), and the routing ids
the worker's ROUTER gives its peers.

libzmq asks the ZAP handler about every peer before the peer gets a routing id or can send a message. This
one admits a peer that gives the PLAIN password derived from the connection file's secret or, with
CurveZMQ, one whose public key is among the allowed ones; libzmq tells any other peer "400" and closes.

Routing ids. A ROUTER names each peer by the routing id the peer chose (ZMQ_ROUTING_ID), or else by the next
value of a counter. libzmq 4.3 aborts the whole process (an assertion in socket_base.cpp) when the counter
reaches an id that a connected peer chose, and it starts the counter from rand(), which it never seeds:
every process gets the same ids, so any peer that may connect could claim the next ones and abort the
worker when the next client came. Two defences:
- the counter starts from a secret value (`unpredictable_routing_ids`);
- a CurveZMQ peer gets its routing id from this handler, in the ZAP reply's `Identity` property, which
  libzmq applies after the peer's own: a peer's choice is never used and the counter never runs, so a peer
  with an allowed key can neither collide with it nor take another member's id. The reply waits
  REPLY_DELAY so that libzmq has read the peer's own metadata first (had the reply come before, the peer's
  choice would win). PLAIN cannot do this: its peer sends its id only after the ZAP reply. That is one
  reason why a local worker is reachable only by its own user (an owner-only ipc folder), who could stop it
  anyway; over TCP without CurveZMQ (Windows, or --bind) the secret counter is the defence.
The counter stays secret only if nothing shows the ids it gave: the log names a connection by a keyed hash
of its routing id (`PeerNames`), never the id, so a peer that reads the log learns nothing it could claim.
ZMQ_ROUTER_HANDOVER stays off: with it a peer presenting a connected client's id would take that client's
connection over, replies and all.
"""

from __future__ import annotations

import ctypes
import hashlib
import heapq
import hmac
import itertools
import logging
import os
import secrets
import threading
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from invsr.wire.connection import SOCKET_USER

log = logging.getLogger("invsr.worker")
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq looks for the handler (fixed by RFC 27)
REPLY_DELAY = 0.05  # seconds an admitted CurveZMQ peer's reply waits, so that its assigned id wins
ASSIGNED_ID_PREFIX = b"\x01"  # assigned ids are 16 bytes, never the counter's 5 bytes starting with 0
REFUSALS_LOGGED_EVERY = 60.0  # seconds between log lines about refused handshakes (a flood must not fill the log)


def unpredictable_routing_ids() -> None:
    """Seed the C library's rand(), from which libzmq starts each ROUTER's counter of routing ids, with a
    secret: call it before creating the ROUTER. Without it the ids are the same in every process.
    POSIX only: on Windows the C runtime keeps rand()'s state per thread and per runtime library, which
    this process cannot reach for certain (there, the secret password and loopback are the defence)."""
    if os.name != "posix":
        return
    try:
        ctypes.CDLL(None).srand(ctypes.c_uint(secrets.randbits(32)))
    except (OSError, AttributeError) as error:
        log.warning("cannot seed the C library's rand() (%s): the worker's routing ids stay predictable", error)


class PeerNames:
    """What the log calls a connection: a hash of its routing id keyed with a secret of this process. The same
    connection always has the same name, so its lines can be followed; the name neither shows the id nor the
    counter's state, nor can it be turned back into an id a peer could present."""

    def __init__(self):
        self.key = secrets.token_bytes(32)

    def __call__(self, routing_id: bytes) -> str:
        return "peer " + hashlib.blake2b(routing_id, key=self.key, digest_size=6).hexdigest()


def allowed_curve_keys(folder: Path) -> set[bytes]:
    """The 32-byte public keys of the `.key` files in `folder` (made by `invsr keys`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"invsr serve: --allowed-keys {folder} is not a folder of public .key files")
    keys = {z85.decode(public) for public in zmq.auth.load_certificates(str(folder))}
    if not keys:
        log.warning("no public .key files in %s: no client can connect", folder)
    return keys


class Gatekeeper:
    """The ZAP handler: a thread with a ROUTER at ZAP_ENDPOINT. Give it the PLAIN password, or the allowed
    CurveZMQ public keys; start it before the worker's socket binds, stop it after that socket is closed
    (without a handler libzmq would admit CurveZMQ peers unchecked)."""

    def __init__(self, context: zmq.Context, *, password: bytes | None = None, allowed_keys: set[bytes] | None = None):
        self.context, self.password, self.allowed_keys = context, password, allowed_keys
        self.refused, self.refusals_logged_at = 0, -REFUSALS_LOGGED_EVERY
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(ZAP_ENDPOINT)
        control = f"inproc://invsr-gatekeeper-{id(self)}"
        self.stop_sender = self.context.socket(zmq.PAIR)
        self.stop_sender.bind(control)
        receiver = self.context.socket(zmq.PAIR)
        receiver.connect(control)
        self.thread = threading.Thread(target=self._serve, args=(receiver,), name="invsr-gatekeeper", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread is None:
            return
        self.stop_sender.send(b"stop")
        self.thread.join(timeout=10)
        self.stop_sender.close(linger=0)
        self.thread = None

    def _serve(self, stop: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(stop, zmq.POLLIN)
        delayed: list[tuple[float, int, list]] = []  # (when, order, reply)
        order = itertools.count()
        try:
            while True:
                timeout = None if not delayed else max(0, int((delayed[0][0] - time.monotonic()) * 1000) + 1)
                events = dict(poller.poll(timeout))
                if stop in events:
                    return
                if self.socket in events:
                    answer = self._answer(self.socket.recv_multipart())
                    if answer is not None:
                        heapq.heappush(delayed, (time.monotonic() + answer[1], next(order), answer[0]))
                while delayed and delayed[0][0] <= time.monotonic():
                    self.socket.send_multipart(heapq.heappop(delayed)[2])
        finally:
            stop.close(linger=0)
            self.socket.close(linger=0)

    def _answer(self, frames: list[bytes]) -> tuple[list[bytes], float] | None:
        """The reply to one ZAP request and how long it should wait; None for what libzmq never sends."""
        if len(frames) < 8 or frames[1] != b"" or frames[2] != b"1.0":
            return None
        envelope, request_id, address, mechanism, credentials = frames[0], frames[3], frames[5], frames[7], frames[8:]
        head = [envelope, b"", b"1.0", request_id]
        if mechanism == b"PLAIN" and self.password is not None and len(credentials) == 2:
            user_ok = hmac.compare_digest(credentials[0], SOCKET_USER)
            if hmac.compare_digest(credentials[1], self.password) and user_ok:
                return self._reply(head, b"200", b"OK", SOCKET_USER), 0.0
            return self._refuse(head, address, "a wrong socket password (a connection file of another worker)")
        if mechanism == b"CURVE" and self.allowed_keys is not None and len(credentials) == 1:
            if credentials[0] in self.allowed_keys:
                identity = ASSIGNED_ID_PREFIX + secrets.token_bytes(15)
                metadata = bytes([8]) + b"Identity" + len(identity).to_bytes(4, "big") + identity
                return self._reply(head, b"200", b"OK", z85.encode(credentials[0]), metadata), REPLY_DELAY
            return self._refuse(head, address, f"the CurveZMQ key {z85.encode(credentials[0]).decode()}, not allowed")
        return self._refuse(head, address, f"the {mechanism.decode(errors='replace')} mechanism")

    def _refuse(self, head: list[bytes], address: bytes, what: str) -> tuple[list[bytes], float]:
        self.refused += 1
        now = time.monotonic()
        if now - self.refusals_logged_at >= REFUSALS_LOGGED_EVERY:
            log.info(
                "refused %d handshake(s) since the last such line; the latest from %s: %s",
                self.refused,
                address.decode(errors="replace"),
                what,
            )
            self.refused, self.refusals_logged_at = 0, now
        return self._reply(head, b"400", b"not allowed"), 0.0

    @staticmethod
    def _reply(head: list[bytes], status: bytes, text: bytes, user: bytes = b"", metadata: bytes = b"") -> list[bytes]:
        return [*head, status, text, user, metadata]
