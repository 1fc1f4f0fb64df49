"""The tiles of one image, each with the coordinates of everything its computation reads.

A plan is small, frozen data (coordinates, no pixels): it can be sent to whoever computes a batch, and
`inputs` cuts that batch's pixels from the (padded) image and its noise. The two standard-normal draws
are those of the whole padded image, cut per tile (noise.py makes the rows a tile needs), so overlapping
tiles start from the same noise and agree.

Tiles are listed in one canonical order, the order a single device computes them in: largest first (so
that a batch holds tiles of one size), and row by row within a size. A batch is a run of consecutive
tiles of that order; the accumulator commits tiles in that order whatever order they arrive in.
"""

from __future__ import annotations

import dataclasses

import torch

from ..sampling import Noise
from .batch import BatchInputs, ColorReference
from .grid import SCALE, Box, PaddedImage, Span, plan_axis
from .noise import NoiseField

REFERENCE_MARGIN = 4  # input pixels around a tile that its x4 bicubic reference depends on


@dataclasses.dataclass(frozen=True)
class PlannedTile:
    row: int  # its place in the grid of tiles
    col: int
    crop: Box  # the input pixels the networks see, in the padded image
    noise: Box  # its part of the image's noise, on the latent grid (half the input's)
    visible: Box  # the part of `crop` inside the image, in the padded image: what its output covers, x4
    around: Box  # the image pixels the colour-fix reference of `visible` is resized from, in the padded image


@dataclasses.dataclass(frozen=True)
class TilePlan:
    image_size: tuple[int, int]  # (height, width) of the input
    padded_size: tuple[int, int]  # (height, width) of the padded input that tiles are cut from
    tile: int
    overlap: int
    rows: tuple[Span, ...]  # the grid's spans down and across
    cols: tuple[Span, ...]
    tiles: tuple[PlannedTile, ...]  # in the canonical order
    offset: tuple[int, int] = (0, 0)  # (top, left) of the image in the padded image (grid.pad_for_networks)

    @classmethod
    def make(
        cls, image_size, padded_size, tile: int, overlap: int, multiple: int, uniform: bool = False, offset=(0, 0)
    ) -> TilePlan:
        """The plan for an image of `image_size`, padded to `padded_size` (multiples of `multiple`) with its
        top left corner at `offset`; `uniform`: full-size tiles only (grid.plan_axis), for compiled networks."""
        rows = tuple(plan_axis(padded_size[0], tile, overlap, multiple, uniform))
        cols = tuple(plan_axis(padded_size[1], tile, overlap, multiple, uniform))
        inside = Box(*offset, *image_size)
        tiles = [_planned(i, j, r, c, inside) for i, r in enumerate(rows) for j, c in enumerate(cols)]
        tiles.sort(key=lambda t: tuple(-side for side in _shape(t)))  # stable: row by row within a size
        return cls(tuple(image_size), tuple(padded_size), tile, overlap, rows, cols, tuple(tiles), tuple(offset))

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the x4 result."""
        return SCALE * self.image_size[0], SCALE * self.image_size[1]

    def batch_end(self, start: int, limit: int) -> int:
        """The end of the batch that begins at tile `start`: at most `limit` tiles, all of one size."""
        shape = _shape(self.tiles[start])
        stop = start + 1
        while stop < min(len(self.tiles), start + limit) and _shape(self.tiles[stop]) == shape:
            stop += 1
        return stop

    def batches(self, limit: int) -> list[tuple[int, int]]:
        """(start, stop) of every batch, for a device that fits `limit` tiles at a time."""
        bounds, start = [], 0
        while start < len(self.tiles):
            bounds.append((start, self.batch_end(start, limit)))
            start = bounds[-1][1]
        return bounds

    def band_order(self, bounds: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The batches `bounds` in the order that finishes the output's rows soonest: by the last row of
        tiles each reaches (then as planned), so that the narrower tiles at the right end of a row are
        computed with their row, not after every full-size tile (accumulator.py holds the rows between)."""
        return sorted(bounds, key=lambda bound: (max(t.row for t in self.tiles[bound[0] : bound[1]]), bound[0]))

    def inputs(
        self, image: PaddedImage, noise: Noise | NoiseField, start: int, stop: int, fill_to: int = 0
    ) -> BatchInputs:
        """The pixels batch [start, stop) reads, cut from the padded `image` (1, 3, H, W) and its `noise`;
        with repeats of the last tile up to `fill_to` tiles (one batch shape for compiled networks).
        Copies, not views: pickled to go elsewhere, a view would take the whole image with it."""
        tiles = self.tiles[start:stop]
        filled = tiles + tiles[-1:] * (fill_to - len(tiles))
        cuts = [noise.cut(t.noise) for t in filled]
        return BatchInputs(
            lr=torch.cat([image.cut(t.crop) for t in filled]),
            noise=Noise(torch.cat([cut.predictor for cut in cuts]), torch.cat([cut.encoder for cut in cuts])),
            references=tuple(
                ColorReference(image.cut(t.around), _within(t.visible, t.around), _within(t.visible, t.crop))
                for t in tiles
            ),
        )

    def describe(self) -> dict:
        """The plan's part of the job report."""
        height, width = self.image_size
        area = sum(t.crop.height * t.crop.width for t in self.tiles)  # what the networks process
        return {
            "tile": self.tile,
            "overlap": self.overlap,
            "tiles": len(self.tiles),
            "grid": [len(self.rows), len(self.cols)],
            "work_ratio": round(area / (height * width), 4),
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> TilePlan:
        def tile(t: dict) -> PlannedTile:
            return PlannedTile(t["row"], t["col"], *(Box(**t[name]) for name in ("crop", "noise", "visible", "around")))

        return cls(
            tuple(fields["image_size"]),
            tuple(fields["padded_size"]),
            fields["tile"],
            fields["overlap"],
            tuple(Span(**s) for s in fields["rows"]),
            tuple(Span(**s) for s in fields["cols"]),
            tuple(tile(t) for t in fields["tiles"]),
            tuple(fields["offset"]),
        )


def _planned(i: int, j: int, rows: Span, cols: Span, inside: Box) -> PlannedTile:
    """Tile (i, j) of the spans, for an image at `inside` of the padded image."""
    crop = Box(rows.start, cols.start, rows.size, cols.size)
    noise = Box(rows.start // 2, cols.start // 2, rows.size // 2, cols.size // 2)  # tiles start on even pixels
    visible = _intersection(crop, inside)
    return PlannedTile(i, j, crop, noise, visible, _intersection(_grown(visible, REFERENCE_MARGIN), inside))


def _intersection(a: Box, b: Box) -> Box:
    top, left = max(a.top, b.top), max(a.left, b.left)
    return Box(top, left, min(a.bottom, b.bottom) - top, min(a.right, b.right) - left)


def _grown(box: Box, margin: int) -> Box:
    return Box(box.top - margin, box.left - margin, box.height + 2 * margin, box.width + 2 * margin)


def _shape(tile: PlannedTile) -> tuple[int, int]:
    return tile.crop.height, tile.crop.width


def _within(inner: Box, outer: Box) -> Box:
    """`inner` in the coordinates of `outer`'s top left corner."""
    return Box(inner.top - outer.top, inner.left - outer.left, inner.height, inner.width)
