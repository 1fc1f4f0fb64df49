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
"""

from __future__ import annotations

import heapq

import numpy as np
import torch

from ..resample import Canvas
from .blend import AxisBlend, AxisWeights, ramp_weights
from .grid import SCALE
from .plan import TilePlan

BAND_BYTES = 1 << 20  # float32 bytes of a band of rows, about (at least 16 rows)


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
    ):
        self.plan = plan
        x4_size = plan.output_size
        self.size = tuple(out_size or x4_size)
        self.rows = AxisBlend(list(plan.rows), SCALE, weights)
        self.cols = AxisBlend(list(plan.cols), SCALE, weights)
        self.canvas = Canvas(x4_size, self.size, band_rows=rows_per_band or band_rows(self.size[1]))
        reaches = np.array([self._reach(tile) for tile in plan.tiles], dtype=np.int64).reshape(-1, 4)
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

    def bands(self) -> list[tuple[int, torch.Tensor]]:
        """The finished bands not handed out yet, top to bottom: (first row, (1, 3, rows, W) on the host)."""
        return self.canvas.take(self.finished_rows())

    def result(self) -> torch.Tensor:
        """The finished image, on the host; every tile must have been added, and no band taken."""
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
