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

import dataclasses
import logging
import logging.handlers
import math
import os
import signal
import threading
import time
from pathlib import Path

import zmq

from invsr import UpscaleRequest, __version__, available_memory
from invsr.wire import connection as connections
from invsr.wire.contract import (
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
from invsr.wire.errors import (
    BadMessage,
    Internal,
    InvalidRequest,
    InvSRError,
    ShuttingDown,
    TooLarge,
    Unauthorized,
    UnknownJob,
    UnknownOperation,
)
from invsr.wire.protocol import (
    REQUESTS,
    Message,
    error_message,
    pixel_frame_size,
    unverified_request_id,
    version_text,
)

from . import listening
from .access import Gatekeeper, PeerNames, allowed_curve_keys, unpredictable_routing_ids
from .disconnects import DisconnectWatch
from .intake import Intake
from .jobs import OUTBOX, PRELOAD, Executor, Job, JobBoard, ModelHolder, refuse_non_finite
from .replay import ReplayGuard
from .supervisor import supervisor_pid

log = logging.getLogger("invsr.worker")
POLL_MS = 100
REASSURE_EVERY = 1.0  # seconds between the pongs that tell waiting clients the worker lives while it drops a message
MAX_COUNT = 2**53  # the largest count a JSON number holds exactly (a window, the bands taken)
LOG_BYTES, LOG_BACKUPS = 5 * 1024 * 1024, 3  # the log rotates at this size, keeping this many old ones


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
    jobs_per_client: int | None = None  # queued or running at once per client; None: half the places (jobs.share_of)
    client_timeout: float = 5.0  # seconds of silence after which a client's jobs are cancelled
    curve_keys: Path | None = None  # folder with server.key_secret
    allowed_keys: Path | None = None  # folder of allowed clients' public .key files
    insecure: bool = False
    compile: bool = False  # torch.compile the networks once loaded (InvSRPipeline.optimize)
    ray: str | None = None  # compute on Ray actors: "local" (start Ray here) or a cluster's address
    actors: int | None = None  # with `ray`: how many (None: one per GPU, or one without GPUs)

    @property
    def max_input_pixels(self) -> int:
        return self.max_pixels // 16  # the x4 result of the input must fit the work limit


class Worker:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.context = zmq.Context()
        self.key = bytes.fromhex(connections.new_key())
        self.board = JobBoard(config.queue_length, config.jobs_per_client)
        self.last_seen: dict[bytes, float] = {}
        self.replays = ReplayGuard()
        self.peer_name = PeerNames()  # what the log calls a connection: never its routing id
        self.held_up_until = self.reassured_at = -math.inf  # while the rest of a refused message was dropped
        self.stopping = False
        self.model = ModelHolder(config)
        self.executor_lost: str | None = None  # why no job can run any more, once the executor thread has ended
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
            supervisor_pid=supervisor_pid(),
            log_file=str(self.config.log_file),
            worker_version=__version__,
            curve_server_key=self.curve_public_key,
            socket_auth=None if self.curve_public_key else "plain",
            signed_buffers=self.signed_buffers,
        )
        self.executor = Executor(
            self.board, self.model, self.context, self.key, self.config.log_file, signed_buffers=self.signed_buffers
        )
        self.executor_thread = thread = threading.Thread(target=self.executor.run, name="invsr-executor", daemon=True)
        thread.start()
        # before the handlers: joining Ray sets its own, which end the process at once; rejoined after its head
        # was lost, the model is loaded again at once if it had been
        self.model.join_cluster(on_rejoined=lambda: self.board.queue.put(PRELOAD))
        if self.config.preload:  # after joining: a load that found Ray not yet joined would call ray.init again
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
            self.model.close()
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
        self.signed_buffers = connections.buffers_need_signing(self.endpoint, self.curve_public_key is not None)
        self.socket_claim = listening.claim(self.endpoint)
        try:
            router.bind(self.endpoint)
        except zmq.ZMQError as error:
            raise SystemExit(
                f"invsr serve: cannot bind {self.endpoint}: {error.strerror}. If another InvSR worker is "
                f"running, its connection file is {config.connection_file}; or choose --bind tcp://127.0.0.1:PORT"
            ) from None
        self.disconnects = DisconnectWatch(router)
        self.intake = Intake(router, config.max_message_bytes)
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
            if self.router in events or self.intake.refused is not None:  # the rest of a refused message: dropped
                self._receive_safely()
            if self.intake.refused is not None:
                self._reassure_waiting_clients()
            self._notice_a_lost_executor()
            self._cancel_abandoned_jobs()
            if self.stopping:
                for job in self.board.all():
                    self.board.cancel(job, "the worker is stopping")
                if not self.board.all():
                    return

    def _receive_safely(self) -> None:
        """Nothing a peer sends may end the loop: what escapes the handling of one message is logged."""
        try:
            self._receive()
        except Exception:
            log.exception("failed to handle a message")

    def _receive(self) -> None:
        arrival = self.intake.receive()  # frame by frame: what is beyond the protocol's limits is never kept
        if arrival is None:
            return  # part of a refused message dropped; the rest at the next turn
        client, frames, request_id = arrival.client, arrival.frames, arrival.request_id
        try:
            if arrival.refusal is not None:
                raise arrival.refusal
            message = Message.decode(self.key, [frame.buffer for frame in frames], self.signed_buffers)
            request_id = _request_id(message.fields)
            self.replays.check(frames[0].buffer, message.fields.get("sent"), time.time())
            self.last_seen[client] = time.monotonic()
            self._dispatch(client, self._owner(client, frames[0]), request_id, message)
        except InvSRError as error:
            if not isinstance(error, Unauthorized):
                log.info("refused a request from %s: %s", self.peer_name(client), error)
            if request_id is None and len(frames) >= 2:  # refused unread: name the request if it can be read
                request_id = unverified_request_id(frames[1].buffer)
            self._send(client, error_message(error, request_id))
        except Exception:  # a bug must not stop the worker: report it and go on
            log.exception("failed to handle a request")
            self._send(client, error_message(Internal("unexpected failure; see the worker log"), request_id))

    def _reassure_waiting_clients(self) -> None:
        """While the rest of a refused message is dropped (a million frames take seconds), other clients'
        messages wait behind it: tell those heard from lately, once a second, that the worker lives (a `pong`
        without `re`), and do not count that time as their silence (_cancel_abandoned_jobs)."""
        now = self.held_up_until = time.monotonic()
        if now - self.reassured_at < REASSURE_EVERY:
            return
        self.reassured_at = now
        recent = self.intake.refused_at - self.config.client_timeout
        for client in [client for client, seen in self.last_seen.items() if seen >= recent]:
            self._send(client, Message("pong", {}))

    def _owner(self, client: bytes, frame: zmq.Frame) -> str:
        """Who may see and cancel a job: with CurveZMQ, whoever holds its client's key (the ZAP handshake's
        User-Id), on any connection; without it, only its connection (every PLAIN peer has the same user)."""
        if self.curve_public_key is not None:
            try:
                return "key " + frame.get("User-Id")
            except zmq.ZMQError:  # no user id: fall back to the connection
                pass
        return "connection " + client.hex()

    def _dispatch(self, client: bytes, owner: str, request_id: str | None, message: Message) -> None:
        if not request_id:
            raise BadMessage("every request needs a string 'id'")
        handlers = {
            "hello": self._hello,
            "ping": lambda m: Message("pong", {}),
            "echo": lambda m: Message("echo", {"sizes": [memoryview(b).nbytes for b in m.buffers]}, m.buffers),
            "status": lambda m: Message("status", self._status(owner)),
            "cancel": lambda m: self._cancel(owner, m),
            "upscale": lambda m: self._accept(client, owner, request_id, m),
            "taken": lambda m: self._taken(owner, m),
        }
        if message.type not in handlers:
            raise UnknownOperation(f"unknown request type {message.type!r}; this worker knows {', '.join(REQUESTS)}")
        reply = handlers[message.type](message)
        if reply is None:  # `taken`: one per band, answered by the bands it lets through
            return
        reply.fields["re"] = request_id
        self._send(client, reply)

    def _send(self, client: bytes, message: Message) -> None:
        try:
            frames = message.encode(self.key, self.signed_buffers)
        except (TypeError, ValueError):  # a field that JSON cannot hold (NaN, bytes): a bug, not the peer's doing
            log.exception("cannot encode a %s message", message.type)
            failure = error_message(Internal("unexpected failure; see the worker log"), message.fields.get("re"))
            frames = failure.encode(self.key, self.signed_buffers)
        self.router.send_multipart([client, *frames], copy=False)

    def _hello(self, message: Message) -> Message:
        config = self.config
        return Message(
            "hello",
            {
                "protocol": version_text(),
                "worker_version": __version__,
                "pid": os.getpid(),
                "model": self._model_state(),
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
            },
        )

    def _model_state(self) -> dict:
        if self.executor_lost is not None:
            return {"state": "failed", "code": Internal.code, "error": self.executor_lost}
        return self.model.state()

    def _status(self, asking: str) -> dict:
        jobs = [_job_status(job, job.owner == asking) for job in self.board.all()]
        horizon = time.monotonic() - self.config.client_timeout
        return {
            "jobs": jobs,
            "queued": sum(1 for j in jobs if j["state"] == "queued"),
            "running": sum(1 for j in jobs if j["state"] == "running"),
            "clients": sum(1 for seen in self.last_seen.values() if seen >= horizon),
            "model": self._model_state(),
            "stopping": self.stopping,
        }

    def _accept(self, client: bytes, owner: str, request_id: str, message: Message) -> Message:
        if self.stopping:
            raise ShuttingDown("the worker is stopping; start it again, or wait for the next one")
        if self.executor_lost is not None:
            raise Internal(self.executor_lost)
        self.model.check_available()  # the Ray cluster's head lost: refused at once, not after the queue
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
            result_bytes = out_width * out_height * header["channels"] * sample_bytes(header["dtype"])
            if header.get("bands") is not True:
                check_whole_result_fits(result_bytes)
            elif "window" in header and not _is_count(header["window"], least=1):
                raise InvalidRequest(
                    f"'window' is the bytes of bands a client can hold ahead, 1 or more; got {header['window']!r}"
                )
        except TypeError as error:  # say, a width given as text
            raise InvalidRequest(str(error)) from None
        except OverflowError:  # say, a width of 10**400: too large to compute a scale with
            raise InvalidRequest("the requested output size is far too large; InvSR enlarges from 1x to 16x") from None
        refuse_non_finite(header, message.buffers[0])
        job, position = self.board.submit(client, owner, request_id, header, message.buffers[0], request)
        log.info(
            "job %s queued: %sx%s %s x%s",
            job.id,
            header["width"],
            header["height"],
            header["dtype"],
            header["channels"],
        )
        return Message("accepted", {"job": job.id, "position": position, "result_bytes": result_bytes})

    def _taken(self, owner: str, message: Message) -> None:
        """The client has taken so many bands of its job (3.3): their bytes leave the job's window."""
        job_id, bands = message.fields.get("job"), message.fields.get("bands")
        if not isinstance(job_id, str) or not _is_count(bands, least=0):
            raise BadMessage("a taken names the job by its id (a string) and the bands taken so far (a count)")
        job = self.board.get(job_id)
        if job is not None and job.owner == owner:  # a late one, after the job's end, is no error
            job.credit.took(bands)

    def _cancel(self, owner: str, message: Message) -> Message:
        if not isinstance(message.fields.get("job"), str):
            raise BadMessage("a cancel names the job by its id, a string")
        job = self.board.get(message.fields.get("job"))
        if job is None or job.owner != owner:  # another client's job is not even said to exist
            raise UnknownJob(f"no queued or running job {message.fields.get('job')[:64]!r} of this client")
        self.board.cancel(job, "cancelled by the client")
        return Message("cancelling", {"job": job.id, "state": job.state})

    def _notice_a_lost_executor(self) -> None:
        """Should the executor thread ever end, no job would run again: fail the waiting ones rather than leave
        their clients waiting forever (their heartbeats are still answered), and refuse new ones."""
        if self.executor_lost is not None or self.executor_thread.is_alive():
            return
        self.executor_lost = (
            f"the worker can no longer run jobs: its executor thread stopped ({self.executor.failure}); "
            "restart the worker (`invsr serve --stop`; the next upscale starts a new one)"
        )
        log.error("%s", self.executor_lost)
        running = [self.executor.running] if self.executor.running is not None else []
        for job in {job.id: job for job in [*running, *self.board.all()]}.values():
            self.board.finish(job)
            failure = error_message(Internal(self.executor_lost), job.request_id)
            failure.fields["job"] = job.id
            self._send(job.client, failure)

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
            elif max(self.last_seen.get(job.client, 0.0), self.held_up_until) < now - self.config.client_timeout:
                self.board.cancel(job, f"the client sent no heartbeat for {self.config.client_timeout:g} s")
        if len(self.last_seen) > 1000:  # forget clients long gone
            forgotten = now - 60 * self.config.client_timeout
            self.last_seen = {client: seen for client, seen in self.last_seen.items() if seen >= forgotten}


def _is_count(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= MAX_COUNT


def _request_id(fields: dict) -> str | None:
    """The id to answer with: only a string is an id (anything else would be echoed back, NaN included)."""
    request_id = fields.get("id")
    return request_id if isinstance(request_id, str) else None


def _job_status(job: Job, yours: bool) -> dict:
    """A job as `status` shows it: its id, the handle that cancels it, only to its own client."""
    shown = {"state": job.state, "progress": job.progress, "yours": yours}
    return {"job": job.id, **shown} if yours else shown


class PrivateLog(logging.handlers.RotatingFileHandler):
    """The rotating log, readable by its owner only (0600): it names jobs and image sizes. Rotation renames
    the file, so the old logs keep that mode."""

    def _open(self):
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=_private_opener)


def _private_opener(path, flags):
    return os.open(path, flags, 0o600)


def setup_logging(log_file: Path) -> None:
    log_file = Path(log_file)
    connections.make_private_folder(log_file.parent)
    for old in [log_file, *(log_file.with_name(f"{log_file.name}.{n}") for n in range(1, LOG_BACKUPS + 1))]:
        if old.exists():  # written by an older version, which left them readable by all
            old.chmod(0o600)
    handler = PrivateLog(log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("invsr worker: %(message)s"))
    log.handlers[:] = [handler, console]
    log.setLevel(logging.INFO)
    log.propagate = False


def serve(config: WorkerConfig) -> int:
    setup_logging(config.log_file)
    return Worker(config).run()


def check_whole_result_fits(result_bytes: int) -> None:
    """Refuse now, before any work, a result that a client taking it whole (protocol 3.1 and older) would have
    the worker gather beyond this machine's free memory; a client taking bands (3.2) needs a band at a time."""
    available = available_memory()
    if available is not None and result_bytes > available:
        raise TooLarge(
            f"this result, {result_bytes / 1e9:.1f} GB, would be gathered whole for this client, and the worker's "
            f"computer has {available / 1e9:.1f} GB of memory free; update the client (InvSR for GIMP {__version__}"
            " takes results in bands, a few rows at a time), or choose a smaller scale"
        )
