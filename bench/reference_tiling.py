"""The reference implementation's tiling scheme, rebuilt from its description (docs/METHOD.md) on our sampler,
so that both schemes are measured side by side: 128-pixel input tiles at a stride of 64 (half a tile),
fresh noise drawn for every tile, results blended after decoding with a separable Gaussian weight
(sigma 0.15 of the tile), and the colour fix applied to the blended whole. Sides shorter than a tile are
padded to it first, centred and mirrored, as the reference pads them (grid.pad_for_networks).
"""

from __future__ import annotations

import math

import torch

from invsr.color_fix import apply_color_fix, reference_for
from invsr.sampling import Noise, sample
from invsr.tiles.grid import Span, pad_for_networks

TILE, STRIDE, SIGMA = 128, 64, 0.15
SCALE = 4


def spans(length: int) -> list[Span]:
    if length <= TILE:
        return [Span(0, length)]
    starts = list(range(0, length - TILE + 1, STRIDE))
    if starts[-1] + TILE < length:
        starts.append(length - TILE)
    return [Span(s, TILE) for s in starts]


def gaussian(length: int) -> torch.Tensor:
    x = torch.arange(length, dtype=torch.float32)
    return torch.exp(-((x - (length - 1) / 2) ** 2) / (2 * (SIGMA * length) ** 2))


def upscale(models, device, lr: torch.Tensor, timesteps, seed: int, color_fix: str, timer, batch: int = 1):
    """x4 of `lr` (1, 3, H, W) on the host; returns (result, row spans, column spans)."""
    height, width = lr.shape[-2:]
    padded, (top, left) = pad_for_networks(lr, models.lr_multiple, TILE)
    rows, cols = spans(padded.shape[-2]), spans(padded.shape[-1])
    result = torch.zeros(1, 3, SCALE * padded.shape[-2], SCALE * padded.shape[-1])
    total = torch.zeros(1, 1, *result.shape[-2:])
    tiles = [(r, c) for r in rows for c in cols]
    for first in range(0, len(tiles), batch):
        group = tiles[first : first + batch]
        crops = torch.cat([padded[..., r.start : r.end, c.start : c.end] for r, c in group]).to(device)
        noise = Noise.draw(crops.shape, models.noise_predictor.config.latent_channels, seed + first)  # fresh per tile
        out = sample(
            models, crops, timesteps, Noise(noise.predictor.to(device), noise.encoder.to(device)), timer.stage
        ).cpu()
        for k, (r, c) in enumerate(group):
            weight = (gaussian(SCALE * r.size)[:, None] * gaussian(SCALE * c.size)[None, :])[None, None]
            y, x = SCALE * r.start, SCALE * c.start
            result[..., y : y + SCALE * r.size, x : x + SCALE * c.size] += out[k : k + 1] * weight
            total[..., y : y + SCALE * r.size, x : x + SCALE * c.size] += weight
    top, left = SCALE * top, SCALE * left
    result = (result / total)[..., top : top + SCALE * height, left : left + SCALE * width]
    with timer.stage("color_fix"):
        result = apply_color_fix(color_fix, result.to(device), reference_for(lr.to(device), result.shape[-2:])).cpu()
    return result, rows, cols


def work_ratio(rows: list[Span], cols: list[Span], height: int, width: int) -> float:
    return sum(r.size for r in rows) * sum(c.size for c in cols) / (height * width)


def tile_count(height: int, width: int, multiple: int = 16) -> int:
    pad = lambda n: math.ceil(n / multiple) * multiple  # noqa: E731
    return len(spans(pad(height))) * len(spans(pad(width)))
