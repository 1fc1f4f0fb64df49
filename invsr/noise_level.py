"""`--steps auto`: measure how noisy and how blurry the input is, and pick the step count from that.

The paper's supplementary material advises one step for most inputs and for noisy ones (each further step
re-injects and amplifies what it takes for detail), and more steps mainly for clean but blurry inputs.

- Noise: Donoho and Johnstone's robust estimator (Biometrika 1994): sigma = median(|HH1|) / 0.6745 over
  the finest diagonal Haar wavelet coefficients, where image content is sparse and noise is not;
  measured per colour channel and averaged.
- Blur: Crete-Roffet et al.'s no-reference blur effect (SPIE 2007): blur the image again with an 11-pixel
  box and see how much of its pixel-to-pixel variation survives. 0 is sharp; 1 is as blurred as can be.

Thresholds were set on photos with known added blur and noise (tests/test_noise_level.py): originals
measure 0.15 to 0.34, a Gaussian blur of sigma 1 pixel 0.35 to 0.50, of sigma 2 pixels 0.59 to 0.68.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

NOISY_SIGMA = 3 / 255  # above this much noise: a single step
BLURRY = 0.5  # blur effect from here: 3 steps
SOFT = 0.4  # blur effect from here: 2 steps
MAD_TO_SIGMA = 0.6745  # median absolute deviation of a unit Gaussian
BLUR_BOX = 11  # the re-blur of Crete-Roffet et al.
MIN_SIDE = 16  # below this the measures mean little
MAX_SIDE = 1024  # larger inputs are measured on their central 1024 x 1024: same statistics, bounded cost


@dataclasses.dataclass(frozen=True)
class StepChoice:
    steps: int
    noise_sigma: float
    blur_effect: float
    reason: str


def estimate_noise_sigma(channel: torch.Tensor) -> float:
    """Standard deviation of white Gaussian noise in one (H, W) channel in [0, 1]."""
    h, w = channel.shape[-2] // 2 * 2, channel.shape[-1] // 2 * 2
    x = channel[..., :h, :w].double()
    diagonal = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    return float(diagonal.abs().median()) / MAD_TO_SIGMA if diagonal.numel() else 0.0


def blur_effect(gray: torch.Tensor) -> float:
    """Crete-Roffet blur effect of an (H, W) image: the larger of the vertical and horizontal measures."""
    x = gray.double()[None, None]
    box = torch.full((BLUR_BOX,), 1.0 / BLUR_BOX, dtype=x.dtype)
    half = BLUR_BOX // 2
    vertical = F.conv2d(F.pad(x, (0, 0, half, half), mode="replicate"), box.view(1, 1, -1, 1))
    horizontal = F.conv2d(F.pad(x, (half, half, 0, 0), mode="replicate"), box.view(1, 1, 1, -1))
    measures = []
    for dim, reblurred in ((-2, vertical), (-1, horizontal)):
        variation = x.diff(dim=dim).abs()
        kept = (variation - reblurred.diff(dim=dim).abs()).clamp(min=0)
        total = float(variation.sum())
        measures.append((total - float(kept.sum())) / total if total > 0 else 1.0)
    return max(measures)


def _central(image: torch.Tensor, side: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return image[..., top : top + side, left : left + side]


def choose_steps(rgb: torch.Tensor) -> StepChoice:
    """Pick 1 to 3 steps for a (1, 3, H, W) or (3, H, W) image in [0, 1]."""
    image = _central(rgb.reshape(-1, *rgb.shape[-2:]), MAX_SIDE).float()
    if min(image.shape[-2:]) < MIN_SIDE:
        return StepChoice(1, 0.0, 0.0, "image too small to measure noise and blur: 1 step")
    sigma = sum(estimate_noise_sigma(channel) for channel in image) / len(image)
    blur = blur_effect(image.mean(dim=0))
    if sigma >= NOISY_SIGMA:
        return StepChoice(1, sigma, blur, f"noisy (sigma {sigma * 255:.1f}/255): 1 step, more would amplify noise")
    if blur >= BLURRY:
        return StepChoice(3, sigma, blur, f"clean and blurry (blur effect {blur:.2f}): 3 steps")
    if blur >= SOFT:
        return StepChoice(2, sigma, blur, f"clean and somewhat soft (blur effect {blur:.2f}): 2 steps")
    return StepChoice(1, sigma, blur, f"clean and sharp (blur effect {blur:.2f}): 1 step")
