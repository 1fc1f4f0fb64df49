"""The client of the InvSR worker: standard library and pyzmq only, so that it runs inside GIMP.

    client = connect(start_command=[python, "-m", "invsr_server", "serve"])   # finds, or starts, the local worker
    result = client.upscale(data, width, height, channels, "u16", UpscaleRequest(seed=1), on_progress=print)
    result.width, result.height, result.pixels, result.report

    # or the result's rows as the worker finishes them, never the whole of it at once:
    result = client.upscale_bands(data, width, height, channels, "u16", UpscaleRequest(), on_band=write_rows)

The request is the library's own `UpscaleRequest` (request.py), checked where it is made; the replies are
typed (replies.py: `Hello`, `Progress`, `Result`).

It never hangs: while it waits it sends a heartbeat every second, and a worker that has not answered
for `timeout` seconds (5 by default) is reported as lost; a local worker whose process died or was stopped
(SIGSTOP) at once, with the tail of its log. A worker that refuses this client in ZeroMQ's handshake (a key
it does not allow, the password of another worker's connection file) is reported as such at once, from the
socket monitor's events. The worker in turn cancels the jobs of a client whose connection closes or whose
heartbeats stop.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from . import connection as connection_file
from . import exits
from .errors import BadMessage, InvSRError, TooLarge, Unauthorized, VersionMismatch, WorkerLost, error_for
from .protocol import Message, new_id
from .replies import Band, Hello, Limits, Progress, Result
from .request import UpscaleRequest

HEARTBEAT = 1.0
TIMEOUT = 5.0
START_TIMEOUT = 180.0  # a first start imports PyTorch and may initialise a GPU
SLOWEST_LINK = 2e6  # bytes per second: while pixels travel, heartbeats wait behind them; allow this slow a link
LOG_TAIL_LINES = 15
BAND_WINDOW = 64 << 20  # bytes of bands the worker may send beyond those taken (3.3): a row of tiles or two
# What the socket monitor reports of each handshake (older libzmq lacks these events: then only the timeout speaks).
HANDSHAKE_REFUSED = getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0)
HANDSHAKE_BROKEN = getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
HANDSHAKE_CUT = getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0)
HANDSHAKE_DONE = getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", 0)


class Client:
    """One connection to a worker. Not thread-safe: use it from one thread."""

    def __init__(
        self,
        connection: connection_file.Connection,
        *,
        heartbeat: float = HEARTBEAT,
        timeout: float = TIMEOUT,
        client_keys: tuple[bytes, bytes] | None = None,
        context: zmq.Context | None = None,
    ):
        self.connection, self.heartbeat, self.timeout = connection, heartbeat, timeout
        self.limits: Limits | None = None  # the worker's, from `hello`
        self.operations: tuple[str, ...] = ()  # the requests the worker knows, from `hello`
        self.band_window = BAND_WINDOW  # what this client holds at most of bands not yet handed to `on_band`
        self.key = connection.key_bytes
        self.signed_buffers = connection.signed_buffers  # the worker's choice for its transport
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # A DEALER blocks sending while no connection is up (a worker gone, a refused CurveZMQ key): never wait forever.
        self.socket.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        self.monitor = None
        self.handshakes_cut = 0  # connections closed during the handshake, since the last one that succeeded
        try:
            if connection.curve_server_key:
                if client_keys is None:
                    raise WorkerLost("this worker requires CurveZMQ: give the client's key pair (made by `invsr keys`)")
                self.socket.curve_serverkey = connection.curve_server_key.encode("ascii")
                self.socket.curve_publickey, self.socket.curve_secretkey = client_keys
                self.client_public_key = bytes(client_keys[0]).decode("ascii")
            elif connection.socket_auth == "plain":
                self.socket.plain_username = connection_file.SOCKET_USER
                self.socket.plain_password = connection.socket_password
            events = HANDSHAKE_REFUSED | HANDSHAKE_BROKEN | HANDSHAKE_CUT | HANDSHAKE_DONE
            if events:  # before connecting, so as to hear about the first handshake
                self.monitor = self.socket.get_monitor_socket(events)
            self.socket.connect(connection.endpoint)
        except zmq.ZMQError as error:
            self.close()
            raise ValueError(
                f"cannot connect to {connection.endpoint!r} ({error}): an endpoint looks like tcp://HOST:PORT"
            ) from None
        except WorkerLost:
            self.close()
            raise

    @classmethod
    def from_file(cls, path: Path | None = None, **options) -> Client:
        return cls(connection_file.read(path or connection_file.default_path()), **options)

    def close(self) -> None:
        if self.monitor is not None:
            self.socket.disable_monitor()
            self.monitor.close(linger=0)
            self.monitor = None
        self.socket.close(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- operations ----------------------------------------------------------------------------------

    def hello(self) -> Hello:
        hello = Hello.from_dict(self.request("hello").fields)
        self.limits, self.operations = hello.limits, hello.capabilities.operations
        return hello

    def ping(self) -> float:
        """Round-trip seconds."""
        started = time.monotonic()
        self.request("ping")
        return time.monotonic() - started

    def status(self) -> dict:
        return self.request("status").fields

    def echo(self, buffers: list, **fields) -> list:
        return self.request("echo", fields, buffers).buffers

    def cancel(self, job: str) -> dict:
        return self.request("cancel", {"job": job}).fields

    def upscale(
        self,
        pixels,
        width: int,
        height: int,
        channels: int,
        dtype: str,
        request: UpscaleRequest,
        on_progress: Callable[[Progress], object] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Result:
        """Send raw pixels (any buffer: bytes, memoryview, a NumPy array) of `width` x `height` x `channels`
        samples of `dtype` (the wire's u8, u16, f32) and wait for the result of `request`.

        `on_progress(Progress)` gets each progress message. `should_cancel()` is asked at each heartbeat; when
        it returns True the job is cancelled and `Cancelled` raised once the worker confirms.

        Built on `upscale_bands`: the bands are written into one buffer as they come, so that this holds the
        result once, in its own pixel type.
        """
        gathered = _Gathered()
        result = self.upscale_bands(
            pixels, width, height, channels, dtype, request, gathered.add, on_progress, should_cancel, gathered.expect
        )
        return dataclasses.replace(result, pixels=gathered.pixels(result))

    def upscale_bands(
        self,
        pixels,
        width: int,
        height: int,
        channels: int,
        dtype: str,
        request: UpscaleRequest,
        on_band: Callable[[Band], object],
        on_progress: Callable[[Progress], object] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        on_accepted: Callable[[dict], object] | None = None,
    ) -> Result:
        """As `upscale`, the result's rows coming to `on_band(Band)` as the worker finishes them, top to
        bottom; the `Result` returned then has the geometry and report, and no pixels. A worker of protocol
        3.1, which sends whole results, has its result given to `on_band` as one band. `on_accepted(fields)`
        hears the `accepted` reply (`result_bytes`: the size of the whole result)."""
        if not isinstance(request, UpscaleRequest):
            raise TypeError(f"request must be an UpscaleRequest (invsr_wire.request), got {type(request).__name__}")
        self._check_message_size(memoryview(pixels).nbytes)
        header = {
            "width": width,
            "height": height,
            "channels": channels,
            "dtype": dtype,
            "params": request.to_dict(),
            "bands": True,
        }
        paced = "taken" in self.operations  # a 3.3 worker: sends no more than `window` bytes ahead of `on_band`
        if paced:
            header["window"] = self.band_window
        taken = 0

        def hear(message: Message) -> None:
            nonlocal taken
            if message.type == "band":
                if len(message.buffers) != 1:
                    raise BadMessage(f"the worker sent a band with {len(message.buffers)} pixel frames, not 1")
                on_band(Band.from_dict(message.fields, message.buffers[0]))
                if paced:
                    taken += 1
                    self._send(
                        Message("taken", {"id": new_id(), "job": message.fields.get("job"), "bands": taken}), True
                    )
            elif message.type == "progress" and on_progress is not None:
                on_progress(Progress.from_dict(message.fields))
            elif message.type == "accepted" and on_accepted is not None:
                on_accepted(message.fields)

        reply = self.request("upscale", header, [pixels], on_reply=hear, should_cancel=should_cancel, final=("result",))
        if "bands" in reply.fields:
            if reply.buffers:
                raise BadMessage("the worker sent a result in bands with pixel frames")
            return Result.from_dict(reply.fields, b"")
        if len(reply.buffers) != 1:
            raise BadMessage(f"the worker sent a result with {len(reply.buffers)} pixel frames, not 1")
        result = Result.from_dict(reply.fields, reply.buffers[0])  # a 3.1 worker: the whole result, one band
        fields = {"band": 0, "top": 0, "rows": result.height, "width": result.width}
        on_band(Band.from_dict(dict(fields, channels=result.channels, dtype=result.dtype), result.pixels))
        return dataclasses.replace(result, pixels=memoryview(b""))

    def _check_message_size(self, size: int) -> None:
        """ZeroMQ drops a message over the worker's limit without a word: refuse it here instead."""
        if self.limits is None:
            self.hello()
        limit = self.limits.max_message_bytes
        if limit and size > limit:
            raise TooLarge(
                f"the image is {size / 1e6:.0f} MB of pixels, "
                f"over this worker's limit of {limit / 1e6:.0f} MB per message: "
                "send part of it, or start the worker with a larger --max-message-mb",
                {"max_message_bytes": limit},
            )

    # --- the waiting loop ----------------------------------------------------------------------------

    def request(
        self,
        kind: str,
        fields: dict | None = None,
        buffers=(),
        *,
        on_progress=None,
        should_cancel=None,
        final=None,
        on_reply=None,
    ) -> Message:
        """Send one request and wait for its final reply, heartbeating; raise the error (errors.py) of an error
        reply. The layer below the typed operations: it returns the final reply's `Message`, `on_progress(fields)`
        gets each progress message's header fields as they came, and `on_reply(Message)` every other reply."""
        request_id = new_id()
        self._send(Message(kind, dict(fields or {}, id=request_id), list(buffers)), wait=True)
        final = final or ("hello", "pong", "echo", "status", "cancelling")
        last_heard = next_beat = time.monotonic()
        job, cancel_sent, result_bytes = None, False, 0
        in_flight = sum(memoryview(b).nbytes for b in buffers)  # bytes that may hold up the worker's answers
        poller = zmq.Poller()
        for sock in (self.socket, self.monitor):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        while True:
            now = time.monotonic()
            allowed = self.timeout + in_flight / SLOWEST_LINK
            if now >= next_beat or now - last_heard > allowed:
                self._check_alive(now - last_heard, allowed)
            if now >= next_beat:
                if should_cancel is not None and job and not cancel_sent and should_cancel():
                    self._send(Message("cancel", {"id": new_id(), "job": job}))
                    cancel_sent = True
                self._send(Message("ping", {"id": new_id()}))
                next_beat = now + self.heartbeat
            wake = min(next_beat, last_heard + allowed)  # at the next heartbeat, or when silence becomes loss
            ready = dict(poller.poll(int(max(0.0, wake - time.monotonic()) * 1000) + 1))
            if self.monitor in ready:
                self._check_handshakes()
            if self.socket not in ready:
                continue
            message = self._receive()
            last_heard = time.monotonic()
            if message.fields.get("re") != request_id:
                continue  # a pong, or a reply to a cancel: only proof of life
            in_flight = 0  # the request has arrived
            if message.type == "error":
                raise error_for(
                    message.fields.get("code", "internal"),
                    message.fields.get("message", ""),
                    message.fields.get("details"),
                )
            if message.type == "accepted":
                job, result_bytes = message.fields.get("job"), message.fields.get("result_bytes", 0)
            elif message.type == "progress":
                if message.fields.get("stage") == "finish":  # the result is on its way
                    in_flight = result_bytes
                if on_progress is not None:
                    on_progress(message.fields)
            if message.type in final:
                return message
            if on_reply is not None:
                on_reply(message)

    def _send(self, message: Message, wait: bool = False) -> None:
        """Send; a request waits up to `timeout` for a connection, a heartbeat does not wait at all. While it
        waits, a refusal the socket monitor reports is said at once: a refused handshake can end the connection
        before the first send, which then only waits (the pipe is gone)."""
        frames = message.encode(self.key, self.signed_buffers)
        deadline = time.monotonic() + self.timeout
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLOUT)
        if self.monitor is not None:
            poller.register(self.monitor, zmq.POLLIN)
        while True:
            try:
                self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
            if self.monitor is not None:
                self._check_handshakes()
            left = deadline - time.monotonic()
            if not wait:
                return
            if left <= 0:
                raise WorkerLost(
                    f"cannot reach the worker at {self.connection.endpoint} within {self.timeout:g} s: "
                    "it is not running, "
                    "or it refused this client's CurveZMQ key or secret (a connection file of another worker)"
                )
            poller.poll(int(left * 1000) + 1)

    def _receive(self) -> Message:
        frames = self.socket.recv_multipart(copy=False)
        return Message.decode(self.key, [frame.buffer for frame in frames], self.signed_buffers)

    def _check_handshakes(self) -> None:
        """Read the socket monitor's events; raise at once when the worker refused this client."""
        from zmq.utils.monitor import parse_monitor_message

        while self.monitor.poll(0):
            event = parse_monitor_message(self.monitor.recv_multipart())["event"]
            if event == HANDSHAKE_REFUSED:
                raise Unauthorized(self._refused_message())
            if event == HANDSHAKE_BROKEN:
                raise WorkerLost(
                    f"the handshake with {self.connection.endpoint} failed (ZeroMQ protocol error): it is not an "
                    "InvSR worker of this connection file, or one that expects another kind of client (CurveZMQ or not)"
                )
            self.handshakes_cut = 0 if event == HANDSHAKE_DONE else self.handshakes_cut + 1

    def _refused_message(self) -> str:
        where = f"the worker at {self.connection.endpoint}"
        if self.connection.curve_server_key:
            return (
                f"{where} refused this client's CurveZMQ key {self.client_public_key}: it is not among the keys the "
                "worker allows. Ask whoever runs the worker to put this client's public key file "
                "(NAME.key, made with its "
                "NAME.key_secret by `invsr keys`) into the worker's --allowed-keys folder and restart it, or use a "
                "key pair it allows"
            )
        return (
            f"{where} refused this client's password (derived from the secret in the connection file): the "
            "connection file is not that worker's, a stale one or another worker's. Use the file the worker "
            "wrote at its last start (`invsr serve` names it), or start the worker again"
        )

    def _check_alive(self, silent_for: float, allowed: float) -> None:
        """Raise WorkerLost when a local worker's process is gone or stopped, or when any worker is silent
        too long."""
        pid = self.connection.pid if self.connection.is_local else None
        died = bool(pid) and not _process_alive(pid)
        # A stopped process answers nothing until resumed: say so once a heartbeat has gone unanswered.
        stopped = bool(pid) and not died and silent_for > 1.5 * self.heartbeat and _process_stopped(pid)
        if died or stopped or silent_for > allowed:
            tail, details = self.log_tail(), {"log_file": self.connection.log_file if pid else None}
            if died:
                details["exit"] = self._exit_status()
            # the reason alone (the plug-in says it in a sentence), and the log's tail too for a terminal
            reason = details["reason"] = self._lost_reason(died, stopped, silent_for, details.get("exit"))
            log = f". The end of its log ({self.connection.log_file}):\n{tail}" if tail else ""
            raise WorkerLost(reason + log, {**details, "log_tail": tail})

    def _exit_status(self) -> int | None:
        """How the dead worker ended, as its supervisor records it (None: it ran without one)."""
        if not (self.connection.supervisor_pid and self.connection.log_file):
            return None
        # The supervisor writes as soon as it has reaped the worker: a moment after this client saw it gone.
        return exits.read(exits.record_path(self.connection.log_file), self.connection.pid, wait=3.0)

    def _lost_reason(self, died: bool, stopped: bool, silent_for: float, exit_status: int | None) -> str:
        where = f"the worker at {self.connection.endpoint}"
        pid = self.connection.pid
        if died:
            text = f"{where} (process {pid}) has died: it {exits.describe(exit_status)}"
        elif stopped:
            text = (
                f"{where} (process {pid}) is stopped (by SIGSTOP, Ctrl-Z in its terminal, or a debugger): resume it "
                f"with `kill -CONT {pid}`, or end it with `invsr serve --stop`"
            )
        elif self.handshakes_cut:
            text = (
                f"{where} closed the connection during ZeroMQ's handshake {self.handshakes_cut} time(s) and has not "
                f"answered for {silent_for:.0f} s: its connection file may be stale (the worker started again since), "
                "or its CurveZMQ server key is not this worker's"
            )
        elif self.connection.is_local and pid:
            text = f"{where} (process {pid}) has not answered for {silent_for:.0f} s: it is frozen or overloaded"
        else:
            text = f"{where} has not answered for {silent_for:.0f} s"
        return text

    def log_tail(self) -> str:
        if not (self.connection.is_local and self.connection.log_file):
            return ""
        return tail_of(Path(self.connection.log_file))


class _Gathered:
    """A result's bands written into one buffer as they come (`Client.upscale`)."""

    def __init__(self):
        self.buffer: bytearray | None = None
        self.size = 0

    def expect(self, accepted: dict) -> None:
        self.size = int(accepted.get("result_bytes") or 0)

    def add(self, band: Band) -> None:
        data = memoryview(band.pixels).cast("B")
        row_bytes = data.nbytes // max(1, band.rows)
        end = (band.top + band.rows) * row_bytes
        if self.buffer is None:
            self.buffer = bytearray(max(self.size, end))
        if end > len(self.buffer):
            self.buffer.extend(bytes(end - len(self.buffer)))
        self.buffer[band.top * row_bytes : end] = data

    def pixels(self, result: Result) -> memoryview:
        if self.buffer is None:
            raise BadMessage("the worker sent a result without its pixels")
        return memoryview(self.buffer)


def tail_of(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


def _process_stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, Ctrl-Z, a debugger): alive, but silent until resumed."""
    if sys.platform == "win32":
        return False
    try:  # Linux: the state letter follows the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        pass
    try:  # macOS and the BSDs: asked only once a heartbeat has gone unanswered
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return state.strip().startswith("T")


def _process_alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by its parent, does not)."""
    if sys.platform == "win32":
        return True  # os.kill would terminate it there; rely on the heartbeat timeout instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: the state letter follows the parenthesised command name
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:  # elsewhere we can still tell for our own child, reaping it
        return os.waitpid(pid, os.WNOHANG)[0] != pid
    except ChildProcessError:
        return True


# --- finding or starting the local worker --------------------------------------------------------------


def connect(
    path: Path | None = None,
    start_command: list[str] | None = None,
    on_status=None,
    start_timeout: float = START_TIMEOUT,
    **options,
) -> Client:
    """A client of the worker described by the connection file at `path` (default: the user's).

    When none answers and `start_command` is given (say [python, "-m", "invsr_server", "serve", ...]), start
    one, wait until it answers `hello`, and return a client of it; `on_status(text)` hears about it.
    """
    path = Path(path or connection_file.default_path())
    client = _answering(path, **options)
    if client is not None:
        return client
    if start_command is None:
        raise WorkerLost(f"no InvSR worker answers (connection file {path}); start one with `invsr serve`")
    if on_status is not None:
        on_status("Starting the InvSR worker...")
    return _start(path, start_command, start_timeout, **options)


def _answering(path: Path, **options) -> Client | None:
    try:
        client = Client.from_file(path, **options)
    except (OSError, ValueError):
        return None
    try:
        client.hello()
        return client
    except VersionMismatch as error:
        client.close()
        raise VersionMismatch(
            f"the running InvSR worker (process {client.connection.pid}, {client.connection.endpoint}) is another "
            f"version: {error}. Stop it with `invsr serve --stop`; the next upscale starts this version's worker",
            error.details,
        ) from None
    except InvSRError:
        client.close()
        return None


def _start(path: Path, command: list[str], timeout: float, **options) -> Client:
    connection_file.make_private_folder(path.parent)  # 0700, as `invsr serve` makes it: the log names jobs
    startup_log = path.with_name("worker-start.log")
    with open(startup_log, "wb", opener=_private_opener) as log:
        startup_log.chmod(0o600)  # one an older version left readable by all
        try:
            process = subprocess.Popen(
                [*command, "--connection-file", str(path), "--supervise"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the caller, and a Cancel in GIMP does not kill it
            )
        except OSError as error:  # say, the Python environment named in the command was moved or deleted
            raise WorkerLost(
                f"cannot run {command[0]} to start the InvSR worker: {error.strerror}", {"unrunnable_command": command}
            ) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            client = _answering(path, **options)  # another client's start may have won the race for the port
            if client is not None:
                return client
            tail = tail_of(startup_log)
            raise WorkerLost(
                f"the InvSR worker could not start (exit status {process.returncode}):\n{tail}", {"log_tail": tail}
            )
        if path.exists():
            client = _answering(path, **options)
            if client is not None and process.pid in (client.connection.pid, client.connection.supervisor_pid):
                return client
            if client is not None:
                client.close()
        time.sleep(0.2)
    process.kill()
    raise WorkerLost(f"the InvSR worker did not answer within {timeout:.0f} s of starting; see {startup_log}")


def _private_opener(path, flags):
    return os.open(path, flags, 0o600)


def stop_worker(path: Path | None = None, timeout: float = 30.0) -> int | None:
    """Ask the local worker of a connection file to finish (SIGTERM) and wait until it has.

    Returns its process id, or None when no worker answers there (a stale file is then removed). A
    process is only signalled once its endpoint has answered as an InvSR worker, of any version, so that
    a stale file never gets another program's process killed.
    """
    path = Path(path or connection_file.default_path())
    try:
        connection = connection_file.read(path)
    except (OSError, ValueError):
        return None
    if not (connection.is_local and connection.pid):
        raise WorkerLost(f"the worker at {connection.endpoint} does not run on this machine: stop it where it runs")
    if not _answers_as_worker(connection):
        connection_file.remove(path, connection)
        return None
    os.kill(connection.pid, signal.SIGTERM)  # on Windows: TerminateProcess, at once (and no liveness check there)
    deadline = time.monotonic() + timeout
    while sys.platform != "win32" and _process_alive(connection.pid):
        if time.monotonic() > deadline:
            raise WorkerLost(f"the worker (process {connection.pid}) did not stop within {timeout:.0f} s; kill it")
        time.sleep(0.1)
    connection_file.remove(path, connection)  # where SIGTERM is a hard kill (Windows), it could not
    return connection.pid


def _answers_as_worker(connection: connection_file.Connection) -> bool:
    with Client(connection, timeout=3.0) as client:
        try:
            return client.hello().pid == connection.pid
        except VersionMismatch:
            return True
        except InvSRError:
            return False
