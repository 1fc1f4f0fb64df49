"""One Ray actor per GPU (or per share of a machine's CPUs): a warm pipeline computing batches of tiles.

Batches are computed by `compute` (tiles/batch.compute_batch: a pure function of its inputs and the
models), one at a time; `cancel`, `describe`, `plan_facts` and `ping` run beside it in their own
concurrency group, so that a cancel reaches a batch in progress (it stops at the batch's next stage), and
health checks and planning are answered while the actor is busy, never queued behind its batches.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections import deque

import ray

CONTROL = "control"  # the concurrency group of the calls answered while a batch computes
REMEMBERED_CANCELS = 1000  # job ids kept: far more jobs than can be in flight at once


@ray.remote(max_restarts=0, concurrency_groups={CONTROL: 1})
class TileActor:
    """`weights`, `noise_predictor`: as `invsr_weights.locate` takes them (a path on every node, or None
    for the Hugging Face cache); `threads`: PyTorch's CPU threads (None: PyTorch's default)."""

    def __init__(self, weights, noise_predictor, device: str, dtype: str, threads: int | None):
        import torch

        from invsr import InvSRPipeline, locate_weights

        if threads:
            torch.set_num_threads(threads)
        self.pipeline = InvSRPipeline.load(locate_weights(weights, noise_predictor), device=device, dtype=dtype)
        self.cancelled: deque[str] = deque(maxlen=REMEMBERED_CANCELS)
        self.lock = threading.Lock()

    def compute(self, job: str, recipe, inputs) -> list:
        """The tiles' x4 outputs (tiles/batch.py), on the host for the trip back to the front."""
        from invsr.tiles import compute_batch
        from invsr.wire.errors import Cancelled

        @contextlib.contextmanager
        def stage(name: str):
            if job in self.cancelled:
                raise Cancelled("the job was cancelled")
            yield

        pipeline = self.pipeline
        outputs = compute_batch(pipeline.models, pipeline.device, recipe, inputs, stage)
        return [output.cpu() for output in outputs]

    @ray.method(concurrency_group=CONTROL)
    def plan_facts(self, request) -> tuple:
        """What the front needs to plan an image for this actor: the models' geometry, and the tile
        settings for its device as it is now (free memory decides 'auto')."""
        from invsr.tiles import choose_settings
        from invsr.tiles.work import ModelGeometry

        pipeline = self.pipeline
        geometry = ModelGeometry.of(pipeline.models, pipeline.static_shapes)
        return geometry, choose_settings(request, pipeline.device, pipeline.dtype, pipeline.models.lr_multiple)

    @ray.method(concurrency_group=CONTROL)
    def cancel(self, job: str) -> None:
        self.cancelled.append(job)

    @ray.method(concurrency_group=CONTROL)
    def describe(self) -> dict:
        """The model's identity, and where the actor runs: its node, process and GPUs."""
        return {
            **self.pipeline.describe(),
            "host": socket.gethostname(),
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "gpus": [str(gpu) for gpu in ray.get_gpu_ids()],
        }

    @ray.method(concurrency_group=CONTROL)
    def ping(self) -> bool:
        return True
