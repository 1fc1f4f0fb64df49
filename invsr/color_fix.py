"""Colour correction of a super-resolved image against its low-resolution source (docs/METHOD.md, "Colour fix").

Diffusion decoders drift in tone; these keep the detail of the result and take the colours from the
input. The reference is built from the unpadded input resized to the output size, so it lines up with
the result pixel for pixel. Tensors are (N, 3, H, W) RGB in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invsr.wire.contract import COLOR_FIXES

from .errors import InvalidRequest

WAVELET_LEVELS = 5

# BT.601 full-range RGB <-> YCbCr.
_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)
# The reference converts with MATLAB's rgb2ycbcr (the same BT.601, in studio range: Y = (16 + 219 Y') / 255,
# Cb = (128 + 224 Cb') / 255) and clamps what it converted to [0, 1]. In full range that is Y' within
# [-16/219, 239/219] and chroma within [-128/224, 127/224]: only what bicubic overshoots far beyond [0, 1]
# is clipped (a level at saturated edges).
_STUDIO_RANGE = torch.tensor([[-16 / 219, 239 / 219], [-128 / 224, 127 / 224], [-128 / 224, 127 / 224]])


def reference_for(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The input resized (bicubic, antialiased) to the output's (height, width). Not clamped in RGB: bicubic
    overshoots [0, 1] at sharp edges, and the reference implementation keeps that (it clamps the fixed
    result, and `ycbcr` its studio-range YCbCr, as the fixes here do); clamping the RGB would shift the
    chroma there by up to 16 levels of 255."""
    return F.interpolate(lr.float(), size=size, mode="bicubic", antialias=True, align_corners=False)


def apply_color_fix(method: str, sr: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    if method == "wavelet":
        return wavelet_color_fix(sr, reference)
    if method == "ycbcr":
        return ycbcr_color_fix(sr, reference)
    if method == "none":
        return sr
    raise InvalidRequest(f"unknown colour fix {method!r}: use one of {', '.join(COLOR_FIXES)}")


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """The [1,2,1] x [1,2,1] / 16 blur with holes of `dilation` pixels, replicate-padded."""
    channels = x.shape[1]
    taps = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (taps[:, None] * taps[None, :] / 16).expand(channels, 1, 3, 3)
    padded = F.pad(x, (dilation,) * 4, mode="replicate")  # unlike reflection, works on 1-pixel images
    return F.conv2d(padded, kernel, groups=channels, dilation=dilation)


def wavelet_split(x: torch.Tensor, levels: int = WAVELET_LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) with high + low == x: `levels` dilated blurs (dilations 1, 2, 4, ...) peel off detail."""
    low = x
    for level in range(levels):
        low = _blur(low, 2**level)
    return x - low, low


def wavelet_color_fix(sr: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """High frequencies of the result plus low frequencies of the reference."""
    high, _ = wavelet_split(sr.float())
    _, low = wavelet_split(reference.float())
    return (high + low).clamp(0, 1)


def _convert(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(x), x)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    return _convert(x, _RGB_TO_YCBCR)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return _convert(x, _YCBCR_TO_RGB)


def _studio_clamped(ycbcr: torch.Tensor) -> torch.Tensor:
    """Full-range YCbCr clamped where the reference's studio-range values are clamped to [0, 1]."""
    limits = _STUDIO_RANGE.to(ycbcr)
    return torch.maximum(torch.minimum(ycbcr, limits[:, 1, None, None]), limits[:, 0, None, None])


def ycbcr_color_fix(sr: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Luma of the result with the chroma of the reference, each clamped as the reference clamps them."""
    luma = _studio_clamped(rgb_to_ycbcr(sr.float()))[:, :1]
    chroma = _studio_clamped(rgb_to_ycbcr(reference.float()))[:, 1:]
    return ycbcr_to_rgb(torch.cat([luma, chroma], dim=1)).clamp(0, 1)
