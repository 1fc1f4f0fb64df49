"""`RayPipeline`: the pipeline's interface with an image's tiles computed by actors on a Ray cluster.

    connect("local")
    pipeline = RayPipeline.start(ActorOptions(weights=...), actor_shape(None))
    result = pipeline.upscale(pixels, UpscaleRequest(seed=0))

The image is checked, planned and its noise drawn here, once (image_job.py, tiles/work.py); its batches
go to the actors (dispatch.py) and their outputs are accumulated here in the plan's canonical order, so
the result is the one a single device gives with the same tiles: on CPUs in fp32 byte for byte; on GPUs
within the dtype's rounding (each actor's kernels may differ in their last bits). Several threads may
upscale at once: their batches share the actors fairly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import ray
import torch

from invsr.image_job import ImageJob, UpscaleResult
from invsr.progress import ProgressCallback, ProgressReporter, StageTimer
from invsr.request import UpscaleRequest
from invsr.tiles import TileAccumulator
from invsr.tiles.work import TileWork
from invsr.wire.contract import DEFAULT_MAX_PIXELS
from invsr.wire.errors import DeviceError, InvSRError
from invsr.wire.protocol import new_id

from .actor import TileActor
from .dispatch import FAIL_PAUSE, PING_LIMIT, SLOW_FACTOR, SLOW_FLOOR, Actor, Dispatcher
from .ray_cluster import ActorShape, actor_shape, connect

POLL_S = 0.1  # how often a job's thread checks for cancelling while it waits for batches
START_TIMEOUT_S = 900.0  # actors load their models in this time, or the start fails (a slow disk, a download)
LEAVE_S = 5.0  # once their batches failed, jobs leave the pipeline in this time (a poll, a plan's answer)


@dataclasses.dataclass(frozen=True)
class ActorOptions:
    """What every actor loads: as `invsr serve` and `invsr upscale` take them; weights must be at the same
    path on every machine (or in each machine's Hugging Face cache, for None)."""

    weights: Path | None = None
    noise_predictor: Path | None = None
    device: str = "auto"
    dtype: str = "auto"
    slow_factor: float = SLOW_FACTOR
    slow_floor: float = SLOW_FLOOR
    ping_limit: float = PING_LIMIT
    fail_pause: float = FAIL_PAUSE


class RayPipeline:
    def __init__(self, dispatcher: Dispatcher, load_report: dict):
        self.dispatcher = dispatcher
        self.load_report = load_report
        self.max_pixels = DEFAULT_MAX_PIXELS
        self.static_shapes = False
        self.joined = False  # whether this pipeline joined Ray (or started it), and so leaves it when closed
        self.failure: InvSRError | None = None  # once abandoned: what every job is refused with
        self.running = 0  # jobs in `upscale`
        self.idle = threading.Condition()

    @classmethod
    def start(cls, options: ActorOptions, shape: ActorShape) -> RayPipeline:
        """Start `shape.count` actors and wait until each has loaded its model."""
        started = time.perf_counter()
        weights = None if options.weights is None else str(options.weights)
        predictor = None if options.noise_predictor is None else str(options.noise_predictor)
        spawn = TileActor.options(num_gpus=shape.gpus, num_cpus=shape.cpus)
        arguments = (weights, predictor, options.device, options.dtype, shape.threads)
        handles = [spawn.remote(*arguments) for _ in range(shape.count)]
        try:
            infos = ray.get([handle.describe.remote() for handle in handles], timeout=START_TIMEOUT_S)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as error:
            for handle in handles:
                ray.kill(handle)
            raise DeviceError(f"the Ray actors did not start: {_cause(error)}") from None
        actors = [Actor(f"actor-{k}", handle, info) for k, (handle, info) in enumerate(zip(handles, infos))]
        limits = (options.slow_factor, options.slow_floor, options.ping_limit, options.fail_pause)
        dispatcher = Dispatcher(actors, *limits, spawn=lambda: spawn.remote(*arguments))
        report = {"seconds": round(time.perf_counter() - started, 3), "ray_actors": shape.count}
        return cls(dispatcher, report)

    @classmethod
    def on_cluster(cls, address: str, actors: int | None, options: ActorOptions) -> RayPipeline:
        """Join (or with `local` start) Ray and start the actors there (cluster.py)."""
        joined = connect(address)
        try:
            pipeline = cls.start(options, actor_shape(actors))
        except BaseException:
            if joined:
                ray.shutdown()
            raise
        pipeline.joined = joined
        return pipeline

    def actors(self) -> list[dict]:
        """Each actor: its name, state (ready, slow, dead), device, host, process, GPUs and batches done."""
        return self.dispatcher.describe()

    def describe(self) -> dict:
        """The model's identity as the pipeline's `describe` gives it, its device naming the actors'."""
        actors = self.actors()
        model = dict(self.dispatcher.actors[0].info)
        for key in ("host", "node", "pid", "gpus"):
            model.pop(key, None)
        live = [actor for actor in actors if actor["state"] != "dead"]  # (the dead stay listed, as such)
        devices = sorted({actor["device"] for actor in live or actors})
        model["device"] = f"ray: {len(live)} actors on {', '.join(devices)}"
        return {**model, "actors": actors}

    @property
    def tiny(self) -> bool:
        return bool(self.dispatcher.actors[0].info["weights"]["tiny_random"])

    def upscale(
        self,
        image: np.ndarray,
        request: UpscaleRequest = UpscaleRequest(),
        progress: ProgressCallback | None = None,
        cancel_check=None,
        on_band=None,
    ) -> UpscaleResult:
        """As InvSRPipeline.upscale, its batches on the actors; bands of rows are finished as the tiles
        over them arrive."""
        with self._running():
            return self._upscale(image, request, progress, cancel_check, on_band)

    def _upscale(self, image, request, progress, cancel_check, on_band) -> UpscaleResult:
        job = ImageJob.start(image, request, self.max_pixels)
        timer = StageTimer(torch.device("cpu"), cancel_check)
        geometry, settings = self.dispatcher.plan_facts(request)
        work = TileWork.prepare(job.lr, geometry, job.recipe, request.seed, settings.tile, settings.overlap)
        assembly = job.assembly(timer, on_band)
        with timer.stage("tiles"):
            by_actor = self._run(work, settings.batch, job.out_size, assembly, ProgressReporter(progress), cancel_check)
        tiling = {
            **work.plan.describe(),
            "batch": settings.batch,
            "static_shapes": geometry.static_shapes,
            "notices": list(settings.notices),
            "batches_by_actor": by_actor,
        }
        return job.finish(assembly, tiling, timer, progress, self.describe(), None, self.tiny)

    def _run(self, work: TileWork, batch: int, out_size, assembly, reporter: ProgressReporter, cancel_check):
        """The work's batches accumulated, their finished rows to `assembly`; how many each actor computed."""
        accumulator = TileAccumulator(work.plan, out_size, finish=assembly)
        total, received = len(work.plan.tiles), 0
        batches = self.dispatcher.submit(new_id(), work, batch)
        try:
            while not accumulator.complete:
                arrived = batches.next_result(POLL_S)
                if cancel_check is not None:
                    cancel_check()
                if arrived is None:
                    continue
                start, outputs = arrived
                for position, output in enumerate(outputs, start):
                    accumulator.add(position, output)
                received += len(outputs)
                reporter.report("tiles", received, total + 1)  # + 1: the finish
                for top, rows in accumulator.bands():
                    assembly(top, rows)
        finally:
            self.dispatcher.end(batches)
        return dict(batches.by_actor)

    @contextlib.contextmanager
    def _running(self):
        """Count the job in, or refuse it once the pipeline is abandoned."""
        with self.idle:
            if self.failure is not None:
                raise self.failure
            self.running += 1
        try:
            yield
        finally:
            with self.idle:
                self.running -= 1
                self.idle.notify_all()

    def abandon(self, failure: InvSRError, grace: float) -> None:
        """Give the pipeline up without Ray's help (its head is lost): refuse new jobs with `failure`, let
        those running finish within `grace` seconds while their batches come back (not once they stall),
        fail the rest with it, and stop dispatching. Returns once no job uses Ray any more (or after LEAVE_S
        more: never a hang). The actors are not killed: that needs the head; they end with their cluster."""
        deadline = time.monotonic() + grace
        with self.idle:
            self.failure = failure
            while self.running and time.monotonic() < deadline and not self.dispatcher.stalled():
                self.idle.wait(timeout=POLL_S)
        self.dispatcher.fail_all(failure)
        with self.idle:
            self.idle.wait_for(lambda: self.running == 0, timeout=LEAVE_S)
        self.dispatcher.close()

    def close(self) -> None:
        """Stop dispatching, end the actors and, if this pipeline joined Ray, leave it (a Ray started here
        stops with every process it started: left to the end of this process, Ray's agents outlive it)."""
        for handle in self.dispatcher.close():
            ray.kill(handle)
        if self.joined:
            ray.shutdown()


def _cause(error: Exception) -> str:
    """The first line that says why, from Ray's long account of an actor that failed to start."""
    text = str(error)
    for line in text.splitlines():
        if "Error:" in line and "ActorDiedError" not in line:
            return line.strip()[:500]
    return text.strip().splitlines()[0][:500] if text.strip() else type(error).__name__
