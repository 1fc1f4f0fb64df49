"""One upscale's parameters as a typed, frozen, validated value: `UpscaleRequest`.

Every field is checked when the request is made, with one clear error per bad field; nothing is
silently rewritten. The worker builds the same object from a JSON header (`from_dict`).
"""

from __future__ import annotations

import dataclasses

from .color_fix import COLOR_FIXES
from .errors import InvalidRequest
from .schedule import MAX_STEPS, MIN_STEPS, resolve_timesteps

MAX_SEED = 2**63 - 1
SUPPORTED_SCALES = (4,)


@dataclasses.dataclass(frozen=True)
class UpscaleRequest:
    """steps: 1 to 5, "auto" (measure the input, schedule via noise_level.choose_steps), or None for
    "as many as `timesteps` lists, else 1". timesteps: explicit, strictly descending, 1 to 1000.
    color_fix: wavelet, ycbcr or none. seed: the whole result is a function of (input, seed, device, dtype)."""

    steps: int | str | None = None
    timesteps: tuple[int, ...] | None = None
    color_fix: str = "wavelet"
    seed: int = 0
    scale: float = 4

    def __post_init__(self):
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(self.timesteps))
        if self.steps == "auto":
            if self.timesteps is not None:
                raise InvalidRequest("steps='auto' chooses the timesteps itself; do not give timesteps as well")
        elif self.steps is not None and not (isinstance(self.steps, int) and not isinstance(self.steps, bool)):
            raise InvalidRequest(f"steps must be an integer from {MIN_STEPS} to {MAX_STEPS} or 'auto', got {self.steps!r}")
        else:
            resolve_timesteps(self.steps, self.timesteps)  # raises on a bad count, range or order
        if self.color_fix not in COLOR_FIXES:
            raise InvalidRequest(f"color_fix must be one of {', '.join(COLOR_FIXES)}, got {self.color_fix!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise InvalidRequest(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.scale not in SUPPORTED_SCALES:
            raise InvalidRequest(f"scale must be 4 (the model's native factor), got {self.scale!r}")

    @classmethod
    def from_dict(cls, fields: dict) -> "UpscaleRequest":
        """Build from JSON-like data, ignoring unknown keys (newer clients may send more)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        fields["timesteps"] = list(self.timesteps) if self.timesteps is not None else None
        return fields
