"""Tilings that production does not use, kept to show what its choices are for: hard cuts in the middle
of each overlap instead of blending, and fresh noise for every batch (as the reference implementation
draws it) instead of one draw for the image cut per tile. Both are assembled from the tile engine's parts
(invsr/tiles/), on one device, without its out-of-memory fallback or progress.
"""

from __future__ import annotations

import dataclasses

import torch

from invsr.sampling import Noise
from invsr.tiles import TileAccumulator, TilePlan, TileRecipe, TileSettings, compute_batch
from invsr.tiles.blend import ramp_weights
from invsr.tiles.grid import PaddedImage, Span


def hard_cut_weights(spans: list[Span], index: int, scale: int) -> torch.Tensor:
    """1-D weights of span `index` in output pixels: 1 from the middle of one overlap to the middle of
    the next, else 0."""
    span = spans[index]
    weights = torch.zeros(span.size * scale)
    begin = (span.start + spans[index - 1].end) * scale // 2 if index > 0 else span.start * scale
    end = (span.end + spans[index + 1].start) * scale // 2 if index + 1 < len(spans) else span.end * scale
    weights[begin - span.start * scale : end - span.start * scale] = 1
    return weights


def upscale(
    models,
    device,
    lr: torch.Tensor,
    recipe: TileRecipe,
    seed: int,
    settings: TileSettings,
    timer,
    hard_cut: bool = False,
    fresh_noise: bool = False,
) -> tuple[torch.Tensor, TilePlan]:
    """x4 of `lr` (1, 3, H, W) on the host, and the plan it was made with."""
    channels = models.noise_predictor.config.latent_channels
    image = PaddedImage.of(lr, models.lr_multiple)
    noise = Noise.draw(image.shape, channels, seed)
    plan = TilePlan.make(lr.shape[-2:], image.shape[-2:], settings.tile, settings.overlap, models.lr_multiple)
    accumulator = TileAccumulator(plan, weights=hard_cut_weights if hard_cut else ramp_weights)
    for number, (start, stop) in enumerate(plan.batches(settings.batch), start=1):
        inputs = plan.inputs(image, noise, start, stop)
        if fresh_noise:  # a draw of the batch's own, seeded with the image's seed plus the batch's number
            inputs = dataclasses.replace(inputs, noise=Noise.draw(inputs.lr.shape, channels, seed + number))
        for position, output in zip(range(start, stop), compute_batch(models, device, recipe, inputs, timer.stage)):
            accumulator.add(position, output)
    return accumulator.result(), plan
