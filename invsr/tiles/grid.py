"""Where the tiles of an image go: spans along each axis, and the padding that makes the sides fit.

All sizes here are in low-resolution (input) pixels. Tiles have sides that are multiples of what the
networks need (`multiple`, 16 for SD-Turbo) and start on even pixels (the latent grid is half the input's).
Along each axis there are full tiles at a stride of `tile - overlap`, then one last tile just large enough
to reach the end, so the extra work is the overlaps plus at most one rounding per axis, where the
reference implementation's half-tile stride costs about 4x the image.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from invsr.wire.contract import DEFAULT_OVERLAP, DEFAULT_TILE  # noqa: F401  (128: 512 x 512 output pixels)
from invsr.wire.contract import MODEL_SCALE as SCALE  # noqa: F401  (output pixels per input pixel)

from ..pixels import Colour


@dataclasses.dataclass(frozen=True)
class Span:
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclasses.dataclass(frozen=True)
class Box:
    """A rectangle of pixels: rows [top, top + height), columns [left, left + width)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def scaled(self, factor: int) -> Box:
        """The same rectangle on a grid `factor` times finer (say, in output pixels)."""
        return Box(factor * self.top, factor * self.left, factor * self.height, factor * self.width)

    def of(self, x: torch.Tensor) -> torch.Tensor:
        """This rectangle of the (..., H, W) tensor `x` (a view)."""
        return x[..., self.top : self.bottom, self.left : self.right]


def plan_axis(length: int, tile: int, overlap: int, multiple: int, uniform: bool = False) -> list[Span]:
    """Spans covering [0, length) with neighbours overlapping by at least `overlap` pixels.

    `length` and `tile` must be multiples of `multiple`; `overlap` is rounded up to even. `uniform`
    makes every span a full tile (for compiled networks, which run fastest on one shape): as many as
    the overlap needs, spread evenly from one end to the other, so the overlaps share the slack.
    """
    overlap += overlap % 2
    if length <= tile:
        return [Span(0, length)]
    stride = tile - overlap
    count = math.ceil((length - overlap) / stride)
    if uniform:  # starts on even pixels, the last one at length - tile (both are multiples of 16)
        return [Span(2 * round(i * (length - tile) / (2 * (count - 1))), tile) for i in range(count)]
    spans = [Span(i * stride, tile) for i in range(count - 1)]
    rest = length - spans[-1].end  # not yet covered
    last = min(tile, _round_up(rest + overlap, multiple))
    return spans + [Span(length - last, last)]


def pad_for_networks(x: torch.Tensor, multiple: int, min_side: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """`x` (..., H, W) padded for the networks, and the (top, left) of the image inside the result.

    As the reference implementation pads: a side shorter than `min_side` (the noise predictor's training
    size, or a smaller tile) is padded to it, centred and mirrored (`pad_centred`); then every side is
    padded at its far end to a multiple of `multiple` (`pad_to_multiple`). The result is at most one tile
    larger along each short side."""
    x, offset = pad_centred(x, min_side)
    return pad_to_multiple(x, multiple), offset


@dataclasses.dataclass(frozen=True)
class PaddedImage:
    """An image as `pad_for_networks` pads it, without the padded copy (12 bytes per input pixel that the
    whole job would hold where a side is not a multiple of 8: 540 MB for a 45 MP photo): each box is cut
    from the image itself through the padding's maps, which say for each row and column of the padded image
    the image's row and column it shows. The maps are the padding applied to the pixels' coordinates (rows
    and columns are padded each on their own), so a cut has the very values of the padded copy's."""

    pixels: Colour  # (1, 3, H, W), not padded
    rows: torch.Tensor  # (H',) for each row of the padded image, the row of `pixels` it shows
    cols: torch.Tensor  # (W',)
    offset: tuple[int, int]  # (top, left) of the image in the padded one

    @classmethod
    def of(cls, x: torch.Tensor | Colour, multiple: int, min_side: int = 0) -> PaddedImage:
        """`x`: a float tensor (1, 3, H, W) in [0, 1], or the colour kept in the input's pixel type."""
        height, width = x.shape[-2:]
        rows, (top, _) = pad_for_networks(
            torch.arange(height, dtype=torch.float64).view(1, 1, height, 1), multiple, min_side
        )
        cols, (_, left) = pad_for_networks(
            torch.arange(width, dtype=torch.float64).view(1, 1, 1, width), multiple, min_side
        )
        return cls(Colour.of(x), rows[0, 0, :, 0].long(), cols[0, 0, 0, :].long(), (top, left))

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.pixels.shape[:-2], len(self.rows), len(self.cols))

    def cut(self, box: Box) -> torch.Tensor:
        """The `box` of the padded image (a new float32 tensor)."""
        return self.pixels.take(self.rows[box.top : box.bottom], self.cols[box.left : box.right])


def pad_centred(x: torch.Tensor, min_side: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Sides shorter than `min_side` padded to it, half before and half after (the extra pixel after).

    Mirroring cannot pad more than the side has less one pixel, so it is repeated, as the reference does,
    on the grown image until the side is long enough; a 1-pixel side, which cannot be mirrored at all (the
    reference never ends there), repeats its pixel instead."""
    top = left = 0
    while True:
        (up, down), (before, after) = (_centred_pads(side, min_side) for side in x.shape[-2:])
        if not (up or down or before or after):
            return x, (top, left)
        if before or after:
            x = F.pad(x, (before, after, 0, 0), mode="reflect" if x.shape[-1] > 1 else "replicate")
        if up or down:
            x = F.pad(x, (0, 0, up, down), mode="reflect" if x.shape[-2] > 1 else "replicate")
        top, left = top + up, left + before


def _centred_pads(side: int, min_side: int) -> tuple[int, int]:
    """One step's (before, after) padding of a side towards `min_side`."""
    if side >= min_side:
        return 0, 0
    if side == 1:
        return (min_side - 1) // 2, min_side - 1 - (min_side - 1) // 2
    before = min((min_side - side) // 2, side - 1)
    return before, min(min_side - side - before, side - 1)


def pad_to_multiple(x: torch.Tensor, multiple: int, min_side: int = 0) -> torch.Tensor:
    """Pad right and bottom to multiples of `multiple` (and to at least `min_side`, a multiple of it):
    mirrored where the side is long enough, else repeating the edge (mirroring cannot pad more than
    the side has, say on a 1-pixel side)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = max(-height % multiple, min_side - height), max(-width % multiple, min_side - width)
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect" if pad_w < width else "replicate")
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect" if pad_h < height else "replicate")
    return x


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
