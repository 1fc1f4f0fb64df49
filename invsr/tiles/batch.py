"""One batch of tiles through the sampler and the colour fix: tensors in, tile outputs out.

`compute_batch` is a function of its inputs and the models only: it is given every pixel it reads (the
tiles' input crops, their crops of the image's noise, and the input pixels their colour-fix references
are made from), never the whole image or a plan, so it can run anywhere the models are: another thread,
another device, another process. The plan (plan.py) cuts these inputs from the image.

Each tile is colour-fixed against its own part of the whole-image reference (the input resized x4),
which cancels the tone every tile's GroupNorm statistics would give it, so that tiles agree before they
are blended. A tile's reference is resized from the input pixels around it, which gives exactly the
whole reference's pixels there, without the whole reference ever being made.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from ..color_fix import apply_color_fix, reference_for
from ..sampling import Models, Noise, sample
from .grid import SCALE, Box


@dataclasses.dataclass(frozen=True)
class ColorReference:
    """What one tile's output is cut to, and what its colour-fix reference is made from."""

    around: torch.Tensor  # (1, 3, h, w) in [0, 1]: the input pixels the reference of the tile depends on
    visible: Box  # the tile's part inside the image, within `around` (input pixels)
    cut: Box  # the same part within the tile's crop: the part of its output that is kept (x4)


@dataclasses.dataclass(frozen=True)
class BatchInputs:
    """Everything a batch reads. Its tiles are of one size; a batch for compiled networks may hold
    repeats of its last tile to fill it, which have no reference and no output."""

    lr: torch.Tensor  # (N, 3, h, w) in [0, 1]: the tiles' input crops, padding included
    noise: Noise  # the tiles' crops of the image's two noise draws, (N, 4, h/2, w/2) each
    references: tuple[ColorReference, ...]  # one per tile wanted back, in the order of `lr`


@dataclasses.dataclass(frozen=True)
class TileRecipe:
    """How every tile of an image is made."""

    timesteps: tuple[int, ...]  # validated already (schedule.resolve_timesteps)
    color_fix: str  # wavelet, ycbcr or none


def _no_stage(name: str):
    return contextlib.nullcontext()


def compute_batch(
    models: Models, device: torch.device, recipe: TileRecipe, inputs: BatchInputs, stage=_no_stage
) -> list[torch.Tensor]:
    """The x4 outputs (1, 3, 4 h', 4 w') of the tiles with a reference, colour-fixed and cut to their
    visible parts, on `device`. `stage(name)` is a context manager around each stage (sampling.sample)."""
    lr = inputs.lr.to(device)
    noise = Noise(inputs.noise.predictor.to(device), inputs.noise.encoder.to(device))
    sr = sample(models, lr, recipe.timesteps, noise, stage)
    fix = recipe.color_fix
    return [_color_fixed(sr[k : k + 1], reference, fix, stage) for k, reference in enumerate(inputs.references)]


def _color_fixed(sr: torch.Tensor, reference: ColorReference, method: str, stage) -> torch.Tensor:
    visible = reference.visible
    with stage("color_fix"):
        sr = reference.cut.scaled(SCALE).of(sr)
        height, width = reference.around.shape[-2:]
        around = reference_for(reference.around.to(sr.device), (SCALE * height, SCALE * width))
        return apply_color_fix(method, sr, visible.scaled(SCALE).of(around))
