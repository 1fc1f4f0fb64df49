"""Where the worker listens, and what a peer can cost it before proving anything.

Before ZeroMQ's handshake has checked a peer's password or key, the peer already holds an open file (its
connection) and, if it starts a long handshake command and stops, memory: libzmq allocates the size a frame
declares, up to ZMQ_MAXMSGSIZE, before it reads the frame. So:
- a local worker listens on a Unix socket in an owner-only folder (invsr.wire.connection.default_endpoint),
  which other users cannot even connect to;
- a handshake gets HANDSHAKE_SECONDS to finish (libzmq's default is 30 s), so an unfinished one holds its
  memory and its connection that long at most;
- the soft limit of open files is raised to the hard one, so that idle connections by the thousand do not
  leave the worker unable to accept its real client.
Over TCP an unauthenticated peer can still cost up to the message limit for HANDSHAKE_SECONDS per
connection: at most what it sends in that time, bounded by the link.

A peer that has proved itself can still start a frame and stop, and libzmq would hold what it sent for as long
as the connection lasts. The worker sends ZMTP heartbeats (PING) every HEARTBEAT_SECONDS, and closes a
connection on which no whole frame has arrived within `frame_seconds` of one: STALL_SECONDS plus the time the
largest frame takes at MIN_UPLOAD_RATE, the rate a client allows its own pixels (1 s per 2 MB). A peer's
libzmq answers a PING by itself, between frames, so an idle or waiting client is never cut off.
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
from filelock import FileLock, Timeout

from invsr.wire import connection as connections

log = logging.getLogger("invsr.worker")
# A handshake is three short exchanges: three seconds suit a slow link and a busy worker, and a client
# whose handshake was cut short reconnects by itself.
HANDSHAKE_SECONDS = 3.0
HEARTBEAT_SECONDS = 2.0  # the worker's ZMTP PING to each peer, this often
STALL_SECONDS = 5.0  # a peer whose libzmq answers no PING for this long (plus a frame's time) is gone
MIN_UPLOAD_RATE = 2e6  # bytes a second: the slowest link a frame of the message limit may take


def frame_seconds(max_message_bytes: int) -> float:
    """How long the worker waits for a whole frame on a connection before closing it."""
    return STALL_SECONDS + max_message_bytes / MIN_UPLOAD_RATE


def limit_unproven_peers(router: zmq.Socket, max_message_bytes: int) -> None:
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # bigger messages (handshake commands too): peer dropped
    router.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_SECONDS * 1000))
    router.setsockopt(zmq.HEARTBEAT_IVL, int(HEARTBEAT_SECONDS * 1000))  # a frame cut off is not held for ever
    router.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(frame_seconds(max_message_bytes) * 1000))


def raise_open_file_limit() -> None:
    """Raise the soft limit of open files as far as the hard limit allows (POSIX)."""
    try:
        import resource
    except ImportError:  # Windows: no such per-process limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit is not a value the soft one may take (Linux caps it by fs.nr_open, macOS by
    # OPEN_MAX): try large values in turn.
    unlimited = resource.RLIM_INFINITY
    if soft == unlimited:
        return
    for wanted in (hard, 1 << 20, 65536, 10240):
        if wanted == unlimited or wanted <= soft or (hard != unlimited and wanted > hard):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            log.info("open files: up to %d (was %d)", wanted, soft)
            return
        except (ValueError, OSError):
            continue


class SocketClaim:
    """The exclusive right to an ipc socket's path, held while the worker lives.

    libzmq removes whatever file lies at an ipc path when it binds there, so a second worker started with the
    same connection file would silently take the socket of the first, which would then run on unreachable.
    A lock file beside the socket (released by the system when the process ends, however it ends) makes the
    second refuse to start instead, as a second bind of a TCP port does."""

    def __init__(self, socket_file: Path):
        connections.make_socket_folder(socket_file.parent)
        self.socket_file = socket_file
        self.path = socket_file.with_name(socket_file.name + ".lock")
        # flock on POSIX, msvcrt on Windows; not thread-local: the worker may let go from another thread
        self.lock = FileLock(self.path, mode=0o600, thread_local=False)
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise SystemExit(
                f"invsr serve: another worker listens on ipc://{socket_file} (it holds {self.path}): stop it with "
                "`invsr serve --stop`, or give this one another --connection-file"
            ) from None

    def release(self) -> None:
        """Remove the socket file (libzmq 4.3 leaves it), then let go of the claim."""
        try:
            self.socket_file.unlink()
        except FileNotFoundError:
            pass
        self.lock.release()


def claim(endpoint: str) -> SocketClaim | None:
    """For an ipc endpoint: its owner-only folder, and the claim on its path. Nothing for other transports."""
    socket_file = connections.ipc_path(endpoint)
    return SocketClaim(socket_file) if socket_file is not None else None
