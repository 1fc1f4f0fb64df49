"""Tile outputs in, in any order; the image at the requested size out, the same whatever the order.

Each output is weighted by its blending weights (blend.py) and added to the result, resampled from x4
to the requested size as it arrives (resample.py), so the host holds one output-sized buffer, never the
x4 image. Float addition is not associative: to give the same bytes whatever order tiles arrive in,
contributions are committed in the plan's canonical order, an output that arrives early waiting for
those before it. Outputs that arrive in that order, as from one device, are committed at once.
"""

from __future__ import annotations

import torch

from ..resample import Canvas
from .blend import AxisBlend, AxisWeights, ramp_weights
from .grid import SCALE
from .plan import TilePlan


class TileAccumulator:
    """The (1, 3, H, W) result of one plan at `out_size` (None: x4), from its tiles' outputs."""

    def __init__(self, plan: TilePlan, out_size: tuple[int, int] | None = None, weights: AxisWeights = ramp_weights):
        self.plan = plan
        x4_size = plan.output_size
        self.rows = AxisBlend(list(plan.rows), SCALE, weights)
        self.cols = AxisBlend(list(plan.cols), SCALE, weights)
        self.canvas = Canvas(x4_size, out_size or x4_size)
        self.waiting: dict[int, torch.Tensor] = {}  # arrived before their turn, by position in the plan
        self.committed = 0  # tiles of the canonical order added to the canvas

    @property
    def complete(self) -> bool:
        return self.committed == len(self.plan.tiles)

    def add(self, position: int, output: torch.Tensor) -> None:
        """Take the output (1, 3, 4 h, 4 w) of the plan's tile `position`, on any device."""
        if not 0 <= position < len(self.plan.tiles):
            raise ValueError(f"tile {position} is not in the plan, which has {len(self.plan.tiles)}")
        if position < self.committed or position in self.waiting:
            raise ValueError(f"tile {position} was given twice")
        self.waiting[position] = output
        while self.committed in self.waiting:
            self._commit(self.committed, self.waiting.pop(self.committed))
            self.committed += 1

    def result(self) -> torch.Tensor:
        """The finished image, on the host; every tile must have been added."""
        if not self.complete:
            missing = len(self.plan.tiles) - self.committed - len(self.waiting)
            raise RuntimeError(f"{missing} of {len(self.plan.tiles)} tiles are still missing")
        return self.canvas.image

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
