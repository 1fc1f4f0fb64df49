"""Timesteps and noise levels of InvSR's sampler (docs/METHOD.md, "Inference", steps 2 and 3).

Pure functions over SD's scaled-linear schedule: which timesteps a step count uses, whether a user's
list is acceptable, and the sigma of each timestep.
"""

from __future__ import annotations

import math
import warnings

from invsr.wire.contract import MAX_STEPS, MIN_STEPS

from .errors import InvalidRequest

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012  # SD's "scaled_linear" betas

DEFAULT_TIMESTEPS = {
    1: (200,),
    2: (200, 100),
    3: (200, 100, 50),
    4: (200, 150, 100, 50),
    5: (250, 200, 150, 100, 50),
}
# The noise predictor was trained to start from these; others work but are outside its training.
TRAINED_START_TIMESTEPS = (250, 200, 150, 100)


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


def resolve_timesteps(steps: int | None = None, timesteps=None) -> tuple[int, ...]:
    """The timesteps to run: explicit ones (validated) or the default table's row for `steps`.

    Giving both is allowed only when they agree in count; nothing is silently rewritten.
    """
    if timesteps is None:
        steps = 1 if steps is None else steps
        if not isinstance(steps, int) or isinstance(steps, bool) or not MIN_STEPS <= steps <= MAX_STEPS:
            raise InvalidRequest(f"steps must be an integer from {MIN_STEPS} to {MAX_STEPS}, got {steps!r}")
        return DEFAULT_TIMESTEPS[steps]
    chosen = validate_timesteps(timesteps)
    if steps is not None and steps != len(chosen):
        raise InvalidRequest(
            f"steps={steps} disagrees with the {len(chosen)} timesteps given ({_show(chosen)}); give one or the other"
        )
    return chosen


def validate_timesteps(timesteps) -> tuple[int, ...]:
    """Check an explicit list: 1 to 5 integers in 1..1000, strictly descending."""
    try:
        chosen = tuple(timesteps)
    except TypeError:
        raise InvalidRequest(f"timesteps must be a list of integers, got {timesteps!r}") from None
    if not MIN_STEPS <= len(chosen) <= MAX_STEPS:
        raise InvalidRequest(f"give {MIN_STEPS} to {MAX_STEPS} timesteps, got {len(chosen)}")
    for t in chosen:
        if not isinstance(t, int) or isinstance(t, bool) or not 1 <= t <= NUM_TRAIN_TIMESTEPS:
            raise InvalidRequest(f"each timestep must be an integer from 1 to {NUM_TRAIN_TIMESTEPS}, got {t!r}")
    if any(a <= b for a, b in zip(chosen, chosen[1:])):
        raise InvalidRequest(f"timesteps must be strictly descending, got {_show(chosen)}")
    if chosen[0] not in TRAINED_START_TIMESTEPS:
        warnings.warn(
            f"start timestep {chosen[0]} is not one the noise predictor was trained on "
            f"({_show(TRAINED_START_TIMESTEPS)}); results may be worse",
            stacklevel=2,
        )
    return chosen


def parse_timesteps(text: str) -> tuple[int, ...]:
    """'200,100' -> (200, 100), for the command line."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise InvalidRequest(f"timesteps must be comma-separated integers such as 200,100; got {text!r}") from None


def _show(timesteps) -> str:
    return ", ".join(str(t) for t in timesteps)
