"""The array contract between callers and the model: what pixels we accept and how they come back.

In: an array of shape (H, W) or (H, W, C) with C from 1 to 4 (gray, gray + alpha, RGB, RGBA), of dtype
uint8, uint16 or float32 (float values finite, of any size). Out: the same channel layout and dtype at the
new size. Colour goes through the model as RGB in [0, 1] float32; alpha is resized on its own (see
`resize_alpha`). Nothing is quantised on the way: a 16-bit input keeps 16-bit precision until the final
rounding.

Float colour may lie outside [0, 1]: highlights of linear light above 1, out-of-gamut colours below 0.
The model sees the image clipped to [0, 1]; what lies outside, the excess x - clip(x, 0, 1), is resampled
on its own from the input size straight to the output size (resample.py's bicubic filter) and added to
the model's result, so highlights and negative values survive and pixels in range get the model's
detail. Float alpha is clipped to [0, 1].
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidImage
from .resample import AxisResampler, resize

_MAXIMA = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}
LUMA = (0.299, 0.587, 0.114)  # BT.601, to turn the model's RGB back into gray
_BAND_ROWS = 256
_EXCESS_BLOCK = 256  # input pixels per side of a block of excess resampled at once
_RESIZE_BLOCK = 512  # resample.resize's block, which resize_alpha resizes alpha with


@dataclasses.dataclass(frozen=True)
class Colour:
    """The colour the networks see, (1, 3, H, W) in [0, 1] float32, kept in the input's own pixel type: 8-bit
    RGB holds 3 bytes a pixel for the whole job, not float32's 12 (135 MB for a 45 MP photo, not 540). Each
    tile is made float as it is cut (`take`), with the values and the memory layout of the whole float tensor
    (`float`)."""

    values: torch.Tensor  # (1, 3, H, W): float32 as it is; or uint8, or int16 holding uint16's bits
    maximum: float | None  # what an integer value is divided by (None: float32 values)
    layout: torch.memory_format  # the float tensor's, which the networks' arithmetic follows (1 x 1 images)

    @classmethod
    def of(cls, x: torch.Tensor | Colour) -> Colour:
        """`x` itself, or a float tensor (1, 3, H, W) in [0, 1] as it is."""
        return x if isinstance(x, Colour) else cls(x, None, _layout(x))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def take(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The pixels at rows `rows` and columns `cols` (index tensors), float32 (1, 3, len(rows), len(cols))."""
        top, left = int(rows.min()), int(cols.min())  # only the rectangle they span is read
        within = self.values[..., top : int(rows.max()) + 1, left : int(cols.max()) + 1]
        cut = within.index_select(-2, rows - top).index_select(-1, cols - left)
        if self.maximum is not None:
            cut = _unsigned(cut).float() / self.maximum
        return cut.contiguous(memory_format=self.layout)

    def float(self) -> torch.Tensor:
        """The whole, float32: a new tensor of 12 bytes a pixel for integer pixels, for what needs it whole."""
        height, width = self.shape[-2:]
        return self.take(torch.arange(height), torch.arange(width))


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory layout that padding `x` gives (torch suggests it from x's strides): channels last for a
    1 x 1 image made from an H x W x C array. Convolutions round differently in each, so tiles keep it."""
    probe = F.pad(x[..., :1, :1], (0, 1, 0, 1), mode="replicate")
    return torch.contiguous_format if probe.is_contiguous() else torch.channels_last


def _unsigned(values: torch.Tensor) -> torch.Tensor:
    """uint16 pixels kept as int16 (whose indexing every torch has) back to their values, as int32."""
    return values.to(torch.int32).bitwise_and_(0xFFFF) if values.dtype == torch.int16 else values


@dataclasses.dataclass(frozen=True)
class Pixels:
    """An image split for the model: its `colour` (1, 3, H, W) and optional `alpha` (1, 1, H, W), float32 in
    [0, 1], and `excess` (1, 3, H, W), what the colour of a float input had beyond [0, 1] (None where
    nothing)."""

    colour: Colour
    alpha: torch.Tensor | None
    gray: bool
    dtype: np.dtype
    two_dimensional: bool  # the input was (H, W), not (H, W, 1)
    excess: torch.Tensor | None = None

    @property
    def channels(self) -> int:
        return (1 if self.gray else 3) + (self.alpha is not None)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.colour.shape[-2:]

    @classmethod
    def from_array(cls, image: np.ndarray) -> Pixels:
        array = _validated(image)
        two_dimensional = array.ndim == 2
        array = array[:, :, None] if two_dimensional else array
        channels = array.shape[2]
        gray = channels <= 2
        alpha = None
        if channels in (2, 4):
            alpha = (torch.from_numpy(array[:, :, -1].astype(np.float32)) / _MAXIMA[array.dtype]).clamp(0, 1)
            alpha = alpha[None, None]
        if array.dtype == np.float32:
            colour, excess = _float_colour(array, gray)
            return cls(Colour.of(colour), alpha, gray, array.dtype, two_dimensional, excess)
        return cls(_stored_colour(array, gray), alpha, gray, array.dtype, two_dimensional)

    def to_array(self, rgb: torch.Tensor, alpha: torch.Tensor | None) -> np.ndarray:
        """Assemble results (float, on the host) into this image's channel layout and dtype: the model's
        colour clipped to [0, 1], plus this image's excess resampled (floats are not clipped after that).

        `rgb` is used up: clipped and added to in place. Works in bands of rows, so that besides the
        result only a band's worth of temporaries exists.
        """
        rgb.clamp_(0, 1)
        if self.excess is not None:
            add_resampled(rgb, self.excess)
        color = rgb
        if self.gray:
            weights = torch.tensor(LUMA, dtype=rgb.dtype).view(1, 3, 1, 1)
            color = (rgb * weights).sum(dim=1, keepdim=True)
        planes = [color] if alpha is None else [color, alpha]
        height, width = color.shape[-2:]
        out = np.empty((height, width, sum(p.shape[1] for p in planes)), dtype=self.dtype)
        for top in range(0, height, _BAND_ROWS):
            band = torch.cat([p[0, :, top : top + _BAND_ROWS] for p in planes]).float()
            out[top : top + _BAND_ROWS] = _quantized(band.permute(1, 2, 0).numpy(), self.dtype)
        return out[:, :, 0] if self.two_dimensional else out


def _colour_values(array: np.ndarray, gray: bool) -> torch.Tensor:
    """(1, 3, H, W) of an H x W x C array (a copy, so that the caller's array stays theirs, in its own type):
    its first three channels, or its first repeated (a view) for gray."""
    values = torch.from_numpy(np.array(array[:, :, :1] if gray else array[:, :, :3]))
    values = values.permute(2, 0, 1)[None]
    return values.expand(-1, 3, -1, -1) if gray else values


def _float_colour(array: np.ndarray, gray: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A float32 array's colour clipped to [0, 1] (a copy), and what it had beyond (None where nothing)."""
    colour = _colour_values(array, gray)
    excess = None
    if bool(((colour < 0) | (colour > 1)).any()):
        clipped = colour.clamp(0, 1)
        excess, colour = colour - clipped, clipped
    return colour.contiguous(), excess


def _stored_colour(array: np.ndarray, gray: bool) -> Colour:
    """An 8- or 16-bit array's colour in its own type, its layout that of the float tensor its values would
    make: asked of torch on the array's top left 2 x 2 pixels, which have what decides it (a side of 1)."""
    values = _colour_values(array.view(np.int16) if array.dtype == np.uint16 else array, gray)
    corner = _colour_values(array[:2, :2].astype(np.float32), gray).contiguous()
    return Colour(values, _MAXIMA[array.dtype], _layout(corner))


class BandFinisher:
    """`Pixels.to_array` band by band: bands of the model's colour (1, 3, rows, W), top to bottom, in; the
    same rows of the result out, in this image's channel layout and dtype, byte for byte what `to_array` of
    the whole gives. Alpha and the excess are resampled by blocks of rows as the bands need them (`_BlockRows`),
    so that none of them exists at the output's size either.

    `block` finishes any rectangle of rows and columns, in any order (the tile accumulator finishes columns as
    soon as no tile still to come reaches them); `done_above` says which rows will not be asked for again."""

    def __init__(self, pixels: Pixels, out_size: tuple[int, int]):
        self.pixels, self.out_size = pixels, tuple(out_size)
        self.alpha = None if pixels.alpha is None else _AlphaRows(pixels.alpha, self.out_size)
        self.excess = None if pixels.excess is None else _BlockRows(pixels.excess, self.out_size, _EXCESS_BLOCK)
        self.next_row = 0
        itemsize = np.dtype(pixels.dtype).itemsize
        self.pixel_bytes = pixels.channels * itemsize  # of the result, per pixel

    def __call__(self, top: int, rgb: torch.Tensor) -> np.ndarray:
        """The result's rows [top, top + rows) from their colour `rgb` (used up); `top` follows the last band."""
        if top != self.next_row:
            raise ValueError(f"bands must come top to bottom: expected row {self.next_row}, got {top}")
        self.next_row = top + rgb.shape[-2]
        rows = self.block(top, 0, rgb)
        self.done_above(self.next_row)
        return rows

    def block(self, top: int, left: int, rgb: torch.Tensor) -> np.ndarray:
        """The result's pixels whose colour `rgb` (1, 3, rows, w) is (used up), at (`top`, `left`): (rows, w[, C])."""
        rows, width = rgb.shape[-2:]
        rgb.clamp_(0, 1)
        if self.excess is not None:
            self.excess.add_to(rgb, top, left)
        color = rgb
        if self.pixels.gray:
            weights = torch.tensor(LUMA, dtype=rgb.dtype).view(1, 3, 1, 1)
            color = (rgb * weights).sum(dim=1, keepdim=True)
        planes = [color] if self.alpha is None else [color, self.alpha.rows(top, top + rows, left, left + width)]
        band = planes[0][0] if len(planes) == 1 else torch.cat([p[0] for p in planes])
        out = _quantized(band.float().permute(1, 2, 0).numpy(), self.pixels.dtype)
        return out[:, :, 0] if self.pixels.two_dimensional else out

    def done_above(self, row: int) -> None:
        """No rows above `row` will be asked for again: what was kept for them can go."""
        for kept in (self.excess, None if self.alpha is None else self.alpha.resized):
            if kept is not None:
                kept.forget_above(row)


class _BlockRows:
    """`source` (1, C, h, w) resampled to `out_size` block by block in raster order, as `add_resampled` and
    `resample.resize` do, handed out by rectangles: each block's values are computed once, kept while
    rectangles may still need them (until `forget_above`: a row of blocks or two), and added to a rectangle
    in the same order as to the whole."""

    def __init__(self, source: torch.Tensor, out_size: tuple[int, int], block: int, skip_zero: bool = True):
        self.source, self.block, self.skip_zero = source, block, skip_zero
        (height, width), (out_height, out_width) = source.shape[-2:], out_size
        self.same = (height, width) == (out_height, out_width) and not skip_zero  # resample.resize's shortcut
        self.rows = AxisResampler.between(height, out_height)
        self.cols = AxisResampler.between(width, out_width)
        self.next_y = 0  # the next row of blocks to compute
        self.kept: list[tuple[int, int, torch.Tensor]] = []  # (top, left, values) in raster order

    def add_to(self, target: torch.Tensor, top: int, left: int = 0) -> None:
        """Add the resampled source's pixels under `target` (1, C, rows, w), placed at (top, left), to it in place."""
        bottom, right = top + target.shape[-2], left + target.shape[-1]
        self._compute_until(bottom)
        for y, x, values in self.kept:
            first, last = max(top, y), min(bottom, y + values.shape[-2])
            begin, end = max(left, x), min(right, x + values.shape[-1])
            if first < last and begin < end:
                part = values[..., first - y : last - y, begin - x : end - x]
                target[..., first - top : last - top, begin - left : end - left] += part.to(target.dtype)

    def forget_above(self, row: int) -> None:
        self.kept = [kept for kept in self.kept if kept[0] + kept[2].shape[-2] > row]

    def _compute_until(self, bottom: int) -> None:
        """Compute the rows of blocks that reach output rows above `bottom`."""
        height, width = self.source.shape[-2:]
        while self.next_y < height and self._first_row(self.next_y) < bottom:
            y, self.next_y = self.next_y, self.next_y + self.block
            for x in range(0, width, self.block):
                block = self.source[..., y : y + self.block, x : x + self.block]
                if self.skip_zero and not bool(block.any()):
                    continue
                if self.same:
                    self.kept.append((y, x, block))
                    continue
                row_matrix, top = self.rows.matrix(y, block.shape[-2], block.device)
                col_matrix, left = self.cols.matrix(x, block.shape[-1], block.device)
                self.kept.append((top, left, row_matrix @ block @ col_matrix.T))

    def _first_row(self, y: int) -> int:
        if self.same:
            return y
        return self.rows.reaching(y, min(y + self.block, self.source.shape[-2]))[0]


class _AlphaRows:
    """`resize_alpha` by rectangles: the resized plane's pixels, with the source's solid and clear pixels exact."""

    def __init__(self, alpha: torch.Tensor, out_size: tuple[int, int]):
        self.alpha = alpha
        self.resized = _BlockRows(alpha, out_size, _RESIZE_BLOCK, skip_zero=False)
        self.solid = F.max_pool2d(1 - alpha, 3, stride=1, padding=1) == 0
        self.clear = F.max_pool2d(alpha, 3, stride=1, padding=1) == 0
        # nearest-exact's source row and column of each output pixel, from torch's own rule
        self.source_rows = _nearest_sources(alpha.shape[-2], out_size[0])
        self.source_cols = _nearest_sources(alpha.shape[-1], out_size[1])

    def rows(self, top: int, bottom: int, left: int = 0, right: int | None = None) -> torch.Tensor:
        """Rows [top, bottom) of the resized plane, columns [left, right) (None: to the last)."""
        columns = self.source_cols[left:right]
        resized = torch.zeros(1, 1, bottom - top, columns.numel())
        self.resized.add_to(resized, top, left)
        resized = resized.clamp(0, 1)
        index = self.source_rows[top:bottom, None], columns[None, :]
        nearest = self.alpha[0, 0][index][None, None]
        solid = self.solid[0, 0][index][None, None]
        clear = self.clear[0, 0][index][None, None]
        resized = torch.where(solid, nearest, resized)
        return torch.where(clear, nearest, resized)


def _nearest_sources(size: int, out_size: int) -> torch.Tensor:
    """The source index of each of `out_size` pixels along an axis, as F.interpolate's nearest-exact picks."""
    positions = torch.arange(size, dtype=torch.float64).view(1, 1, size)
    return F.interpolate(positions, size=out_size, mode="nearest-exact")[0, 0].long()


def _quantized(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.float32:
        return values
    maximum = _MAXIMA[dtype]
    return np.rint(np.clip(values, 0, 1) * maximum).astype(dtype)


def add_resampled(target: torch.Tensor, excess: torch.Tensor) -> None:
    """Add `excess` (1, C, h, w), resampled to the size of `target` (1, C, H, W) with resample.py's
    filter, to `target` in place. Block by block: the filter is linear, so the resampled blocks sum to the
    resampled whole; blocks that are all zero (most, in a photo with a few highlights) cost nothing."""
    (height, width), (out_height, out_width) = excess.shape[-2:], target.shape[-2:]
    rows, cols = AxisResampler.between(height, out_height), AxisResampler.between(width, out_width)
    for y in range(0, height, _EXCESS_BLOCK):
        for x in range(0, width, _EXCESS_BLOCK):
            block = excess[..., y : y + _EXCESS_BLOCK, x : x + _EXCESS_BLOCK]
            if not bool(block.any()):
                continue
            row_matrix, top = rows.matrix(y, block.shape[-2], block.device)
            col_matrix, left = cols.matrix(x, block.shape[-1], block.device)
            values = row_matrix @ block @ col_matrix.T
            target[..., top : top + values.shape[-2], left : left + values.shape[-1]] += values.to(target.dtype)


def _validated(image) -> np.ndarray:
    """The image unchanged, or an InvalidImage that says what is wrong and what is accepted."""
    if not isinstance(image, np.ndarray):
        raise InvalidImage(f"expected a numpy array of pixels, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise InvalidImage(f"expected an array of shape (H, W) or (H, W, C), got shape {image.shape}")
    height, width, channels = image.shape if image.ndim == 3 else (*image.shape, 1)
    if height == 0 or width == 0:
        raise InvalidImage(f"the image is empty ({width} x {height} pixels)")
    if not 1 <= channels <= 4:
        raise InvalidImage(f"expected 1 to 4 channels (gray, gray+alpha, RGB, RGBA), got {channels}")
    if image.dtype not in _MAXIMA:
        raise InvalidImage(f"expected pixels of dtype uint8, uint16 or float32, got {image.dtype}")
    if image.dtype == np.float32 and not np.isfinite(image).all():
        bad = ~np.isfinite(image)
        count = int(bad.sum())
        y, x = (int(i) for i in np.argwhere(bad)[0][:2])
        raise InvalidImage.non_finite(count, x, y)
    return image


def resize_alpha(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an alpha plane with the colour's filter (resample.py: antialiased bicubic, also right for
    outputs 1 pixel wide, where torch's is not), keeping fully opaque and fully transparent exact."""
    resized = resize(alpha, size).clamp(0, 1)
    # Bicubic overshoot near edges would make interior pixels 0.999 or 0.001; snap what the source had exact.
    nearest = F.interpolate(alpha, size=size, mode="nearest-exact")
    solid = F.max_pool2d(1 - alpha, 3, stride=1, padding=1) == 0  # source pixel and its neighbours opaque
    clear = F.max_pool2d(alpha, 3, stride=1, padding=1) == 0  # source pixel and its neighbours transparent
    resized = torch.where(F.interpolate(solid.float(), size=size, mode="nearest-exact") > 0, nearest, resized)
    return torch.where(F.interpolate(clear.float(), size=size, mode="nearest-exact") > 0, nearest, resized)


def fill_transparent(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Replace the colour under fully transparent pixels by the colour of the nearest visible ones.

    Editors leave anything there (often black or white); the model and the resamplers would smear it into
    the visible edge as a halo. Pull-push: average the alpha-weighted colour down a pyramid until every
    cell sees some visible pixel, then fill the holes from the coarsest level up.
    """
    if not has_holes(alpha):
        return rgb
    levels = [(rgb * alpha, alpha)]
    while max(levels[-1][1].shape[-2:]) > 1:
        color, weight = levels[-1]
        kernel = tuple(2 if side > 1 else 1 for side in weight.shape[-2:])
        levels.append((F.avg_pool2d(color, kernel, ceil_mode=True), F.avg_pool2d(weight, kernel, ceil_mode=True)))
    filled = None
    for color, weight in reversed(levels):
        known = color / weight.clamp(min=1e-12)
        if filled is not None:
            coarse = F.interpolate(filled, size=color.shape[-2:], mode="bilinear", align_corners=False)
            known = torch.where(weight > 0, known, coarse)
        filled = known
    return torch.where(alpha > 0, rgb, filled)


def has_holes(alpha: torch.Tensor | None) -> bool:
    """Whether some pixels are fully transparent and some are not (what `fill_transparent` fills)."""
    return alpha is not None and not bool((alpha > 0).all()) and bool((alpha > 0).any())
