"""Progress reports and per-stage timings of one job.

A caller passes `progress`, a function that takes a `Progress` each time a unit of work ends; raising
`errors.Cancelled` from it stops the job at that point (the worker cancels jobs this way). A batch of
large tiles on a CPU takes minutes, so a caller may also pass `cancel_check`, which the stage timer
calls before every stage (VAE encoder, noise predictor, UNet step, VAE decoder, ...): raising
`Cancelled` from it stops the job within the batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

import torch

from .devices import synchronize


@dataclasses.dataclass(frozen=True)
class Progress:
    stage: str  # "tiles" after each batch of tiles, "finish" when the result is assembled; "compiling"
    # before a batch that compiled networks compile for (the first of its shape: minutes)
    done: int  # units of work finished so far: tiles, then 1 for the finish
    total: int  # units of work in the whole job: tiles + 1
    elapsed: float  # seconds since the job started
    paced_since: tuple[float, int] = (0.0, 0)  # (elapsed, done) after the last batch that compiled

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the pace since `paced_since` (a compiling batch would make
        every later estimate minutes too long)."""
        since, done_then = self.paced_since
        return (
            (self.elapsed - since) * (self.total - self.done) / (self.done - done_then)
            if self.done > done_then
            else None
        )


ProgressCallback = Callable[[Progress], None]


class ProgressReporter:
    """Sends one job's `Progress` to the caller's callback (if any), timed from the job's start, and
    remembers where the pace for the time left is measured from."""

    def __init__(self, callback: ProgressCallback | None):
        self.callback = callback
        self.started = time.perf_counter()
        self.paced_since = (0.0, 0)  # see Progress.eta

    def report(self, stage: str, done: int, total: int, pace_from_here: bool = False) -> None:
        """`pace_from_here`: the work just done says nothing of the rest (it compiled), so later
        estimates of the time left are paced from this point on."""
        elapsed = time.perf_counter() - self.started
        if pace_from_here:
            self.paced_since = (elapsed, done)
        if self.callback is not None:
            self.callback(Progress(stage, done, total, elapsed, self.paced_since))


class StageTimer:
    """Times named stages, waiting for the device at the end of each so that a stage's time is its own
    (bench/README.md measures what the waits cost on a GPU: too little to matter).
    `cancel_check`, if given, is called before each stage and may raise `errors.Cancelled`."""

    def __init__(self, device: torch.device, cancel_check: Callable[[], None] | None = None):
        self.device = device
        self.cancel_check = cancel_check
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        if self.cancel_check is not None:
            self.cancel_check()
        begin = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - begin

    def report(self) -> dict[str, float]:
        return {name: round(seconds, 4) for name, seconds in self.seconds.items()}
