"""One image's work around its tiles: what comes before them (the array contract and alpha, the output
size and its limit, the steps) and what comes after (alpha resized, the array, the report).

The result is made band by band (`Assembly`): each band of rows the tiles finish becomes the output's
own pixel type at once, and goes to the caller's `on_band` or into the whole array, so that no float copy
of the whole output is ever held.

Shared by the in-process pipeline (pipeline.py), which computes the tiles itself, and by a front that has
them computed elsewhere (invsr_server.cluster), so that both give the same image and the same report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch

from invsr.wire.contract import check_work_size

from .noise_level import StepChoice, choose_steps
from .pixels import BandFinisher, Colour, Pixels, fill_transparent, has_holes
from .progress import Progress, ProgressCallback, StageTimer
from .request import UpscaleRequest
from .schedule import resolve_timesteps
from .tiles import TileRecipe

TINY_WARNING = (
    "NOT A REAL UPSCALE: made with random tiny test weights (invsr weights tiny); "
    "get real ones with `invsr weights download`"
)


BandHandler = Callable[[int, np.ndarray], None]  # (first row, the result's rows: (rows, W[, C]) in its dtype)


@dataclasses.dataclass(frozen=True)
class UpscaleResult:
    image: np.ndarray | None  # same channel layout and dtype as the input, at the requested size (None: in bands)
    report: dict  # what was done: sizes, timesteps, seed, device, dtype, seconds per stage, peak memory


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """One image, checked and ready for its tiles."""

    pixels: Pixels
    request: UpscaleRequest
    out_size: tuple[int, int]  # (height, width) asked for
    choice: StepChoice | None  # what --steps auto measured, if asked
    recipe: TileRecipe
    lr: Colour  # (1, 3, H, W) in [0, 1]: the colour the networks see (transparent pixels filled)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, image: np.ndarray, request: UpscaleRequest, max_pixels: int) -> ImageJob:
        """Check the array (pixels.py) and the request against it; raise one clear error for what is wrong."""
        pixels = Pixels.from_array(image)
        height, width = pixels.size
        out_size = request.output_size(height, width)
        check_work_size(height, width, out_size, max_pixels)
        auto, holes = request.steps == "auto", has_holes(pixels.alpha)
        whole = pixels.colour.float() if auto or holes else None  # made float whole only for these, once
        choice = choose_steps(whole) if auto else None
        timesteps = resolve_timesteps(choice.steps if choice else request.steps, request.timesteps)
        # in the input's pixel type, unless transparent pixels must be filled
        lr = Colour.of(fill_transparent(whole, pixels.alpha)) if holes else pixels.colour
        return cls(pixels, request, out_size, choice, TileRecipe(timesteps, request.color_fix), lr)

    def assembly(self, timer: StageTimer, on_band: BandHandler | None = None) -> Assembly:
        """Where the tiles' bands of colour go: made the result's rows and handed to `on_band`, or, without
        it, gathered into the whole array."""
        return Assembly(BandFinisher(self.pixels, self.out_size), timer, self.out_size, on_band)

    def finish(
        self,
        assembly: Assembly,
        tiling: dict,
        timer: StageTimer,
        progress: ProgressCallback | None,
        identity: dict,
        peak_memory,
        tiny: bool,
    ) -> UpscaleResult:
        """The result, once `assembly` has every band; `identity`: who made it (the model's description),
        `tiling` the tile engine's report."""
        pixels, request = self.pixels, self.request
        image = assembly.result()
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
        return UpscaleResult(image, report)


class Assembly:
    """The result's rows, made from the tiles' colour by `finisher` (timed as the "finish" stage) for the
    tile accumulator (its `Finish`), and taken from it top to bottom (its band callback): handed to
    `on_band`, or, without it, gathered into the whole array."""

    def __init__(self, finisher: BandFinisher, timer: StageTimer, out_size, on_band: BandHandler | None):
        self.finisher, self.timer, self.on_band = finisher, timer, on_band
        self.pixel_bytes = finisher.pixel_bytes
        self.height = out_size[0]
        self.image: np.ndarray | None = None
        self.rows = 0  # rows made so far

    def block(self, top: int, left: int, rgb: torch.Tensor) -> np.ndarray:
        with self.timer.stage("finish"):
            return self.finisher.block(top, left, rgb)

    def done_above(self, row: int) -> None:
        self.finisher.done_above(row)

    def __call__(self, top: int, rows: np.ndarray) -> None:
        if top != self.rows:
            raise ValueError(f"bands must come top to bottom: expected row {self.rows}, got {top}")
        if self.on_band is None:
            if self.image is None:
                self.image = np.empty((self.height, *rows.shape[1:]), rows.dtype)
            self.image[top : top + rows.shape[0]] = rows
        else:
            self.on_band(top, rows)
        self.rows = top + rows.shape[0]

    def result(self) -> np.ndarray | None:
        """The whole array (None where the bands went to `on_band`); every row must have been made."""
        if self.rows != self.height:
            raise RuntimeError(f"the result has {self.rows} of its {self.height} rows")
        return self.image
