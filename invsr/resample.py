"""The x4 result resampled to the requested size tile by tile, so that it never exists whole.

Resampling is linear and each output pixel reads only a few neighbouring input pixels, so resampling the
blend of the tiles equals summing the resampled, weighted tiles: `Canvas.add` does that, and the host
holds one buffer of the output's size instead of one of the x4 result's (at 2x, a quarter as large).

The filter is that of torch's `F.interpolate(mode="bicubic", antialias=True, align_corners=False)`
(PIL's: Keys' cubic with a = -0.5, stretched by the reduction factor when reducing), applied one axis at a
time as a (band) matrix per tile and axis. Tap positions are computed in float64: the result is within
3e-7 of torch's in float64, where torch's float32 path strays by up to 5e-5 on large images.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

CUBIC_A = -0.5


def _cubic(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    near = ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * CUBIC_A
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


@dataclasses.dataclass(frozen=True)
class AxisResampler:
    """Output pixel k of one axis = sum over t of weights[k, t] * input[first[k] + t]."""

    first: torch.Tensor  # (out,) int64
    weights: torch.Tensor  # (out, taps) float32; zero past each pixel's own taps

    @classmethod
    def between(cls, in_size: int, out_size: int) -> AxisResampler:
        scale = in_size / out_size  # input pixels per output pixel
        support = 2.0 * max(scale, 1.0)  # the cubic's radius, stretched when reducing
        taps = math.ceil(support) * 2 + 1
        center = scale * (torch.arange(out_size, dtype=torch.float64) + 0.5)
        first = (
            (center - support + 0.5).floor().clamp(min=0).long()
        )  # floor = C's truncation here: only values >= 0 matter
        last = (center + support + 0.5).floor().clamp(max=in_size).long()
        positions = first[:, None] + torch.arange(taps)[None, :]
        weights = _cubic((positions - center[:, None] + 0.5) / max(scale, 1.0))
        weights = torch.where(positions < last[:, None], weights, torch.zeros_like(weights))
        weights = weights / weights.sum(dim=1, keepdim=True)
        return cls(first, weights.float())

    def reaching(self, begin: int, end: int) -> tuple[int, int]:
        """The output pixels [k0, k1) whose taps reach input pixels [begin, end)."""
        reach = self.first + self.weights.shape[1]
        k0 = int(torch.searchsorted(reach, torch.tensor(begin), right=True))
        k1 = int(torch.searchsorted(self.first, torch.tensor(end)))
        return k0, k1

    def matrix(self, begin: int, n: int, device: torch.device) -> tuple[torch.Tensor, int]:
        """The dense (k, n) matrix that takes input pixels [begin, begin + n) to the k output pixels they
        reach (matrix products are several times faster than gathering taps), and the first one's index."""
        k0, k1 = self.reaching(begin, begin + n)
        index = self.first[k0:k1, None] + torch.arange(self.weights.shape[1])[None, :] - begin  # (k, taps)
        inside = (index >= 0) & (index < n)  # taps outside: other tiles' pixels, added by their own call
        rows = torch.arange(k1 - k0)[:, None].expand_as(index)
        matrix = torch.zeros(k1 - k0, n)
        matrix.index_put_((rows[inside], index[inside]), self.weights[k0:k1][inside], accumulate=True)
        return matrix.to(device), k0


Seal = Callable[[int, int, torch.Tensor], np.ndarray]  # (top, left, (1, C, rows, w) float) -> final (rows, w, ...)


class _Strip:
    """One band of rows of a canvas: its float columns, in chunks, and, left of `sealed`, its final pixels."""

    def __init__(self, rows: int):
        self.rows = rows
        self.chunks: dict[int, torch.Tensor] = {}  # by index; made when first added to, gone once sealed
        self.sealed = 0  # columns [0, sealed) are final, in `final`
        self.final: np.ndarray | None = None


class Canvas:
    """The (1, C, H, W) output, accumulated from weighted x4 tiles placed at x4 coordinates.

    Held in strips of `band_rows` rows (None: one strip, the whole output), made when a tile first reaches
    them, so that finished strips can be taken (`take`) before the rest exists: a caller that takes them as
    they finish never holds the whole output.

    With `seal`, a caller that knows which columns of a strip no tile will add to any more has them made
    final at once (`seal_columns`: `seal` makes them the output's own pixels, often a quarter of the float
    bytes), and the float chunks of `chunk_cols` columns under them are let go; `take` then gives the final
    rows. So a strip waiting for the rest of its row of tiles holds its float values only where tiles are
    still to come."""

    def __init__(
        self,
        x4_size: tuple[int, int],
        out_size: tuple[int, int],
        channels: int = 3,
        band_rows: int | None = None,
        seal: Seal | None = None,
        chunk_cols: int | None = None,
    ):
        self.size, self.channels = tuple(out_size), channels
        self.band_rows = band_rows or max(1, out_size[0])
        self.chunk_cols = chunk_cols or max(1, out_size[1])
        self.seal = seal
        self.strips: dict[int, _Strip] = {}
        self.taken = 0  # rows handed out by `take`
        same = tuple(x4_size) == tuple(out_size)
        self.rows = None if same else AxisResampler.between(x4_size[0], out_size[0])
        self.cols = None if same else AxisResampler.between(x4_size[1], out_size[1])

    def reach(self, y: int, x: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The output rows [top, bottom) and columns [left, right) that `add` of (h, w) values at (y, x) writes."""
        if self.rows is None:
            return y, y + height, x, x + width
        return (*self.rows.reaching(y, y + height), *self.cols.reaching(x, x + width))

    def add(self, y: int, x: int, values: torch.Tensor) -> None:
        """Add (1, C, h, w) `values` whose top left is at (y, x) of the x4 image."""
        self.place(*self.resampled(y, x, values))

    def resampled(self, y: int, x: int, values: torch.Tensor) -> tuple[int, int, torch.Tensor]:
        """(1, C, h, w) `values` placed at (y, x) of the x4 image, as what they add to the output: (top, left,
        values) on the host. Resampled on their own device (a GPU does it in no time)."""
        top, left = y, x
        if self.rows is not None:
            rows, top = self.rows.matrix(y, values.shape[-2], values.device)
            cols, left = self.cols.matrix(x, values.shape[-1], values.device)
            values = rows @ values @ cols.T
        return top, left, values.cpu()

    def place(self, top: int, left: int, values: torch.Tensor) -> None:
        """Add (1, C, h, w) output `values` (from `resampled`) at (top, left) of the output."""
        h, w = values.shape[-2:]
        if top < self.taken:
            raise RuntimeError(f"rows from {top} added after rows up to {self.taken} were taken")
        for index in range(top // self.band_rows, -(-(top + h) // self.band_rows)):
            start, strip = index * self.band_rows, self._strip(index)
            if left < strip.sealed:
                raise RuntimeError(f"columns from {left} added after columns up to {strip.sealed} were sealed")
            first, last = max(top, start), min(top + h, start + strip.rows)
            part = values[..., first - top : last - top, :]
            for chunk in range(left // self.chunk_cols, -(-(left + w) // self.chunk_cols)):
                begin = chunk * self.chunk_cols
                lo, hi = max(left, begin), min(left + w, begin + self.chunk_cols)
                target = self._chunk(strip, chunk)[..., first - start : last - start, lo - begin : hi - begin]
                target.add_(part[..., lo - left : hi - left])

    def strip_rows(self, index: int) -> tuple[int, int]:
        """The rows [top, bottom) of strip `index`."""
        top = index * self.band_rows
        return top, min(top + self.band_rows, self.size[0])

    def seal_columns(self, index: int, right: int) -> None:
        """Make columns up to `right` of strip `index` final (no tile adds to them any more) with `seal`."""
        strip = self._strip(index)
        if right <= strip.sealed:
            return
        final = self.seal(index * self.band_rows, strip.sealed, self._columns(strip, strip.sealed, right))
        if strip.final is None and right - strip.sealed == self.size[1]:
            strip.final = final  # the whole strip at once
        else:
            if strip.final is None:
                strip.final = np.empty((strip.rows, self.size[1], *final.shape[2:]), final.dtype)
            strip.final[:, strip.sealed : right] = final
        strip.sealed = right
        for chunk in [c for c in strip.chunks if (c + 1) * self.chunk_cols <= right]:
            del strip.chunks[chunk]

    def take(self, bottom: int) -> list[tuple[int, torch.Tensor | np.ndarray]]:
        """The whole strips above row `bottom` not taken yet, top to bottom, as (first row, (1, C, rows, W)),
        or with `seal` (first row, its final rows); they leave the canvas."""
        height = self.size[0]
        taken = []
        while self.taken < height and min(self.taken + self.band_rows, height) <= bottom:
            index = self.taken // self.band_rows
            strip = self._strip(index)
            if self.seal is None:
                taken.append((self.taken, self._columns(strip, 0, self.size[1])))
            else:
                self.seal_columns(index, self.size[1])
                taken.append((self.taken, strip.final))
            del self.strips[index]
            self.taken += strip.rows
        return taken

    @property
    def held_bytes(self) -> int:
        """What the canvas holds now: float columns and final pixels."""
        chunks = sum(chunk.nbytes for strip in self.strips.values() for chunk in strip.chunks.values())
        return chunks + sum(strip.final.nbytes for strip in self.strips.values() if strip.final is not None)

    @property
    def image(self) -> torch.Tensor:
        """The whole output (none of it taken yet, none sealed), as one tensor."""
        if self.taken or self.seal is not None:
            raise RuntimeError("the canvas is handed out by bands")
        strips = [
            self._columns(self._strip(index), 0, self.size[1]) for index in range(-(-self.size[0] // self.band_rows))
        ]
        return strips[0] if len(strips) == 1 else torch.cat(strips, dim=-2)

    def _strip(self, index: int) -> _Strip:
        strip = self.strips.get(index)
        if strip is None:
            top, bottom = self.strip_rows(index)
            strip = self.strips[index] = _Strip(bottom - top)
        return strip

    def _chunk(self, strip: _Strip, chunk: int) -> torch.Tensor:
        values = strip.chunks.get(chunk)
        if values is None:
            width = min(self.chunk_cols, self.size[1] - chunk * self.chunk_cols)
            values = strip.chunks[chunk] = torch.zeros(1, self.channels, strip.rows, width)
        return values

    def _columns(self, strip: _Strip, left: int, right: int) -> torch.Tensor:
        """The strip's float columns [left, right): a view where one chunk holds them."""
        first, last = left // self.chunk_cols, -(-right // self.chunk_cols)
        parts = []
        for chunk in range(first, last):
            begin = chunk * self.chunk_cols
            parts.append(
                self._chunk(strip, chunk)[..., max(left, begin) - begin : min(right, begin + self.chunk_cols) - begin]
            )
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def resize(image: torch.Tensor, size: tuple[int, int], block: int = 512) -> torch.Tensor:
    """The whole (1, C, H, W) `image` resampled to `size` (height, width) with the same filter, on the host.

    Block by block through a `Canvas`, so that no matrix larger than a block's is ever made. Unlike torch's
    own antialiased bicubic, right for outputs 1 pixel wide too."""
    height, width = image.shape[-2:]
    canvas = Canvas((height, width), size, channels=image.shape[1])
    for top in range(0, height, block):
        for left in range(0, width, block):
            canvas.add(top, left, image[..., top : top + block, left : left + block])
    return canvas.image
