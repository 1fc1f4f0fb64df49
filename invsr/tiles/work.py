"""One image's tiles, prepared once, computed anywhere: the seam between planning and computing.

`TileWork.prepare` pads the input as the networks need it (maps of the padding, cut per tile), draws the
image's noise (keeping what draws a tile's rows of it again, noise.py) and plans its tiles; `inputs` cuts
one batch's pixels from them. What computes a batch (batch.compute_batch) needs only those inputs and the
models, so batches can be computed on this device (driver.py) or on other processes and machines
(invsr_server.cluster), and accumulated here in canonical order (accumulator.py) with the same result.

Preparing needs a few facts about the models, not the models themselves (`ModelGeometry`), so that a
front without a device can plan for workers that have one.
"""

from __future__ import annotations

import dataclasses

import torch

from ..pixels import Colour
from ..sampling import Models
from .batch import BatchInputs, TileRecipe
from .grid import PaddedImage
from .noise import NoiseField
from .plan import TilePlan


@dataclasses.dataclass(frozen=True)
class ModelGeometry:
    """What planning an image needs to know of the models."""

    lr_multiple: int  # input sides must be multiples of this (Models.lr_multiple)
    sample_size: int  # the noise predictor's training size: shorter sides are padded to it
    latent_channels: int  # channels of each noise draw
    static_shapes: bool  # compiled networks: one shape for every tile and batch (driver.py)

    @classmethod
    def of(cls, models: Models, static_shapes: bool) -> ModelGeometry:
        config = models.noise_predictor.config
        return cls(models.lr_multiple, config.sample_size, config.latent_channels, static_shapes)

    def min_side(self, tile: int) -> int:
        """Shorter sides are padded to this: the noise predictor's training size, as the reference
        implementation pads them (or the tile, if smaller: its tiles are no larger anyway); compiled, the
        tile, so that the networks see one shape."""
        return tile if self.static_shapes else min(tile, self.sample_size)


@dataclasses.dataclass(frozen=True)
class TileWork:
    """The padded input, its noise and its plan: everything any batch of the image reads."""

    plan: TilePlan
    image: PaddedImage  # (1, 3, H', W') the input as padded, cut tile by tile
    noise: NoiseField  # the padded input's, drawn by rows as tiles need them
    recipe: TileRecipe
    static_shapes: bool

    @classmethod
    def prepare(
        cls, lr: torch.Tensor | Colour, geometry: ModelGeometry, recipe: TileRecipe, seed: int, tile: int, overlap: int
    ) -> TileWork:
        """The work for `lr` (1, 3, H, W) in [0, 1] (or kept in the input's pixel type, pixels.Colour) cut into
        `tile`-pixel tiles overlapping by `overlap`."""
        multiple = geometry.lr_multiple
        image = PaddedImage.of(lr, multiple, geometry.min_side(tile))
        noise = NoiseField(image.shape, geometry.latent_channels, seed)
        uniform = geometry.static_shapes
        plan = TilePlan.make(lr.shape[-2:], image.shape[-2:], tile, overlap, multiple, uniform, image.offset)
        return cls(plan, image, noise, recipe, uniform)

    def inputs(self, start: int, stop: int, batch: int) -> BatchInputs:
        """The pixels batch [start, stop) reads, filled to `batch` tiles for compiled networks."""
        return self.plan.inputs(self.image, self.noise, start, stop, fill_to=batch if self.static_shapes else 0)
