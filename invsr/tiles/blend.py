"""How overlapping tiles are weighted, so that their sum has no seams.

Weights ramp smoothly from 0 to 1 across each overlap (and only there: a tile side on the image border
keeps full weight), so every output pixel is a convex mix of at most two tiles per axis. Weights are
separable: one 1-D weight per axis, in output pixels, their product the tile's 2-D weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .grid import Span

AxisWeights = Callable[[list[Span], int, int], torch.Tensor]  # (spans, index, scale) -> weights of span `index`


def _ramp(length: int) -> torch.Tensor:
    """Weights rising smoothly from near 0 to near 1 over `length` pixels (a raised cosine)."""
    position = (torch.arange(length, dtype=torch.float32) + 0.5) / length
    return 0.5 - 0.5 * torch.cos(math.pi * position)


def ramp_weights(spans: list[Span], index: int, scale: int) -> torch.Tensor:
    """1-D weights of span `index` in output pixels (`scale` per input pixel), ramping across its overlaps."""
    span = spans[index]
    weights = torch.ones(span.size * scale)
    rise = (spans[index - 1].end - span.start) * scale if index > 0 else 0
    fall = (span.end - spans[index + 1].start) * scale if index + 1 < len(spans) else 0
    if rise:  # across the overlap with the previous span
        weights[:rise] = _ramp(rise)
    if fall:  # across the overlap with the next span
        weights[-fall:] = torch.minimum(weights[-fall:], _ramp(fall).flip(0))
    return weights


class AxisBlend:
    """One axis's weights, divided by their sum over all spans, so that they sum to 1 at every pixel
    (the ramps nearly do; the division makes it exact, and makes any `weights` a partition of unity)."""

    def __init__(self, spans: list[Span], scale: int, weights: AxisWeights = ramp_weights):
        self.spans, self.scale, self.weights = spans, scale, weights
        total = torch.zeros(scale * spans[-1].end)
        for index, span in enumerate(spans):
            total[scale * span.start : scale * span.end] += weights(spans, index, scale)
        self.total = total

    def of(self, index: int, start: int, size: int) -> torch.Tensor:
        """The normalised weights of `size` output pixels of span `index` from its pixel `start` (the part
        inside the image)."""
        first = self.scale * self.spans[index].start + start
        return self.weights(self.spans, index, self.scale)[start : start + size] / self.total[first : first + size]
