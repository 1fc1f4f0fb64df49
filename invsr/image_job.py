"""One image's work around its tiles: what comes before them (the array contract and alpha, the output
size and its limit, the steps) and what comes after (alpha resized, the array, the report).

Shared by the in-process pipeline (pipeline.py), which computes the tiles itself, and by a front that has
them computed elsewhere (invsr_server.cluster), so that both give the same image and the same report.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from invsr.wire.contract import check_work_size

from .noise_level import StepChoice, choose_steps
from .pixels import Pixels, fill_transparent, resize_alpha
from .progress import Progress, ProgressCallback, StageTimer
from .request import UpscaleRequest
from .schedule import resolve_timesteps
from .tiles import TileRecipe

TINY_WARNING = (
    "NOT A REAL UPSCALE: made with random tiny test weights (invsr weights tiny); "
    "get real ones with `invsr weights download`"
)


@dataclasses.dataclass(frozen=True)
class UpscaleResult:
    image: np.ndarray  # same channel layout and dtype as the input, at the requested size
    report: dict  # what was done: sizes, timesteps, seed, device, dtype, seconds per stage, peak memory


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """One image, checked and ready for its tiles."""

    pixels: Pixels
    request: UpscaleRequest
    out_size: tuple[int, int]  # (height, width) asked for
    choice: StepChoice | None  # what --steps auto measured, if asked
    recipe: TileRecipe
    lr: torch.Tensor  # (1, 3, H, W) in [0, 1]: the colour the networks see (transparent pixels filled)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, image: np.ndarray, request: UpscaleRequest, max_pixels: int) -> ImageJob:
        """Check the array (pixels.py) and the request against it; raise one clear error for what is wrong."""
        pixels = Pixels.from_array(image)
        height, width = pixels.size
        out_size = request.output_size(height, width)
        check_work_size(height, width, out_size, max_pixels)
        choice = choose_steps(pixels.rgb) if request.steps == "auto" else None
        timesteps = resolve_timesteps(choice.steps if choice else request.steps, request.timesteps)
        lr = fill_transparent(pixels.rgb, pixels.alpha)
        return cls(pixels, request, out_size, choice, TileRecipe(timesteps, request.color_fix), lr)

    def finish(
        self,
        rgb: torch.Tensor,
        tiling: dict,
        timer: StageTimer,
        progress: ProgressCallback | None,
        identity: dict,
        peak_memory,
        tiny: bool,
    ) -> UpscaleResult:
        """The result from the tiles' `rgb` (1, 3, H, W) at the output size; `identity`: who made it (the
        model's description), `tiling` the tile engine's report."""
        pixels, request = self.pixels, self.request
        with timer.stage("finish"):
            alpha = resize_alpha(pixels.alpha, self.out_size) if pixels.alpha is not None else None
            result = pixels.to_array(rgb, alpha)
        if progress is not None:
            elapsed = time.perf_counter() - self.started
            progress(Progress("finish", tiling["tiles"] + 1, tiling["tiles"] + 1, elapsed))
        height, width = pixels.size
        report = dict(
            identity,
            input_size=[width, height],
            output_size=[self.out_size[1], self.out_size[0]],
            channels=pixels.channels,
            pixel_dtype=str(pixels.dtype),
            steps=len(self.recipe.timesteps),
            timesteps=list(self.recipe.timesteps),
            steps_auto=dataclasses.asdict(self.choice) if self.choice else None,
            seed=request.seed,
            color_fix=request.color_fix,
            tiling=tiling,
            seconds=timer.report(),
            peak_memory=peak_memory,
        )
        if tiny:
            report["warning"] = TINY_WARNING
        return UpscaleResult(result, report)
