"""Tile size, overlap and batch for one job: as asked, or 'auto' from the memory the device has free.

Larger tiles cost more per pixel (the noise predictor's attention grows with the square of a tile's
area) and smaller ones overlap more, so 'auto' takes the default tile unless it does not fit. Batches
make a GPU faster per tile and cost memory; a CPU gains nothing from them.
"""

from __future__ import annotations

import dataclasses

import torch

from ..devices import free_memory
from ..errors import InvalidRequest
from .grid import DEFAULT_OVERLAP, DEFAULT_TILE, SCALE

TILE_SIZES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32)  # the fallback ladder, largest first
MIN_TILE = TILE_SIZES[-1]
# Batches of this many give most of the speed of much larger ones for a fraction of their memory
# (bench/gpu/run.py measures it): more is left to the user (--tile-batch).
MAX_AUTO_BATCH = 8
# Device bytes per output pixel of a tile batch, per byte of the compute dtype, above the weights
# (activations of the VAE at full resolution dominate). Measured by bench/gpu/run.py, with a margin;
# the out-of-memory fallback corrects a miss.
BYTES_PER_OUTPUT_PIXEL = 1300


@dataclasses.dataclass(frozen=True)
class TileSettings:
    tile: int
    overlap: int
    batch: int
    notices: tuple[str, ...] = ()  # what 'auto' chose other than its default, and why


def choose_settings(request, device: torch.device, dtype: torch.dtype, multiple: int) -> TileSettings:
    """Resolve 'auto' tile size and batch from the memory the device has free now. Explicit values are
    taken as they are (the request has checked that they fit together); see request.py."""
    tile = DEFAULT_TILE if request.tile == "auto" else request.tile
    if tile % multiple:
        raise InvalidRequest(f"tile must be a multiple of {multiple} for this model, got {tile}")
    overlap = DEFAULT_OVERLAP if request.overlap is None else request.overlap
    if 2 * overlap + multiple > tile and request.overlap is not None:
        raise InvalidRequest(
            f"overlap {overlap} is too large for {tile}-pixel tiles: keep 2 x overlap + {multiple} <= tile"
        )
    free = free_memory(device)
    per_tile = BYTES_PER_OUTPUT_PIXEL * torch.finfo(dtype).bits // 8
    notices = []
    if request.tile == "auto" and free is not None:
        least = MIN_TILE if request.overlap is None else 2 * request.overlap + multiple  # an asked overlap fits
        while per_tile * (SCALE * tile) ** 2 > free and (smaller := smaller_tile(tile, multiple)) and smaller >= least:
            tile = smaller
        if tile < DEFAULT_TILE:
            notices.append(
                f"tile auto: {tile} pixels, not {DEFAULT_TILE}: the device has {free / 1e9:.2g} GB free, and a "
                f"{DEFAULT_TILE}-pixel tile needs about {per_tile * (SCALE * DEFAULT_TILE) ** 2 / 1e9:.2g} GB"
            )
    if request.tile_batch != "auto":
        batch = request.tile_batch
    elif device.type == "cpu" or free is None:
        batch = 1  # a CPU gains nothing from batching
    else:
        batch = max(1, min(MAX_AUTO_BATCH, int(0.8 * free) // (per_tile * (SCALE * tile) ** 2)))
    if request.overlap is None:  # ours to choose: as much of the default as the tile allows
        overlap = min(overlap, (tile - multiple) // 2)
    return TileSettings(tile, overlap, batch, tuple(notices))


def smaller_tile(tile: int, multiple: int) -> int | None:
    """The next tile size down the fallback ladder that the networks take, or None below the last."""
    return next((size for size in TILE_SIZES if size < tile and size % multiple == 0), None)
