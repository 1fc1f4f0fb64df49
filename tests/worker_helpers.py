"""Real worker processes for tests: started with `python -m invsr_server serve` on a free loopback port, or on the
default endpoint (`bind=None`: a Unix socket beside the connection file where ZeroMQ has ipc).

Use one as a context manager (or stop it in a fixture's teardown), so that it is stopped when a test
fails; `wait_ready` stops it itself when it does not start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

from invsr.wire import connection
from invsr.wire.client import Client, connect

# `python -c` code that runs the `invsr` command after the statements given before it (see `prelude`)
RUN_COMMAND = "import sys\nfrom invsr_server.cli.commands import main\nsys.exit(main(sys.argv[1:]))\n"


class WorkerProcess:
    def __init__(
        self,
        folder: Path,
        weights: Path | None,
        *options: str,
        env: dict | None = None,
        log_file: Path | None = None,
        prelude: str | None = None,
        bind: str | None = "tcp://127.0.0.1:*",
        preexec_fn=None,
    ):
        """`prelude`: Python statements run in the worker's process before the command, for a test that
        must make the worker fail in a way no input can."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "worker.json"
        self.log = Path(log_file) if log_file is not None else self.folder / "worker.log"
        program = ["-m", "invsr_server"] if prelude is None else ["-c", prelude + "\n" + RUN_COMMAND]
        command = [
            sys.executable,
            *program,
            "serve",
            "--connection-file",
            str(self.path),
            "--log-file",
            str(self.log),
            "--device",
            "cpu",
        ]
        if bind is not None:
            command += ["--bind", bind]
        if weights is not None:
            command += ["--weights", str(weights)]
        self.output = open(self.folder / "worker.out", "wb")
        self.process = subprocess.Popen(
            [*command, *options], stdout=self.output, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec_fn
        )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 120) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"the worker exited with {self.process.returncode}:\n{self.text_output()}")
            if self.path.exists():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the worker did not start:\n{self.text_output()}")

    def text_output(self) -> str:
        if not self.output.closed:
            self.output.flush()
        return (self.folder / "worker.out").read_text(errors="replace")

    @property
    def connection(self) -> connection.Connection:
        return connection.read(self.path)

    def client(self, **options) -> Client:
        return Client(self.connection, **options)

    def raw_socket(self, password: bool = True) -> zmq.Socket:
        """A bare DEALER connected to the worker, for sending what a proper client never would; with the
        socket password of the connection file (a peer that can read it), or without (any other user)."""
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if password:
            sock.plain_username, sock.plain_password = connection.SOCKET_USER, self.connection.socket_password
        sock.connect(self.connection.endpoint)
        return sock

    def raw_socket_with_id(self, routing_id: bytes) -> zmq.Socket:
        """A bare DEALER with the socket password that picks its own routing id, as a peer may with PLAIN."""
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
        sock.plain_username, sock.plain_password = connection.SOCKET_USER, self.connection.socket_password
        sock.connect(self.connection.endpoint)
        return sock

    def signal(self, signum) -> None:
        os.kill(self.process.pid, signum)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output.close()
        return self.process.returncode


def curve_worker(folder: Path, weights: Path | None, keys: Path) -> WorkerProcess:
    """A worker that requires CurveZMQ: its key pair in keys/server, the public keys of the clients it serves
    in keys/allowed (made with `invsr.wire.keys.make_key_pair`)."""
    return WorkerProcess(folder, weights, "--curve-keys", str(keys / "server"), "--allowed-keys", str(keys / "allowed"))


def serve_command(weights: Path, *options: str) -> list[str]:
    """The command that starts a worker on the CPU, for `connect(start_command=...)` when none answers."""
    return [sys.executable, "-m", "invsr_server", "serve", "--weights", str(weights), "--device", "cpu", *options]


def connect_at_once(connection_file: Path, start_command: list[str], count: int = 2) -> list[Client | None]:
    """`count` clients that each find no worker and start one at the same moment, from threads of their own:
    the clients they got (None for one whose `connect` raised)."""
    clients: list[Client | None] = [None] * count

    def start(index):
        clients[index] = connect(connection_file, start_command=start_command)

    threads = [threading.Thread(target=start, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients


def stop_started_worker(connection_file: Path) -> None:
    """Stop a worker that a test had started through `connect`, found by its connection file, if it runs."""
    try:
        pid = connection.read(connection_file).pid
    except (OSError, ValueError):
        return
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def upscale_unchecked(client: Client, pixels, width: int, height: int, channels: int, dtype: str, params: dict, **kw):
    """An upscale whose `params` the client does not check (as a client of another version or language may
    send them): the worker's own checks on arrival answer. Returns the `result` message."""
    header = {"width": width, "height": height, "channels": channels, "dtype": dtype, "params": params}
    return client.request("upscale", header, [pixels], final=("result",), **kw)


class RawZmtpPeer:
    """A peer that speaks ZMTP 3.1 itself over a TCP socket, with the PLAIN handshake: it can do what no ZeroMQ
    library lets a sender do, such as stop in the middle of a frame. The wire format is ZeroMQ's RFC 23 (ZMTP
    3.0) and RFC 24 (PLAIN)."""

    def __init__(self, endpoint: str, password: bytes, timeout: float = 10.0):
        import socket

        host, port = endpoint[len("tcp://") :].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        mechanism = b"PLAIN".ljust(20, b"\0")
        self.sock.sendall(b"\xff" + bytes(8) + b"\x7f" + bytes([3, 1]) + mechanism + b"\0" + bytes(31))
        self._read_exactly(64)  # the worker's greeting
        user = connection.SOCKET_USER
        self._command(b"HELLO", bytes([len(user)]) + user + bytes([len(password)]) + password)
        name = self._read_command()
        assert name == b"WELCOME", f"the worker answered {name!r} to the PLAIN hello"
        self._command(b"INITIATE", self._property(b"Socket-Type", b"DEALER"))
        name = self._read_command()
        assert name == b"READY", f"the worker answered {name!r} to INITIATE"

    @staticmethod
    def _property(name: bytes, value: bytes) -> bytes:
        return bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value

    def _command(self, name: bytes, body: bytes) -> None:
        self.sock.sendall(self.frame(bytes([len(name)]) + name + body, command=True))

    @staticmethod
    def frame(body: bytes, more: bool = False, command: bool = False, declared: int | None = None) -> bytes:
        """A frame as ZMTP puts it on the wire: flags, size (1 byte, or 8 for more than 255), body."""
        size = len(body) if declared is None else declared
        flags = (1 if more else 0) | (4 if command else 0)
        if size > 255:
            return bytes([flags | 2]) + size.to_bytes(8, "big") + body
        return bytes([flags, size]) + body

    def _read_exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the worker closed the connection")
            data += chunk
        return data

    def _read_command(self) -> bytes:
        flags = self._read_exactly(1)[0]
        size = int.from_bytes(self._read_exactly(8 if flags & 2 else 1), "big")
        body = self._read_exactly(size)
        return body[1 : 1 + body[0]]

    def send_frames(self, frames: list[bytes]) -> None:
        """Whole frames of one message, all but the last marked MORE."""
        self.sock.sendall(b"".join(self.frame(f, more=n < len(frames) - 1) for n, f in enumerate(frames)))

    def start_frame(self, declared: int, part: bytes, more: bool = False) -> None:
        """The start of a frame that says it holds `declared` bytes, and only `part` of them."""
        self.sock.sendall(self.frame(part, more=more, declared=declared))

    def receive_message(self, timeout: float = 30.0) -> list[bytes]:
        """The frames of the next message the worker sends (ZMTP commands, such as heartbeats, skipped)."""
        self.sock.settimeout(timeout)
        frames: list[bytes] = []
        while True:
            flags = self._read_exactly(1)[0]
            body = self._read_exactly(int.from_bytes(self._read_exactly(8 if flags & 2 else 1), "big"))
            if flags & 4:
                continue
            frames.append(body)
            if not flags & 1:
                return frames

    def closed_by_worker(self, timeout: float) -> bool:
        """Whether the worker closes the connection within `timeout` seconds (what it sends meanwhile, such as
        ZMTP heartbeats, is read and dropped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
        return False

    def close(self) -> None:
        self.sock.close()
