"""Timesteps and noise levels of InvSR's sampler (docs/METHOD.md, "Inference", steps 2 and 3).

Pure functions over SD's scaled-linear schedule: the sigma of each timestep. Which timesteps a step count
uses, and whether a user's list is acceptable, are the wire's (invsr/wire/request.py), re-exported here.
"""

from __future__ import annotations

import math

from invsr.wire.contract import DEFAULT_TIMESTEPS, NUM_TRAIN_TIMESTEPS, TRAINED_START_TIMESTEPS  # noqa: F401
from invsr.wire.request import parse_timesteps, resolve_timesteps, validate_timesteps  # noqa: F401

BETA_START, BETA_END = 0.00085, 0.012  # SD's "scaled_linear" betas


def _alphas_cumprod() -> list[float]:
    # scaled_linear: betas are linear in sqrt(beta), computed in float64 for exact sigmas.
    lo, hi = math.sqrt(BETA_START), math.sqrt(BETA_END)
    step = (hi - lo) / (NUM_TRAIN_TIMESTEPS - 1)
    product, cumulative = 1.0, []
    for i in range(NUM_TRAIN_TIMESTEPS):
        product *= 1.0 - (lo + i * step) ** 2
        cumulative.append(product)
    return cumulative


_ALPHAS_CUMPROD = _alphas_cumprod()


def sigma_at(index: int) -> float:
    """sigma = sqrt((1 - abar) / abar) at a 0-based schedule index (timestep t is index t - 1)."""
    abar = _ALPHAS_CUMPROD[index]
    return math.sqrt((1.0 - abar) / abar)


def sigmas(timesteps: tuple[int, ...]) -> list[float]:
    """The sigma of each timestep, looked up at t - 1, followed by a final 0."""
    return [sigma_at(t - 1) for t in timesteps] + [0.0]
