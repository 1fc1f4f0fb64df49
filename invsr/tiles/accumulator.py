"""Tile outputs in, in any order; the image at the requested size out by bands of rows, the same whatever
the order.

Each output is weighted by its blending weights (blend.py) and added to the result, resampled from x4
to the requested size as it arrives (resample.py), so the host never holds the x4 image. Float addition
is not associative: to give the same bytes whatever order tiles arrive in, every output pixel sums its
tiles in the plan's canonical order. Each tile's contribution is added in parts, its rows cut where the
next row of tiles begins (`_parts`); a part is added once every part before it in that order that
reaches the same pixels has been (parts that share no pixel commute), a part that arrives early waiting
for those. Outputs that arrive in that order, as from one device, are added at once, but for the lower
part of the narrower last column, which comes after the next row's full-size tiles in the plan.

The result is held in bands of rows (resample.Canvas's strips): a band is finished when no tile still to
be committed reaches it, and `bands` hands it out and forgets it. A device that computes tiles row by row
(`TilePlan.band_order`) so holds about one row of tiles, never the whole output; `result` gives the whole
image to a caller that takes no bands.

Given a `finish` (image_job.Assembly: the result's own pixel type), the accumulator hands out the finished
rows instead, and does not wait for a whole band to finish its pixels: each time bands are asked for, the
columns of each band left of every tile still to come over it are finished and their float values let go.
A band waiting for the end of its row of tiles then holds the output's bytes (3 per pixel for 8-bit RGB)
rather than float32's 12, but for the overlap with the next row of tiles and the tiles being added: what
grows with the image's width shrinks about 2.5 times for 8-bit RGB (bench/README.md). Pixels are
finished one by one, so the bytes are those of finishing whole bands.
"""

from __future__ import annotations

import heapq
from typing import Protocol

import numpy as np
import torch

from ..resample import Canvas
from .blend import AxisBlend, AxisWeights, ramp_weights
from .grid import SCALE
from .plan import TilePlan

BAND_BYTES = 1 << 20  # float32 bytes of a band of rows, about (at least 16 rows)
CHUNK_COLS = 1024  # columns of the float chunks, finished and let go of as a whole (with a `finish`)
FLOAT_PIXEL_BYTES = 4 * 3  # what the canvas holds per pixel before finishing


class Finish(Protocol):
    """Makes the result's own pixels from the model's colour (pixels.BandFinisher, through image_job.Assembly)."""

    pixel_bytes: int  # of the result, per pixel

    def block(self, top: int, left: int, rgb: torch.Tensor) -> np.ndarray: ...

    def done_above(self, row: int) -> None: ...


def band_rows(width: int, channels: int = 3) -> int:
    """Rows of the bands an output `width` pixels wide is finished in."""
    return max(16, BAND_BYTES // (4 * channels * max(1, width)))


class TileAccumulator:
    """The (1, 3, H, W) result of one plan at `out_size` (None: x4), from its tiles' outputs."""

    def __init__(
        self,
        plan: TilePlan,
        out_size: tuple[int, int] | None = None,
        weights: AxisWeights = ramp_weights,
        rows_per_band: int | None = None,
        finish: Finish | None = None,
    ):
        self.plan, self.finish = plan, finish
        x4_size = plan.output_size
        self.size = tuple(out_size or x4_size)
        self.rows = AxisBlend(list(plan.rows), SCALE, weights)
        self.cols = AxisBlend(list(plan.cols), SCALE, weights)
        # finishing columns early saves memory only where the result's pixel is smaller than the float one
        self.early = finish is not None and finish.pixel_bytes < FLOAT_PIXEL_BYTES
        self.canvas = Canvas(
            x4_size,
            self.size,
            band_rows=rows_per_band or band_rows(self.size[1]),
            seal=None if finish is None else finish.block,
            chunk_cols=CHUNK_COLS if self.early else None,
        )
        reaches = np.array([self._reach(tile) for tile in plan.tiles], dtype=np.int64).reshape(-1, 4)
        self.parts, self.first_part = _parts(reaches)
        self.before, self.after = _orders(self.parts)
        self.arrived = np.zeros(len(plan.tiles), dtype=bool)
        self.waiting: dict[int, tuple] = {}  # parts arrived before their turn: (top, left, values), by index
        self.pending = np.ones(len(self.parts), dtype=bool)  # parts not added to the canvas yet
        self.open = [(int(top), part) for part, top in enumerate(self.parts[:, 0])]  # (first row, part) heap
        heapq.heapify(self.open)

    @property
    def complete(self) -> bool:
        return not self.pending.any()

    def add(self, position: int, output: torch.Tensor) -> None:
        """Take the output (1, 3, 4 h, 4 w) of the plan's tile `position`, on any device."""
        if not 0 <= position < len(self.plan.tiles):
            raise ValueError(f"tile {position} is not in the plan, which has {len(self.plan.tiles)}")
        if self.arrived[position]:
            raise ValueError(f"tile {position} was given twice")
        self.arrived[position] = True
        top, left, values = self._contribution(position, output)
        ready = []
        for part in range(self.first_part[position], self.first_part[position + 1]):
            first, last = self.parts[part, :2]
            self.waiting[part] = (first, left, values[..., first - top : last - top, :])
            if self.before[part] == 0:
                ready.append(part)
        while ready:  # parts ready at once share no pixel: their order does not matter
            part = ready.pop()
            self.canvas.place(*self.waiting.pop(part))
            self.pending[part] = False
            for later in self.after[part]:
                self.before[later] -= 1
                if self.before[later] == 0 and later in self.waiting:
                    ready.append(later)

    def finished_rows(self) -> int:
        """Rows from the top that no part of a tile still to be added reaches."""
        while self.open and not self.pending[self.open[0][1]]:
            heapq.heappop(self.open)
        return self.open[0][0] if self.open else self.size[0]

    def bands(self) -> list[tuple[int, torch.Tensor | np.ndarray]]:
        """The finished bands not handed out yet, top to bottom: (first row, (1, 3, rows, W) on the host), or
        with a `finish` (first row, the result's rows)."""
        if self.early:
            self._finish_columns()
        bands = self.canvas.take(self.finished_rows())
        if self.finish is not None and bands:
            top, rows = bands[-1]
            self.finish.done_above(top + rows.shape[0])
        return bands

    def _finish_columns(self) -> None:
        """Finish the columns of each band being made that are left of every tile still to come over it, by
        whole chunks of the canvas (no copy to gather them; few calls, each worth making)."""
        indices = list(self.canvas.strips)
        coming = self.parts[self.pending]
        rows = np.array([self.canvas.strip_rows(index) for index in indices]).reshape(-1, 2)
        over = (coming[None, :, 0] < rows[:, 1:]) & (coming[None, :, 1] > rows[:, :1])  # (strips, parts coming)
        width = self.size[1]
        rights = np.where(over, coming[None, :, 2], width).min(axis=1, initial=width)
        for index, right in zip(indices, rights.tolist()):
            right = right if right == width else right // CHUNK_COLS * CHUNK_COLS
            self.canvas.seal_columns(index, right)

    def result(self) -> torch.Tensor:
        """The finished image, on the host; every tile must have been added, no band taken, and no `finish`."""
        if not self.complete:
            missing = len(self.plan.tiles) - int(self.arrived.sum())
            raise RuntimeError(f"{missing} of {len(self.plan.tiles)} tiles are still missing")
        return self.canvas.image

    def _reach(self, tile) -> tuple[int, int, int, int]:
        """The output rows [top, bottom) and columns [left, right) the tile's output is added to."""
        visible, (top, left) = tile.visible.scaled(SCALE), self.plan.offset
        return self.canvas.reach(visible.top - SCALE * top, visible.left - SCALE * left, visible.height, visible.width)

    def _contribution(self, position: int, output: torch.Tensor) -> tuple[int, int, torch.Tensor]:
        """The tile's output weighted so that all tiles' weights sum to 1 at every pixel, resampled where
        the tile is, in the image's own coordinates (the padding's offset taken off): (top, left, values)."""
        tile = self.plan.tiles[position]
        visible, (top, left) = tile.visible.scaled(SCALE), self.plan.offset
        crop = tile.crop.scaled(SCALE)
        rows = self.rows.of(tile.row, visible.top - crop.top, visible.height)
        cols = self.cols.of(tile.col, visible.left - crop.left, visible.width)
        weighted = output * (rows[:, None] * cols[None, :]).to(output.device)
        return self.canvas.resampled(visible.top - SCALE * top, visible.left - SCALE * left, weighted)


def _parts(reaches: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Each tile's reach cut into parts of rows at the first rows of the other tiles (the next row of tiles):
    (rows [top, bottom) and columns [left, right) of each part, tile by tile in the plan's order; the index
    of each tile's first part, and the number of parts at the end). Parts of a tile are added to the
    canvas on their own, so that the rows of a tile above the next row of tiles need not wait for tiles
    that come later in the plan but reach only its lower rows (the narrower last column waits for the next
    row's full-size tiles at their shared corner)."""
    cuts = np.unique(reaches[:, 0])
    parts, first_part = [], []
    for top, bottom, left, right in reaches.tolist():
        first_part.append(len(parts))
        inside = cuts[(cuts > top) & (cuts < bottom)].tolist()
        for first, last in zip([top, *inside], [*inside, bottom]):
            parts.append((first, last, left, right))
    first_part.append(len(parts))
    return np.array(parts, dtype=np.int64).reshape(-1, 4), first_part


def _orders(reaches: np.ndarray) -> tuple[list[int], list[list[int]]]:
    """For each part, how many parts before it reach pixels it reaches, and the parts after it that do."""
    top, bottom, left, right = reaches.T
    before, after = [], [[] for _ in range(len(reaches))]
    for position in range(len(reaches)):
        earlier = slice(0, position)
        meets = (
            (top[earlier] < bottom[position])
            & (top[position] < bottom[earlier])
            & (left[earlier] < right[position])
            & (left[position] < right[earlier])
        )
        found = np.flatnonzero(meets)
        before.append(len(found))
        for tile in found:
            after[int(tile)].append(position)
    return before, after
