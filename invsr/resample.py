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


class Canvas:
    """The (1, C, H, W) output, accumulated from weighted x4 tiles placed at x4 coordinates."""

    def __init__(self, x4_size: tuple[int, int], out_size: tuple[int, int], channels: int = 3):
        self.image = torch.zeros(1, channels, *out_size)
        same = tuple(x4_size) == tuple(out_size)
        self.rows = None if same else AxisResampler.between(x4_size[0], out_size[0])
        self.cols = None if same else AxisResampler.between(x4_size[1], out_size[1])

    def add(self, y: int, x: int, values: torch.Tensor) -> None:
        """Add (1, C, h, w) `values` whose top left is at (y, x) of the x4 image. They are resampled on
        their own device (a GPU does it in no time), and only the result comes to the host."""
        top, left = y, x
        if self.rows is not None:
            rows, top = self.rows.matrix(y, values.shape[-2], values.device)
            cols, left = self.cols.matrix(x, values.shape[-1], values.device)
            values = rows @ values @ cols.T
        h, w = values.shape[-2:]
        self.image[..., top : top + h, left : left + w].add_(values.cpu())


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
