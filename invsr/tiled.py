"""One image through the sampler, tile batch by tile batch, blended into an x4 result on the host.

- The two standard-normal draws are made once for the whole (padded) image and cropped per tile, so
  overlapping tiles start from the same noise and agree.
- Each tile is colour-fixed against its crop of the whole-image reference (the input resized x4), which
  cancels the tone every tile's GroupNorm statistics would give it; tiles then blend with smooth weights
  (tiling.py). A one-tile image gets exactly the untiled result.
- Device memory holds one batch of tiles, whatever the image size. On the host, each tile is resampled
  from x4 to the requested size as it arrives (resample.py), so only the output-sized result is held.
- Out of device memory, the failing batch is retried at half the batch size, and at batch 1 the image
  is started again with smaller tiles; each step is recorded in `notices`. Only when a 32-pixel tile
  does not fit does the job fail.
- After each batch `progress` gets a `Progress("tiles", done, total)`; raising `Cancelled` from it stops.
  Compiled, it also gets `Progress("compiling", ...)` before the first batch of a new shape.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from .color_fix import apply_color_fix, reference_for
from .devices import free_memory, is_out_of_memory, release_cached_memory
from .errors import InvalidRequest, OutOfMemory
from .progress import Progress, ProgressCallback, StageTimer
from .sampling import Models, Noise, sample
from .resample import Canvas
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE, Tile, axis_weights, pad_to_multiple, plan_tiles, work_ratio

SCALE = 4
TILE_SIZES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32)  # the fallback ladder, largest first
MIN_TILE = TILE_SIZES[-1]
# On an H100 (bench/results/gpu-H100-2026-11-26.json), batches of 8 run 2.1x faster per tile than single
# tiles and give 89% of batch 32's speed for a third of its memory (6.4 GB against 19.4 GB): more is
# left to the user (--tile-batch).
MAX_AUTO_BATCH = 8
# Device bytes per output pixel of a tile batch, per byte of the compute dtype, above the weights
# (activations of the VAE at full resolution dominate). Measured on an H100: 1038-1039 at batches of 2 to 32,
# 1232 for one tile, less compiled; this leaves a margin. The out-of-memory fallback corrects a miss.
BYTES_PER_OUTPUT_PIXEL = 1300
REFERENCE_MARGIN = 4  # input pixels around a tile that its x4 bicubic reference depends on


@dataclasses.dataclass(frozen=True)
class TileSettings:
    tile: int
    overlap: int
    batch: int


def choose_settings(request, device: torch.device, dtype: torch.dtype, multiple: int) -> TileSettings:
    """Resolve 'auto' tile size and batch from the memory the device has free now."""
    tile = DEFAULT_TILE if request.tile == "auto" else request.tile
    if tile % multiple:
        raise InvalidRequest(f"tile must be a multiple of {multiple} for this model, got {tile}")
    free = free_memory(device)
    per_tile = BYTES_PER_OUTPUT_PIXEL * torch.finfo(dtype).bits // 8
    if request.tile == "auto" and free is not None:
        while tile > MIN_TILE and per_tile * (SCALE * tile) ** 2 > free:
            tile = next(size for size in TILE_SIZES if size < tile)
    if request.tile_batch != "auto":
        batch = request.tile_batch
    elif device.type == "cpu" or free is None:
        batch = 1  # a CPU gains nothing from batching
    else:
        batch = max(1, min(MAX_AUTO_BATCH, int(0.8 * free) // (per_tile * (SCALE * tile) ** 2)))
    overlap = DEFAULT_OVERLAP if request.overlap is None else request.overlap
    if request.overlap is None or request.tile == "auto":  # ours to choose: as much as the tile allows
        overlap = min(overlap, (tile - multiple) // 2)
    if 2 * overlap + multiple > tile:
        raise InvalidRequest(f"overlap {overlap} is too large for {tile}-pixel tiles: keep 2 x overlap + {multiple} <= tile")
    return TileSettings(tile, overlap, batch)


class _TileTooLarge(Exception):
    """One tile alone did not fit in device memory."""


class TiledUpscale:
    """Upscale `lr` (1, 3, H, W) in [0, 1] x4, and resample to `out_size`, on the host; see the module docstring."""

    def __init__(self, models: Models, device, lr, timesteps, seed: int, color_fix: str, timer: StageTimer, progress: ProgressCallback | None = None, blend: bool = True, shared_noise: bool = True, static_shapes: bool = False, out_size: tuple[int, int] | None = None, compiled_shapes: set | None = None):
        self.models, self.device, self.lr, self.timesteps = models, device, lr, timesteps
        self.color_fix, self.timer, self.progress, self.blend = color_fix, timer, progress, blend
        self.shared_noise, self.static_shapes = shared_noise, static_shapes
        self.seed = seed
        self.out_size = out_size  # (height, width) of the result; None: x4
        self.compiled_shapes = compiled_shapes  # (tile, batch) the compiled networks have run; None: not compiled
        self.notices: list[str] = []
        self.started = time.perf_counter()
        self.paced_since = (0.0, 0)  # see Progress.eta

    def run(self, settings: TileSettings) -> tuple[torch.Tensor, dict]:
        """`static_shapes` (for compiled networks, which compile once per input shape): the image is
        padded to at least one tile, every tile is full-size and every batch full (the last one filled
        with repeats), so the networks see one shape whatever the image's size."""
        tile, overlap, batch = settings.tile, settings.overlap, settings.batch
        self.padded = pad_to_multiple(self.lr, self.models.lr_multiple, tile if self.static_shapes else 0)
        self.noise = Noise.draw(self.padded.shape, self.models.noise_predictor.config.latent_channels, self.seed)
        while True:
            try:
                result, batch = self._run_grid(tile, overlap, batch)
                return result, self._report(tile, overlap, batch)
            except _TileTooLarge:
                smaller = [size for size in TILE_SIZES if size < tile and size % self.models.lr_multiple == 0]
                if not smaller:
                    raise OutOfMemory(
                        f"out of device memory even for one {tile} x {tile} tile; free memory on the device, "
                        "or use --device cpu"
                    ) from None
                tile, batch = smaller[0], 1
                overlap = min(overlap, (tile - self.models.lr_multiple) // 2)
                self.notices.append(f"out of device memory at batch 1: starting again with {tile}-pixel tiles")

    def _run_grid(self, tile: int, overlap: int, batch: int) -> tuple[torch.Tensor, int]:
        height, width = self.lr.shape[-2:]
        self.grid = plan_tiles(*self.padded.shape[-2:], tile, overlap, self.models.lr_multiple, uniform=self.static_shapes)
        self.row_spans, self.col_spans = [row[0].rows for row in self.grid], [t.cols for t in self.grid[0]]
        x4_size = (SCALE * height, SCALE * width)
        self.row_sums = _axis_sum(self.row_spans, x4_size[0], self.blend)  # dividing by them makes the weights sum to 1
        self.col_sums = _axis_sum(self.col_spans, x4_size[1], self.blend)
        canvas = Canvas(x4_size, self.out_size or x4_size)
        indexed = [(i, j, t) for i, row in enumerate(self.grid) for j, t in enumerate(row)]
        remaining = sorted(indexed, key=lambda item: (-item[2].rows.size, -item[2].cols.size))  # batches of equal size
        total, done = len(indexed), 0
        while remaining:
            size = (remaining[0][2].rows.size, remaining[0][2].cols.size)
            group = [item for item in remaining[:batch] if (item[2].rows.size, item[2].cols.size) == size]
            try:
                compiling = self._announce_compiling(tile, batch, done, total)
                outputs = self._sample([t for _, _, t in group], batch)
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                release_cached_memory(self.device)
                if len(group) == 1:
                    raise _TileTooLarge from None
                batch = max(1, len(group) // 2)
                self.notices.append(f"out of device memory with {len(group)} tiles per batch: retrying with {batch}")
                continue
            for (i, j, tile_), output in zip(group, outputs):
                self._accumulate(canvas, i, j, tile_, output)
            del remaining[: len(group)]
            done += len(group)
            self._report_batch_done(done, total, compiling)
        return canvas.image, batch

    def _report_batch_done(self, done: int, total: int, compiled: bool) -> None:
        elapsed = time.perf_counter() - self.started
        if compiled:  # the time left is paced from here: a compiling batch says nothing of the others
            self.paced_since = (elapsed, done)
        if self.progress is not None:
            self.progress(Progress("tiles", done, total + 1, elapsed, self.paced_since))

    def _announce_compiling(self, tile: int, batch: int, done: int, total: int) -> bool:
        """Compiled networks compile on their first batch of a shape, which takes minutes where a batch
        otherwise takes a second: say so, rather than leave the progress bar standing still."""
        if self.compiled_shapes is None or (tile, batch) in self.compiled_shapes:
            return False
        if self.progress is not None:
            self.progress(Progress("compiling", done, total + 1, time.perf_counter() - self.started, self.paced_since))
        self.compiled_shapes.add((tile, batch))
        return True

    def _sample(self, tiles: list[Tile], batch: int) -> list[torch.Tensor]:
        """Sample a batch of equal-sized tiles; return each one colour-fixed and cropped to the image."""
        filled = tiles + [tiles[-1]] * (batch - len(tiles)) if self.static_shapes else tiles
        crops = [(t.rows.start, t.rows.end, t.cols.start, t.cols.end) for t in filled]
        lr = torch.cat([self.padded[..., r0:r1, c0:c1] for r0, r1, c0, c1 in crops]).to(self.device)
        noise = self._noise_for(crops, lr.shape)
        sr = sample(self.models, lr, self.timesteps, noise, self.timer.stage)
        return [self._color_fixed(sr[k : k + 1], tile) for k, tile in enumerate(tiles)]

    def _noise_for(self, crops: list[tuple[int, int, int, int]], shape) -> Noise:
        """The tiles' crops of the whole image's noise (at latent resolution, half the input's)."""
        if self.shared_noise:
            def crop(whole):
                return torch.cat([whole[..., r0 // 2 : r1 // 2, c0 // 2 : c1 // 2] for r0, r1, c0, c1 in crops])

            noise = Noise(crop(self.noise.predictor), crop(self.noise.encoder))
        else:  # the reference implementation's way, for comparison: fresh noise for every tile
            self.seed += 1
            noise = Noise.draw(shape, self.models.noise_predictor.config.latent_channels, self.seed)
        return Noise(noise.predictor.to(self.device), noise.encoder.to(self.device))

    def _color_fixed(self, sr: torch.Tensor, tile: Tile) -> torch.Tensor:
        height, width = self.lr.shape[-2:]
        r0, r1, c0, c1 = tile.rows.start, min(tile.rows.end, height), tile.cols.start, min(tile.cols.end, width)
        with self.timer.stage("color_fix"):
            sr = sr[..., : SCALE * (r1 - r0), : SCALE * (c1 - c0)]
            return apply_color_fix(self.color_fix, sr, self._reference(r0, r1, c0, c1))

    def _reference(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """The whole-image reference (the input resized x4) for input rows r0:r1 and columns c0:c1."""
        height, width = self.lr.shape[-2:]
        a0, a1 = max(0, r0 - REFERENCE_MARGIN), min(height, r1 + REFERENCE_MARGIN)
        b0, b1 = max(0, c0 - REFERENCE_MARGIN), min(width, c1 + REFERENCE_MARGIN)
        around = reference_for(self.lr[..., a0:a1, b0:b1].to(self.device), (SCALE * (a1 - a0), SCALE * (b1 - b0)))
        return around[..., SCALE * (r0 - a0) : SCALE * (r1 - a0), SCALE * (c0 - b0) : SCALE * (c1 - b0)]

    def _accumulate(self, canvas: Canvas, i: int, j: int, tile: Tile, output: torch.Tensor) -> None:
        """Add the tile, weighted so that all tiles' weights sum to 1 at every pixel (separable: per axis)."""
        h, w = output.shape[-2:]
        y, x = SCALE * tile.rows.start, SCALE * tile.cols.start
        rows = axis_weights(self.row_spans, i, SCALE, self.blend)[:h] / self.row_sums[y : y + h]
        cols = axis_weights(self.col_spans, j, SCALE, self.blend)[:w] / self.col_sums[x : x + w]
        canvas.add(y, x, output * (rows[:, None] * cols[None, :]).to(output.device))  # resampled where the tile is

    def _report(self, tile: int, overlap: int, batch: int) -> dict:
        height, width = self.lr.shape[-2:]
        return {
            "tile": tile,
            "overlap": overlap,
            "batch": batch,
            "tiles": sum(len(row) for row in self.grid),
            "grid": [len(self.grid), len(self.grid[0])],
            "work_ratio": round(work_ratio(self.grid, height, width), 4),
            "static_shapes": self.static_shapes,
            "notices": list(self.notices),
        }


def _axis_sum(spans, length: int, blend: bool) -> torch.Tensor:
    total = torch.zeros(SCALE * spans[-1].end)
    for index, span in enumerate(spans):
        total[SCALE * span.start : SCALE * span.end] += axis_weights(spans, index, SCALE, blend)
    return total[:length]

