"""The InvSR worker: one long-lived process that keeps the model warm and serves upscale jobs over ZeroMQ.

Two threads, each with its own sockets (ZeroMQ sockets are not shared between threads):

- the I/O thread (this module) owns the ROUTER socket clients talk to. It checks every message's
  signature, answers `hello`, `ping`, `echo`, `status` and `cancel` at once, validates `upscale`
  requests and queues them, forwards what the executor sends, and cancels the jobs of clients that
  stopped sending heartbeats;
- the executor thread (jobs.py) owns the device. It takes jobs in order, runs them, and sends progress,
  the result or the error through an in-process PUSH socket that the I/O thread forwards.

A long job never delays heartbeats, and a job that fails (out of memory included) fails alone.
docs/PROTOCOL.md describes every message.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import logging.handlers
import os
import signal
import threading
import time
from pathlib import Path

import zmq

from invsr import UpscaleRequest, __version__
from invsr_wire import connection as connections
from invsr_wire.contract import (
    CHANNELS,
    COLOR_FIXES,
    DEFAULT_MAX_PIXELS,
    MAX_SCALE,
    MAX_STEPS,
    MIN_SCALE,
    MIN_STEPS,
    PIXEL_DTYPES,
    check_work_size,
    sample_bytes,
)
from invsr_wire.errors import (
    BadMessage,
    Internal,
    InvalidRequest,
    InvSRError,
    ShuttingDown,
    Unauthorized,
    UnknownJob,
    UnknownOperation,
)
from invsr_wire.protocol import REQUESTS, Message, error_message, pixel_frame_size, version_text

from . import listening
from .access import Gatekeeper, allowed_curve_keys, unpredictable_routing_ids
from .disconnects import DisconnectWatch
from .jobs import OUTBOX, PRELOAD, Executor, JobBoard, ModelHolder

log = logging.getLogger("invsr.worker")
REPLAY_WINDOW = 1800.0  # seconds: older messages are refused, newer ones are remembered to refuse a replay
REPLAY_MEMORY = 1_000_000  # at most this many signatures remembered (memory bound)
POLL_MS = 100


@dataclasses.dataclass
class WorkerConfig:
    bind: str | None = None  # None: connections.default_endpoint (an owner-only ipc socket, else loopback TCP)
    connection_file: Path = dataclasses.field(default_factory=connections.default_path)
    log_file: Path = dataclasses.field(default_factory=connections.default_log_path)
    weights: Path | None = None
    noise_predictor: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    preload: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_message_bytes: int = 1 << 30
    queue_length: int = 8
    client_timeout: float = 5.0  # seconds of silence after which a client's jobs are cancelled
    curve_keys: Path | None = None  # folder with server.key_secret
    allowed_keys: Path | None = None  # folder of allowed clients' public .key files
    insecure: bool = False
    compile: bool = False  # torch.compile the networks once loaded (InvSRPipeline.optimize)

    @property
    def max_input_pixels(self) -> int:
        return self.max_pixels // 16  # the x4 result of the input must fit the work limit


class Worker:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.context = zmq.Context()
        self.key = bytes.fromhex(connections.new_key())
        self.board = JobBoard(config.queue_length)
        self.last_seen: dict[bytes, float] = {}
        self.seen_signatures = collections.OrderedDict()
        self.stopping = False
        self.model = ModelHolder(config)
        self.gatekeeper: Gatekeeper | None = None
        self.socket_claim: listening.SocketClaim | None = None
        self.disconnects: DisconnectWatch | None = None

    # --- start and stop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT. Returns the process exit status."""
        self.router = self._bind()
        self.outbox = self.context.socket(zmq.PULL)
        self.outbox.bind(OUTBOX)
        endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.connection = connections.Connection(
            endpoint=endpoint,
            key=self.key.hex(),
            protocol=version_text(),
            pid=os.getpid(),
            log_file=str(self.config.log_file),
            worker_version=__version__,
            curve_server_key=self.curve_public_key,
            socket_auth=None if self.curve_public_key else "plain",
        )
        executor = Executor(self.board, self.model, self.context, self.key, self.config.log_file)
        thread = threading.Thread(target=executor.run, name="invsr-executor", daemon=True)
        thread.start()
        if self.config.preload:
            self.board.queue.put(PRELOAD)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        connections.write(self.config.connection_file, self.connection)
        log.info("serving on %s (connection file %s)", endpoint, self.config.connection_file)
        try:
            self._loop()
        finally:
            connections.remove(self.config.connection_file, self.connection)
            self.board.queue.put(None)
            thread.join(timeout=30)
            self._close()
        log.info("stopped")
        return 0

    def _bind(self) -> zmq.Socket:
        config = self.config
        self.endpoint = config.bind or connections.default_endpoint(config.connection_file, zmq.has("ipc"))
        unpredictable_routing_ids()  # before the ROUTER exists: its counter starts from rand()
        listening.raise_open_file_limit()
        router = self.context.socket(zmq.ROUTER)
        listening.limit_unproven_peers(router, config.max_message_bytes)
        self.curve_public_key = self._configure_access(router)
        self.socket_claim = listening.claim(self.endpoint)
        try:
            router.bind(self.endpoint)
        except zmq.ZMQError as error:
            raise SystemExit(
                f"invsr serve: cannot bind {self.endpoint}: {error.strerror}. If another InvSR worker is "
                f"running, its connection file is {config.connection_file}; or choose --bind tcp://127.0.0.1:PORT"
            ) from None
        self.disconnects = DisconnectWatch(router)
        return router

    def _configure_access(self, router: zmq.Socket) -> str | None:
        """Admit to the socket only peers that prove access in ZeroMQ's handshake (access.Gatekeeper): an
        allowed CurveZMQ key, or else the PLAIN password derived from the secret. A peer without it never
        gets a routing id and cannot send a message. Returns the CurveZMQ public key."""
        config = self.config
        if config.curve_keys is None and not connections.is_loopback(self.endpoint) and not config.insecure:
            raise SystemExit(
                f"invsr serve: refusing to bind {self.endpoint} beyond this machine without encryption: give "
                "--curve-keys DIR and --allowed-keys DIR (make keys with `invsr keys DIR`), or --insecure"
            )
        if config.curve_keys is not None and config.allowed_keys is None:
            raise SystemExit("invsr serve: --curve-keys needs --allowed-keys DIR, the public keys of allowed clients")
        if config.curve_keys is None:
            self.gatekeeper = Gatekeeper(self.context, password=connections.socket_password(self.key))
            self.gatekeeper.start()
            router.plain_server = True
            return None
        import zmq.auth

        public, secret = zmq.auth.load_certificate(Path(config.curve_keys) / "server.key_secret")
        self.gatekeeper = Gatekeeper(self.context, allowed_keys=allowed_curve_keys(config.allowed_keys))
        self.gatekeeper.start()
        router.curve_server = True
        router.curve_publickey, router.curve_secretkey = public, secret
        return public.decode("ascii")

    def _request_stop(self, signum, frame) -> None:
        log.info("signal %s: finishing", signum)
        self.stopping = True

    def _close(self) -> None:
        if self.disconnects is not None:
            self.disconnects.close()
        self.router.close(linger=0)
        if self.gatekeeper is not None:  # only once the socket it guards is closed
            self.gatekeeper.stop()
        if self.socket_claim is not None:
            self.socket_claim.release()
        self.outbox.close(linger=0)
        self.context.term()

    # --- the I/O thread ------------------------------------------------------------------------------

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.outbox, zmq.POLLIN)
        while True:
            events = dict(poller.poll(POLL_MS))
            if self.outbox in events:
                self.router.send_multipart(self.outbox.recv_multipart(copy=False), copy=False)
            if self.router in events:
                self._receive()
            self._cancel_abandoned_jobs()
            if self.stopping:
                for job in self.board.all():
                    self.board.cancel(job, "the worker is stopping")
                if not self.board.all():
                    return

    def _receive(self) -> None:
        frames = self.router.recv_multipart(copy=False)
        client, frames = frames[0].bytes, [frame.buffer for frame in frames[1:]]
        request_id = None
        try:
            message = Message.decode(self.key, frames)
            request_id = message.fields.get("id")
            self._refuse_replay(frames[0], message.fields.get("sent"))
            self.last_seen[client] = time.monotonic()
            self._dispatch(client, request_id, message)
        except InvSRError as error:
            if not isinstance(error, Unauthorized):
                log.info("refused a request from %s: %s", client.hex(), error)
            self._send(client, error_message(error, request_id if isinstance(request_id, str) else None))
        except Exception:  # a bug must not stop the worker: report it and go on
            log.exception("failed to handle a request")
            self._send(client, error_message(Internal("unexpected failure; see the worker log"), request_id))

    def _refuse_replay(self, signature, sent) -> None:
        """Refuse a message seen before, or sent longer ago than signatures are remembered."""
        now = time.time()
        if not isinstance(sent, (int, float)) or isinstance(sent, bool):
            raise BadMessage("every message needs its sending time, 'sent', in seconds since 1970")
        if abs(now - sent) > REPLAY_WINDOW:
            when = f"{now - sent:.0f} s ago" if sent < now else f"{sent - now:.0f} s in the future"
            raise BadMessage(
                f"this message says it was sent {when}: a replay, or the two computers' clocks differ; set both clocks right (NTP)"
            )
        key = bytes(signature)
        if key in self.seen_signatures:
            raise BadMessage("this message was already received (replayed)")
        self.seen_signatures[key] = now
        while self.seen_signatures and (len(self.seen_signatures) > REPLAY_MEMORY or next(iter(self.seen_signatures.values())) < now - 2 * REPLAY_WINDOW):
            self.seen_signatures.popitem(last=False)

    def _dispatch(self, client: bytes, request_id, message: Message) -> None:
        if not isinstance(request_id, str) or not request_id:
            raise BadMessage("every request needs a string 'id'")
        handlers = {
            "hello": self._hello,
            "ping": lambda m: Message("pong", {}),
            "echo": lambda m: Message("echo", {"sizes": [memoryview(b).nbytes for b in m.buffers]}, m.buffers),
            "status": lambda m: Message("status", self._status(client)),
            "cancel": self._cancel,
            "upscale": lambda m: self._accept(client, request_id, m),
        }
        if message.type not in handlers:
            raise UnknownOperation(f"unknown request type {message.type!r}; this worker knows {', '.join(REQUESTS)}")
        reply = handlers[message.type](message)
        reply.fields["re"] = request_id
        self._send(client, reply)

    def _send(self, client: bytes, message: Message) -> None:
        self.router.send_multipart([client, *message.encode(self.key)], copy=False)

    def _hello(self, message: Message) -> Message:
        config = self.config
        return Message("hello", {
            "protocol": version_text(),
            "worker_version": __version__,
            "pid": os.getpid(),
            "model": self.model.state(),
            "capabilities": {
                "operations": list(REQUESTS),
                "dtypes": list(PIXEL_DTYPES),
                "channels": list(CHANNELS),
                "color_fix": list(COLOR_FIXES),
                "steps": [MIN_STEPS, MAX_STEPS],
                "scale": [MIN_SCALE, MAX_SCALE],
                "curve": self.curve_public_key is not None,
            },
            "limits": {
                "max_pixels": config.max_pixels,
                "max_input_pixels": config.max_input_pixels,
                "max_message_bytes": config.max_message_bytes,
                "queue_length": config.queue_length,
            },
        })

    def _status(self, asking: bytes) -> dict:
        jobs = [  # clients' routing ids stay private: whose job it is, only as "yours"
            {"job": job.id, "state": job.state, "progress": job.progress, "yours": job.client == asking}
            for job in self.board.all()
        ]
        horizon = time.monotonic() - self.config.client_timeout
        return {
            "jobs": jobs,
            "queued": sum(1 for j in jobs if j["state"] == "queued"),
            "running": sum(1 for j in jobs if j["state"] == "running"),
            "clients": sum(1 for seen in self.last_seen.values() if seen >= horizon),
            "model": self.model.state(),
            "stopping": self.stopping,
        }

    def _accept(self, client: bytes, request_id: str, message: Message) -> Message:
        if self.stopping:
            raise ShuttingDown("the worker is stopping; start it again, or wait for the next one")
        expected = pixel_frame_size(message.fields, self.config.max_input_pixels)
        if len(message.buffers) != 1 or memoryview(message.buffers[0]).nbytes != expected:
            sizes = [memoryview(b).nbytes for b in message.buffers]
            raise BadMessage(f"an upscale carries one pixel frame of {expected} bytes, got frames of {sizes} bytes")
        params = message.fields.get("params", {})
        if not isinstance(params, dict):
            raise BadMessage("'params' must be a JSON object")
        header = message.fields
        try:  # everything that can be refused is refused now, not after waiting in the queue
            request = UpscaleRequest.from_dict(params)
            out_height, out_width = request.output_size(header["height"], header["width"])
            check_work_size(header["height"], header["width"], (out_height, out_width), self.config.max_pixels)
        except TypeError as error:  # say, a width given as text
            raise InvalidRequest(str(error)) from None
        job, position = self.board.submit(client, request_id, header, message.buffers[0], request)
        log.info("job %s queued: %sx%s %s x%s", job.id, header["width"], header["height"], header["dtype"], header["channels"])
        result_bytes = out_width * out_height * header["channels"] * sample_bytes(header["dtype"])
        return Message("accepted", {"job": job.id, "position": position, "result_bytes": result_bytes})

    def _cancel(self, message: Message) -> Message:
        if not isinstance(message.fields.get("job"), str):
            raise BadMessage("a cancel names the job by its id, a string")
        job = self.board.get(message.fields.get("job"))
        if job is None:
            raise UnknownJob(f"no queued or running job {message.fields.get('job')!r}")
        self.board.cancel(job, "cancelled by the client")
        return Message("cancelling", {"job": job.id, "state": job.state})

    def _cancel_abandoned_jobs(self) -> None:
        """Cancel the jobs of clients whose connection closed (at once), or that sent no heartbeat for
        `client_timeout` seconds (a client across a network may vanish without closing it)."""
        now = time.monotonic()
        jobs = self.board.all()
        closed = set(self.disconnects.gone({job.client for job in jobs}, lambda: Message("pong", {}).encode(self.key)))
        for job in jobs:
            if job.client in closed:
                self.board.cancel(job, "the client disconnected")
                self.last_seen.pop(job.client, None)
            elif self.last_seen.get(job.client, 0.0) < now - self.config.client_timeout:
                self.board.cancel(job, f"the client sent no heartbeat for {self.config.client_timeout:g} s")
        if len(self.last_seen) > 1000:  # forget clients long gone
            forgotten = now - 60 * self.config.client_timeout
            self.last_seen = {client: seen for client, seen in self.last_seen.items() if seen >= forgotten}


def setup_logging(log_file: Path) -> None:
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=5 * 1024 * 1024, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("invsr worker: %(message)s"))
    log.handlers[:] = [handler, console]
    log.setLevel(logging.INFO)
    log.propagate = False


def serve(config: WorkerConfig) -> int:
    setup_logging(config.log_file)
    return Worker(config).run()
