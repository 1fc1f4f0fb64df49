"""The worker's jobs: the board that both threads share, the model that loads on first use, and the
executor thread that owns the device and runs one job at a time.

The executor never touches the ROUTER socket (ZeroMQ sockets are not shared between threads): it sends
progress, results and errors through an in-process PUSH socket that the I/O thread forwards.

A job whose client asked for `bands` (docs/PROTOCOL.md, 3.2) sends each band of rows of its result as the
tiles finish it, and holds no more of the result than a band; others get the whole result in one frame,
gathered in the result's own pixel type. A client that gives a `window` (3.3) is sent at most that many bytes
of bands beyond those it has said it has taken: the job waits for a slow client (a PNG being compressed, a network
slower than the device) rather than queue its result in memory, here and in the client's socket.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import threading
import time

import numpy as np
import zmq

from invsr import UpscaleRequest, locate_weights
from invsr.wire.contract import PIXEL_DTYPES, WIRE_DTYPES
from invsr.wire.errors import Busy, Cancelled, DeviceError, Internal, InvalidImage, InvSRError
from invsr.wire.protocol import Message, error_message, new_id

log = logging.getLogger("invsr.worker")
OUTBOX = "inproc://invsr-worker-outbox"


@dataclasses.dataclass
class Job:
    id: str
    client: bytes  # the ZeroMQ routing id of the client that sent it
    owner: str  # who may see and cancel it: its connection, or with CurveZMQ its client's key (worker.py)
    request_id: str
    header: dict
    pixels: memoryview | None  # the received frame, viewed without a copy; dropped when done
    request: UpscaleRequest
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    cancel_reason: str = ""
    state: str = "queued"
    progress: dict = dataclasses.field(default_factory=dict)
    credit: BandCredit = dataclasses.field(default_factory=lambda: BandCredit(None))


class BandCredit:
    """The bytes of bands a job may send beyond those its client has taken (protocol 3.3's flow control): its
    `window`; None, unpaced (a 3.2 client). The I/O thread hears `taken`; the job's thread waits for room."""

    POLL_S = 0.2  # how soon a job waiting for room notices that it was cancelled
    # A client that heartbeats but takes no band holds the device (and the jobs queued behind it): given up
    # after this long. A band takes a client a second or two, even across a slow link.
    STALL_S = 60.0

    def __init__(self, window: int | None):
        self.window, self.taken = window, 0
        self.ends = [0]  # bytes sent up to the end of each band sent: ends[k] before band k
        self.taken_at = 0.0  # when the client last took a band
        self.changed = threading.Condition()

    def took(self, bands: int) -> None:
        """The client has taken `bands` bands in all (a count, so that a repeated or late one is harmless)."""
        with self.changed:
            if bands > self.taken:
                self.taken, self.taken_at = bands, time.monotonic()
                self.changed.notify_all()

    def wait_for_room(self, size: int, cancel_check) -> None:
        """Return once a band of `size` bytes may be sent (counted as sent); `cancel_check()` raises to stop
        waiting, and `Cancelled` ends a wait on a client that took no band for STALL_S seconds. A band always
        may once the client has taken all before it, however large."""
        if self.window is None:
            return
        started = time.monotonic()
        with self.changed:
            while True:
                ahead = self.ends[-1] - self.ends[min(self.taken, len(self.ends) - 1)]
                if ahead == 0 or ahead + size <= self.window:
                    break
                cancel_check()
                if time.monotonic() - max(started, self.taken_at) > self.STALL_S:
                    raise Cancelled(
                        f"the worker gave the job up: its client took none of the bands sent for {self.STALL_S:g} s "
                        "(it answers, but does not say it has taken them); upscale again"
                    )
                self.changed.wait(self.POLL_S)
            self.ends.append(self.ends[-1] + size)


def share_of(queue_length: int) -> int:
    """The jobs one client may have queued or running by default: half the places (one running, `queue_length`
    waiting), so that a second client always finds room."""
    return max(1, (queue_length + 1) // 2)


class JobBoard:
    """The queued and running jobs, in order; safe to use from both threads."""

    def __init__(self, queue_length: int, jobs_per_client: int | None = None):
        self.queue_length = queue_length
        self.jobs_per_client = jobs_per_client or share_of(queue_length)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.queue: queue.Queue = queue.Queue()

    def submit(self, client: bytes, owner: str, request_id: str, header: dict, pixels, request) -> tuple[Job, int]:
        """Queue a job; raise Busy when the queue is full, or when its owner (worker.py) already has its share of
        it, `jobs_per_client` queued or running: one client, or one GIMP with many layers, never starves another.
        Returns the job and its queue position."""
        with self.lock:
            waiting = sum(1 for j in self.jobs.values() if j.state == "queued")
            if waiting >= self.queue_length:
                raise Busy(f"the worker's queue is full ({self.queue_length} jobs waiting); try again shortly")
            if sum(1 for j in self.jobs.values() if j.owner == owner) >= self.jobs_per_client:
                raise Busy(
                    f"this worker takes at most {self.jobs_per_client} jobs of this client at a time, queued or "
                    "running, so that other clients get their turn; send the next when one has ended"
                )
            job = Job(
                new_id(), client, owner, request_id, header, pixels, request, credit=BandCredit(header.get("window"))
            )
            self.jobs[job.id] = job
        self.queue.put(job)
        return job, waiting + 1

    def get(self, job_id) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def all(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())

    def finish(self, job: Job) -> None:
        job.pixels = None
        with self.lock:
            self.jobs.pop(job.id, None)

    @staticmethod
    def cancel(job: Job, reason: str) -> None:
        """Ask a job to stop: a queued one never starts, a running one stops at its next stage (progress.py)."""
        if not job.cancel.is_set():
            job.cancel_reason = reason
            job.cancel.set()
            log.info("job %s: %s", job.id, reason)


class ModelHolder:
    """Loads the pipeline on first use (or at start with --preload), in the executor thread; remembers
    a failure for `hello`, and tries again at the next job (the user may have fetched the weights)."""

    def __init__(self, config):
        self.config = config
        self.pipeline = None
        self.status = {"state": "not loaded"}
        self.compile_error: dict = {}  # {"compile_error": why} once compiling has failed
        self.loading = threading.Lock()  # jobs on Ray run side by side: one of them loads
        self.joined_ray = False  # whether this worker started or joined Ray, and so leaves it at the end
        self.unavailable: InvSRError | None = None  # why jobs are refused (the Ray head lost: ray_head.py)
        self.head_loss = None  # with --ray ADDRESS: the watch on the cluster's head (ray_head.py)

    @property
    def concurrent(self) -> bool:
        """Whether jobs run side by side (on Ray actors, which share out their batches) or one at a time."""
        return self.config.ray is not None

    def state(self) -> dict:
        if self.unavailable is not None:
            return {"state": "unavailable", "code": self.unavailable.code, "error": str(self.unavailable)}
        status = dict(self.status)
        if self.concurrent and self.pipeline is not None:  # the actors' health now, not at loading
            status["actors"] = self.pipeline.actors()
        return status

    def get(self, on_stage=None):
        """The pipeline, loaded the first time and, with --compile, compiled right away: for the default
        tile and the automatic batch, so that jobs do not wait minutes for it (with --preload, not even
        the first). Where compiling fails (no C++ compiler for a CPU, no Triton for a GPU), it serves
        uncompiled: slower, and `hello` says why. `on_stage` hears "loading model" and "compiling"."""
        with self.loading:
            self.check_available()
            if self.pipeline is None:
                pipeline = self._load(on_stage)
                if self.unavailable is not None:  # the Ray head lost while the actors loaded: they went with it
                    self.status = {"state": "not loaded"}
                    raise self.unavailable
                self.pipeline = pipeline
                if self.config.compile and not self.compile_error:
                    self._compile(on_stage)
            return self.pipeline

    def _load(self, on_stage):
        """Load the model here or, with --ray, start the actors that each load it; imports PyTorch, so not
        before the worker answers its first `hello`."""
        self.status = {"state": "loading"}
        if on_stage is not None:
            on_stage("loading model")
        try:
            pipeline = self._start_on_ray() if self.concurrent else self._load_here()
        except InvSRError as error:
            self.status = {"state": "failed", "code": error.code, "error": str(error), "details": error.details}
            log.error("model failed to load: %s", error)
            raise
        except Exception as error:  # a bug or a broken install: say so in `hello`, never stay "loading"
            self.status = {"state": "failed", "code": "internal", "error": f"{type(error).__name__}: {error}"}
            log.exception("model failed to load")
            raise
        pipeline.max_pixels = self.config.max_pixels
        self.status = {
            "state": "ready",
            **pipeline.describe(),
            "load_seconds": pipeline.load_report["seconds"],
            **self.compile_error,
        }
        log.info("model loaded: %s", self.status)
        return pipeline

    def join_cluster(self, on_rejoined=None) -> None:
        """With --ray: start Ray here or join the cluster (in the main thread, where Ray wants to be joined);
        a joined cluster's head is watched, to outlive its loss and join it again (ray_head.py), calling
        `on_rejoined()` then where the model should be loaded at once."""
        if not self.concurrent:
            return
        from invsr_server.cluster.ray_cluster import connect

        if self.config.ray != "local":  # read as Ray is imported: between leaving a lost head and joining it
            os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # again, a call to Ray fails, never starts one
        self.joined_ray = connect(self.config.ray)
        if self.joined_ray and self.config.ray != "local":  # a local Ray ends only with this process
            from .ray_head import HeadLoss

            self.head_loss = HeadLoss(self, self.config.ray, on_rejoined or (lambda: None)).start()

    def check_available(self) -> None:
        """Raise why jobs are refused now, if they are."""
        if self.unavailable is not None:
            raise self.unavailable

    def lose(self, failure: InvSRError):
        """Refuse jobs with `failure` until `regain`; returns the pipeline, taken out, for the caller to end."""
        self.unavailable = failure
        pipeline, self.pipeline = self.pipeline, None
        self.status = {"state": "not loaded"}
        return pipeline

    def regain(self) -> None:
        self.unavailable = None

    def close(self) -> None:
        """End what the model holds beyond this process: on Ray, the actors, and Ray if joined here."""
        if self.head_loss is not None:
            self.head_loss.stop()
        if self.pipeline is not None and self.concurrent:
            self.pipeline.close()
        if self.joined_ray:
            import ray

            ray.shutdown()

    def _load_here(self):
        from invsr import InvSRPipeline

        weights = locate_weights(self.config.weights, self.config.noise_predictor)
        return InvSRPipeline.load(weights, device=self.config.device, dtype=self.config.dtype)

    def _start_on_ray(self):
        """The actors, on the Ray joined by `join_cluster` (never joined here: after its head was lost, only
        ray_head.py joins it again, and two threads calling ray.init at once fail)."""
        from invsr_server.cluster import require_ray

        ray = require_ray()
        from invsr_server.cluster.pipeline import ActorOptions, RayPipeline
        from invsr_server.cluster.ray_cluster import actor_shape

        if not ray.is_initialized():  # left just now, its head lost
            raise self.unavailable or DeviceError("this worker has left Ray; restart it")
        config = self.config
        options = ActorOptions(config.weights, config.noise_predictor, config.device, config.dtype)
        return RayPipeline.start(options, actor_shape(config.actors))

    def _compile(self, on_stage) -> None:
        self.status = dict(self.status, state="compiling")
        if on_stage is not None:
            on_stage("compiling")
        started = time.perf_counter()
        try:
            self.pipeline.optimize(compile=True)
            self.pipeline.warm_up()  # compiles on this first call
        except Exception as error:
            log.exception("compiling the networks failed; serving them uncompiled")
            self.compile_error = {"compile_error": f"{type(error).__name__}: {error}"[:500]}
            self._serve_uncompiled()
            return
        self.status = dict(self.status, state="ready", compile_seconds=round(time.perf_counter() - started, 1))
        log.info("networks compiled in %.1f s", self.status["compile_seconds"])

    def _serve_uncompiled(self) -> None:
        """Put back the networks as loaded (the same modules: no second copy of the weights); should even that
        fail, drop the half-compiled pipeline, so that the next job loads the model afresh."""
        try:
            self.pipeline.undo_optimize()
        except Exception as error:
            self.pipeline = None
            self.status = {"state": "failed", "code": "internal", "error": f"{type(error).__name__}: {error}"}
            log.exception("cannot restore the uncompiled networks; the next job loads the model again")
            raise
        self.status = dict(self.status, state="ready", **self.compile_error)


PRELOAD = object()  # a queue entry that asks the executor to load the model now


class Executor:
    """The thread that owns the device: takes jobs from the board's queue until it gets None."""

    def __init__(
        self, board: JobBoard, model: ModelHolder, context: zmq.Context, key: bytes, log_file, signed_buffers=True
    ):
        self.board, self.model, self.context, self.key, self.log_file = board, model, context, key, log_file
        self.signed_buffers = signed_buffers  # the connection file's: whether results' pixels are signed
        self.running: Job | None = None  # the job taken, until its client has been sent its end
        self.failure = "it ended"  # why the thread ended, should it ever end before the worker stops
        self.side_by_side = threading.Semaphore(board.queue_length)  # jobs running at once on Ray

    def run(self) -> None:
        push = self.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(OUTBOX)
        try:
            while (job := self.board.queue.get()) is not None:
                if job is PRELOAD:
                    self._preload()
                elif self.model.concurrent:
                    self._start_beside(job)
                else:
                    self._run(job, push)
        except BaseException as error:  # not expected: the I/O thread notices the end and fails the jobs
            self.failure = f"{type(error).__name__}: {error}"[:500]
            log.exception("the executor thread stopped")
        finally:
            push.close(linger=0)

    def _start_beside(self, job: Job) -> None:
        """Run the job in a thread of its own, beside those running (its batches share the Ray actors with
        theirs); at most `queue_length` at once, the rest waiting in the queue as they would for one device."""
        self.side_by_side.acquire()

        def run() -> None:
            push = self.context.socket(zmq.PUSH)  # a socket per thread: ZeroMQ sockets are not shared
            push.setsockopt(zmq.LINGER, 0)
            push.connect(OUTBOX)
            try:
                self._run(job, push)
            except Exception:
                log.exception("job %s: its thread failed", job.id)
            finally:
                push.close(linger=0)
                self.side_by_side.release()

        threading.Thread(target=run, name=f"invsr-job-{job.id[:8]}", daemon=True).start()

    def _preload(self) -> None:
        try:
            self.model.get()
        except Exception:
            pass  # recorded in the model state and the log; `hello` shows it and the next job tries again

    def _run(self, job: Job, push: zmq.Socket) -> None:
        def send(message: Message) -> None:
            message.fields.update(re=job.request_id, job=job.id)
            push.send_multipart([job.client, *message.encode(self.key, self.signed_buffers)], copy=False)

        def cancel_check() -> None:  # before each stage, and so within a batch (minutes on a CPU)
            if job.cancel.is_set():
                raise Cancelled(job.cancel_reason)

        def progress(update) -> None:
            cancel_check()
            eta = None if update.eta is None else round(update.eta, 3)
            job.progress = {
                "stage": update.stage,
                "done": update.done,
                "total": update.total,
                "elapsed": round(update.elapsed, 3),
                "eta": eta,
            }
            send(Message("progress", dict(job.progress)))

        self.running = job
        try:
            cancel_check()
            job.state = "running"
            started = time.perf_counter()
            pipeline = self.model.get(lambda stage: send(Message("progress", {"stage": stage, "done": 0, "total": 0})))
            bands = _BandSender(send, job.credit, cancel_check) if job.header.get("bands") is True else None
            result = pipeline.upscale(
                _as_array(job), job.request, progress=progress, cancel_check=cancel_check, on_band=bands
            )
            final = _result_message(result, bands)
            log.info("job %s done in %.2f s", job.id, time.perf_counter() - started)
        except InvSRError as error:
            log.info("job %s failed: %s: %s", job.id, error.code, error)
            final = error_message(error, job.request_id)
        except Exception as error:  # a bug in one job must not stop the worker
            log.exception("job %s failed", job.id)
            text = f"unexpected failure ({type(error).__name__}: {error}); see the worker log {self.log_file}"
            final = error_message(Internal(text), job.request_id)
        finally:
            self.board.finish(job)  # gone from `status` before the client hears the end
        try:
            send(final)
        except (TypeError, ValueError):  # a report that JSON cannot hold: a bug; the client must still hear the end
            log.exception("job %s: cannot send its end", job.id)
            send(error_message(Internal(f"unexpected failure; see the worker log {self.log_file}"), job.request_id))
        self.running = None


def refuse_non_finite(header: dict, frame) -> None:
    """Refuse float pixels holding NaN or infinity on arrival, without a copy. Finite values outside [0, 1]
    (highlights) are the library's to judge. The float64 sum of float32 samples cannot overflow (1e9 samples
    of at most 3.4e38 stay far below 1.8e308), so it is finite exactly when every sample is."""
    if header["dtype"] != "f32":
        return
    samples = np.frombuffer(frame, dtype=np.dtype(PIXEL_DTYPES["f32"][0]))
    if not math.isfinite(np.sum(samples, dtype=np.float64)):
        bad = ~np.isfinite(samples)  # the rare path: name how many and where, as the library does
        first = int(np.argmax(bad)) // header["channels"]
        raise InvalidImage.non_finite(int(bad.sum()), first % header["width"], first // header["width"])


def _as_array(job: Job) -> np.ndarray:
    header = job.header
    dtype = np.dtype(PIXEL_DTYPES[header["dtype"]][0])
    shape = (header["height"], header["width"], header["channels"])
    return np.frombuffer(job.pixels, dtype=dtype).reshape(shape)  # a view of the received frame: no copy


class _BandSender:
    """Sends each band of the result as a `band` message as it is finished: its rows and geometry, and the
    pixels in one frame; once the client's window has room for it."""

    def __init__(self, send, credit: BandCredit, cancel_check):
        self.send, self.credit, self.cancel_check = send, credit, cancel_check
        self.count = 0

    def __call__(self, top: int, rows: np.ndarray) -> None:
        rows = rows if rows.ndim == 3 else rows[:, :, None]
        self.credit.wait_for_room(rows.nbytes, self.cancel_check)
        fields = {
            "band": self.count,
            "top": top,
            "rows": rows.shape[0],
            "width": rows.shape[1],
            "channels": rows.shape[2],
            "dtype": WIRE_DTYPES[str(rows.dtype)],
        }
        self.send(Message("band", fields, [memoryview(np.ascontiguousarray(rows)).cast("B")]))
        self.count += 1


def _result_message(result, bands: _BandSender | None = None) -> Message:
    """The job's `result`: with the whole image in one frame, or, where it went in bands, their count."""
    if bands is not None:
        report = result.report
        width, height = report["output_size"]
        fields = {
            "width": width,
            "height": height,
            "channels": report["channels"],
            "dtype": WIRE_DTYPES[report["pixel_dtype"]],
            "bands": bands.count,
            "report": report,
        }
        return Message("result", fields)
    image = result.image if result.image.ndim == 3 else result.image[:, :, None]
    fields = {
        "width": image.shape[1],
        "height": image.shape[0],
        "channels": image.shape[2],
        "dtype": WIRE_DTYPES[str(image.dtype)],
        "report": result.report,
    }
    return Message("result", fields, [memoryview(image).cast("B")])
