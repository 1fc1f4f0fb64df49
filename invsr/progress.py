"""Progress reports and per-stage timings of one job.

A caller passes `progress`, a function that takes a `Progress` each time a unit of work ends; raising
`errors.Cancelled` from it stops the job at that point (the worker cancels jobs this way).
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
    stage: str  # the stage that just finished: vae_encode, noise_predictor, unet, vae_decode, color_fix
    done: int  # units of work finished so far
    total: int  # units of work in the whole job
    elapsed: float  # seconds since the job started

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the pace so far."""
        return self.elapsed * (self.total - self.done) / self.done if self.done else None


ProgressCallback = Callable[[Progress], None]


class StageClock:
    """Times named stages (waiting for the device, so a stage's time is its own) and reports progress."""

    def __init__(self, device: torch.device, total: int, progress: ProgressCallback | None = None):
        self.device, self.total, self.progress = device, total, progress
        self.seconds: dict[str, float] = {}
        self.done = 0
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str, units: int = 1):
        begin = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - begin
        self.done += units
        if self.progress is not None:
            self.progress(Progress(name, self.done, self.total, time.perf_counter() - self.started))

    def report(self) -> dict[str, float]:
        return {name: round(seconds, 4) for name, seconds in self.seconds.items()}
