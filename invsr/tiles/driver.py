"""One image through the tile engine on one device: plan, batches, accumulation, and what goes wrong.

- The image is padded as the reference implementation pads it (grid.pad_for_networks): a side shorter
  than the noise predictor's training size (128 pixels for the released weights; or than the tile, if
  smaller) is mirrored out to it on both sides, so that the networks see what they were trained on; the
  colour-fix reference is made from the unpadded image, and the padding is cut off again. The padded
  image is never made whole: each tile is cut through the padding's maps (grid.PaddedImage).
- Device memory holds one batch of tiles, whatever the image size. Batches are computed in band order
  (plan.TilePlan.band_order), so that the result is finished by bands of rows (accumulator.py): given
  `on_band`, each band goes there as it finishes and the host holds a few rows of tiles, not the output.
- Out of device memory, the failing batch is retried at half the batch size, and at batch 1 the image
  is started again with smaller tiles; each step is recorded in `notices`. Only when the smallest tile
  does not fit does the job fail.
- After each batch `progress` gets a `Progress("tiles", done, total)`; raising `Cancelled` from it
  stops the job (as does the stage timer's `cancel_check`, within a batch).
- Compiled networks (`compiled_shapes` given) compile once per input shape: the image is padded to at
  least one tile, every tile is full-size and every batch full (the last one filled with repeats), so
  they see one shape whatever the image's size; before the first batch of a new shape `progress` gets
  `Progress("compiling", ...)`, since that batch takes minutes rather than a second.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

import numpy as np
import torch

from ..devices import is_out_of_memory, release_cached_memory
from ..errors import OutOfMemory
from ..pixels import Colour
from ..progress import ProgressCallback, ProgressReporter, StageTimer
from ..sampling import Models
from .accumulator import Finish, TileAccumulator
from .batch import TileRecipe, compute_batch
from .plan import TilePlan
from .settings import TileSettings, smaller_tile
from .work import ModelGeometry, TileWork


@dataclasses.dataclass(frozen=True)
class TiledResult:
    image: torch.Tensor | None  # (1, 3, H, W) in [0, 1] at the requested size, on the host (None: went to on_band)
    plan: TilePlan  # the plan that finished (after any fallback to smaller tiles)
    batch: int  # tiles per batch at the end (after any fallback to smaller batches)
    static_shapes: bool
    notices: tuple[str, ...]  # what the out-of-memory fallback did

    def report(self) -> dict:
        """The job report's "tiling" entry."""
        return {
            **self.plan.describe(),
            "batch": self.batch,
            "static_shapes": self.static_shapes,
            "notices": list(self.notices),
        }


BandCallback = Callable[[int, torch.Tensor], None]  # (first row, (1, 3, rows, W) in [0, 1] on the host)
# or, where the run has a `finish`, (first row, the result's rows: (rows, W[, C]) in its own pixel type)


class _Bands:
    """Where finished bands go: to the caller's callback, or kept to make the whole image. After a restart
    with smaller tiles, rows already sent to the callback are not sent again (kept ones are made again);
    bands keep their rows across restarts (accumulator.band_rows: the same width)."""

    def __init__(self, on_band: BandCallback | None):
        self.on_band = on_band
        self.kept: list[torch.Tensor] = []
        self.sent = 0  # rows handed on so far

    def give(self, bands: list) -> None:
        for top, band in bands:
            if top < self.sent:
                continue
            if self.on_band is None:
                self.kept.append(band)
            else:
                self.on_band(top, band)
            self.sent = top + (band.shape[0] if isinstance(band, np.ndarray) else band.shape[-2])

    def restart(self) -> int:
        """Starting again with other tiles: kept bands are dropped; the rows already sent (not sent again)."""
        if self.on_band is None:
            self.kept, self.sent = [], 0
        return self.sent

    def image(self) -> torch.Tensor | None:
        if self.on_band is not None:
            return None
        image = self.kept[0] if len(self.kept) == 1 else torch.cat(self.kept, dim=-2)
        self.kept = []
        return image


def _cut(plan: TilePlan, bound: tuple[int, int], batch: int) -> list[tuple[int, int]]:
    """The batch `bound` cut into batches of at most `batch` tiles."""
    start, stop = bound
    parts = []
    while start < stop:
        parts.append((start, min(stop, plan.batch_end(start, batch))))
        start = parts[-1][1]
    return parts


class _TileTooLarge(Exception):
    """One tile alone did not fit in device memory."""


class TileDriver:
    """Runs one image's tiles on `device`: one driver per image, since its notices, progress clock and
    stage timer are that job's. `compiled_shapes`: the (tile, batch) shapes the compiled networks have
    run so far, updated here; None for eager networks."""

    def __init__(
        self,
        models: Models,
        device: torch.device,
        timer: StageTimer,
        progress: ProgressCallback | None = None,
        compiled_shapes: set | None = None,
    ):
        self.models, self.device, self.timer = models, device, timer
        self.progress = ProgressReporter(progress)
        self.compiled_shapes = compiled_shapes
        self.notices: list[str] = []  # what was done other than asked or chosen, and why

    @property
    def static_shapes(self) -> bool:
        return self.compiled_shapes is not None

    def run(
        self,
        lr: torch.Tensor | Colour,
        recipe: TileRecipe,
        seed: int,
        settings: TileSettings,
        out_size=None,
        on_band: BandCallback | None = None,
        finish: Finish | None = None,
    ) -> TiledResult:
        """Upscale `lr` (1, 3, H, W) in [0, 1] (or pixels.Colour) x4 and resample it to `out_size` (None:
        x4). With `on_band`, each finished band of rows goes there, top to bottom, as (first row, (1, 3, rows,
        W)), and the result's image is None; without, the whole image is the result's. With `finish` (and
        `on_band`), the bands are its finished rows, finished as the tiles allow (accumulator.py)."""
        if finish is not None and on_band is None:
            raise ValueError("finished rows go to an on_band")
        multiple = self.models.lr_multiple
        tile, overlap, batch = settings.tile, settings.overlap, settings.batch
        self.notices.extend(settings.notices)
        geometry = ModelGeometry.of(self.models, self.static_shapes)
        bands = _Bands(on_band)
        while True:  # padded and drawn for each tile size: a fallback gives what its tile gives uncapped
            work = TileWork.prepare(lr, geometry, recipe, seed, tile, overlap)
            try:
                batch = self._run_plan(work, batch, out_size, bands, finish)
                return TiledResult(bands.image(), work.plan, batch, self.static_shapes, tuple(self.notices))
            except _TileTooLarge:
                tile, batch = self._smaller_tile(tile), 1
                fitting = min(overlap, (tile - multiple) // 2)
                notice = f"out of device memory at batch 1: starting again with {tile}-pixel tiles"
                if fitting < overlap:
                    notice += f" and {fitting} pixels of overlap ({overlap} do not fit such a tile)"
                if sent := bands.restart():
                    notice += f" (the {sent} rows above were made with the larger tiles and sent already)"
                self.notices.append(notice)
                overlap = fitting

    def _smaller_tile(self, tile: int) -> int:
        smaller = smaller_tile(tile, self.models.lr_multiple)
        if smaller is None:
            raise OutOfMemory(
                f"out of device memory even for one {tile} x {tile} tile; free memory on the device, "
                "or use --device cpu"
            ) from None
        return smaller

    def _run_plan(self, work: TileWork, batch: int, out_size, bands: _Bands, finish: Finish | None) -> int:
        """Computes the plan, its bands to `bands`; the batch size it ended with."""
        plan = work.plan
        accumulator = TileAccumulator(plan, out_size, finish=finish)
        total, done = len(plan.tiles), 0
        pending = deque(plan.band_order(plan.batches(batch)))
        while pending:
            start, stop = pending[0]
            try:
                compiling = self._announce_compiling(plan.tile, batch, done, total)
                inputs = work.inputs(start, stop, batch)
                outputs = compute_batch(self.models, self.device, work.recipe, inputs, self.timer.stage)
            except RuntimeError as error:
                batch = self._smaller_batch(error, stop - start)
                pending = deque(part for bound in pending for part in _cut(plan, bound, batch))
                continue
            pending.popleft()
            for position, output in zip(range(start, stop), outputs):
                accumulator.add(position, output)
            done += stop - start
            self.progress.report("tiles", done, total + 1, pace_from_here=compiling)  # + 1: the pipeline's finish
            bands.give(accumulator.bands())
        return batch

    def _smaller_batch(self, error: RuntimeError, tiles: int) -> int:
        """The batch size to retry with after `error` in a batch of `tiles`; re-raises all but running
        out of device memory."""
        if not is_out_of_memory(error):
            raise error
        release_cached_memory(self.device)
        if tiles == 1:
            raise _TileTooLarge from None
        batch = max(1, tiles // 2)
        self.notices.append(f"out of device memory with {tiles} tiles per batch: retrying with {batch}")
        return batch

    def _announce_compiling(self, tile: int, batch: int, done: int, total: int) -> bool:
        """Whether this batch's shape is new to the compiled networks (so they compile it now); says so."""
        if self.compiled_shapes is None or (tile, batch) in self.compiled_shapes:
            return False
        self.progress.report("compiling", done, total + 1)
        self.compiled_shapes.add((tile, batch))
        return True
