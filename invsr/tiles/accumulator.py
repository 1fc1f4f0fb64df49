"""Tile outputs in, in any order; the image at the requested size out by bands of rows, the same whatever
the order.

Each output is weighted by its blending weights (blend.py) and added to the result, resampled from x4
to the requested size as it arrives (resample.py), so the host never holds the x4 image. Float addition
is not associative: to give the same bytes whatever order tiles arrive in, every output pixel sums its
tiles in the plan's canonical order. A tile is committed once every tile before it in that order whose
output reaches the same pixels has been (tiles that share no pixel commute), an output that arrives
early waiting for those. Outputs that arrive in that order, as from one device, are committed at once.

The result is held in bands of rows (resample.Canvas's strips): a band is finished when no tile still to
be committed reaches it, and `bands` hands it out and forgets it. A device that computes tiles row by row
(`TilePlan.band_order`) so holds a few rows of tiles, never the whole output; `result` gives the whole
image to a caller that takes no bands.

Given a `finish` (image_job.Assembly: the result's own pixel type), the accumulator hands out the finished
rows instead, and does not wait for a whole band to finish its pixels: after each commit, the columns of
each band left of every tile still to come are finished at once and their float values let go. A band
waiting for the end of its row of tiles then holds the output's bytes (3 per pixel for 8-bit RGB) rather
than float32's 12, except under the tiles still to come: what grows with the image's width shrinks by up
to four times. (Pixels are finished one by one, so the bytes are those of finishing whole bands.)
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
CHUNK_COLS = 256  # columns of the float chunks that finished columns let go of (with a `finish`)
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
        self.reaches = reaches
        self.pending = np.ones(len(plan.tiles), dtype=bool)  # not committed yet
        self.before, self.after = _orders(reaches)
        self.waiting: dict[int, torch.Tensor] = {}  # arrived before their turn, by position in the plan
        self.done = [False] * len(plan.tiles)
        self.committed = 0  # tiles added to the canvas
        self.open = [(int(top), position) for position, top in enumerate(reaches[:, 0])]  # (first row, tile) heap
        heapq.heapify(self.open)

    @property
    def complete(self) -> bool:
        return self.committed == len(self.plan.tiles)

    def add(self, position: int, output: torch.Tensor) -> None:
        """Take the output (1, 3, 4 h, 4 w) of the plan's tile `position`, on any device."""
        if not 0 <= position < len(self.plan.tiles):
            raise ValueError(f"tile {position} is not in the plan, which has {len(self.plan.tiles)}")
        if self.done[position] or position in self.waiting:
            raise ValueError(f"tile {position} was given twice")
        self.waiting[position] = output
        ready = [position] if self.before[position] == 0 else []
        while ready:  # tiles ready at once share no pixel: their order does not matter
            tile = ready.pop()
            self._commit(tile, self.waiting.pop(tile))
            self.done[tile] = True
            self.pending[tile] = False
            self.committed += 1
            for later in self.after[tile]:
                self.before[later] -= 1
                if self.before[later] == 0 and later in self.waiting:
                    ready.append(later)

    def finished_rows(self) -> int:
        """Rows from the top that no tile still to be committed reaches."""
        while self.open and self.done[self.open[0][1]]:
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
        """Finish the columns of each band being made that are left of every tile still to come over it."""
        top, bottom, left, _ = self.reaches.T
        for index in list(self.canvas.strips):
            first, last = self.canvas.strip_rows(index)
            coming = self.pending & (top < last) & (bottom > first)
            self.canvas.seal_columns(index, int(left[coming].min()) if coming.any() else self.size[1])

    def result(self) -> torch.Tensor:
        """The finished image, on the host; every tile must have been added, no band taken, and no `finish`."""
        if not self.complete:
            missing = len(self.plan.tiles) - self.committed - len(self.waiting)
            raise RuntimeError(f"{missing} of {len(self.plan.tiles)} tiles are still missing")
        return self.canvas.image

    def _reach(self, tile) -> tuple[int, int, int, int]:
        """The output rows [top, bottom) and columns [left, right) the tile's output is added to."""
        visible, (top, left) = tile.visible.scaled(SCALE), self.plan.offset
        return self.canvas.reach(visible.top - SCALE * top, visible.left - SCALE * left, visible.height, visible.width)

    def _commit(self, position: int, output: torch.Tensor) -> None:
        """Add the tile, weighted so that all tiles' weights sum to 1 at every pixel."""
        tile = self.plan.tiles[position]
        visible, (top, left) = tile.visible.scaled(SCALE), self.plan.offset
        crop = tile.crop.scaled(SCALE)
        rows = self.rows.of(tile.row, visible.top - crop.top, visible.height)
        cols = self.cols.of(tile.col, visible.left - crop.left, visible.width)
        weighted = output * (rows[:, None] * cols[None, :]).to(output.device)
        # resampled where the tile is, in the image's own coordinates (the padding's offset taken off)
        self.canvas.add(visible.top - SCALE * top, visible.left - SCALE * left, weighted)


def _orders(reaches: np.ndarray) -> tuple[list[int], list[list[int]]]:
    """For each tile, how many tiles before it reach pixels it reaches, and the tiles after it that do."""
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
