"""The tile engine: any image size through the x4 networks, in bounded device memory, without seams.

grid.py         where tiles go along each axis; padding
blend.py        how overlapping tiles are weighted
plan.py         the tiles of one image, with the coordinates of everything each one reads
noise.py        the image's noise draws, made again row by row as its tiles need them
batch.py        one batch of tiles through the sampler and the colour fix (a pure function)
accumulator.py  tile outputs, in any order, into the result at the requested size
settings.py     tile size, overlap and batch for a job
driver.py       one image on one device: batches, out-of-memory fallback, progress
"""

from .accumulator import TileAccumulator
from .batch import TileRecipe, compute_batch
from .driver import TiledResult, TileDriver
from .grid import DEFAULT_OVERLAP, DEFAULT_TILE, SCALE
from .plan import TilePlan
from .settings import TileSettings, choose_settings

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "SCALE",
    "TileAccumulator",
    "TileDriver",
    "TilePlan",
    "TileRecipe",
    "TileSettings",
    "TiledResult",
    "choose_settings",
    "compute_batch",
]
