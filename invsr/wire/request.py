"""One upscale's parameters as a typed, frozen, validated value: `UpscaleRequest`, and the checks of its
timesteps.

Defined here, in the wire package, once: the library runs it, the worker builds it from a JSON header
(`from_dict`), and a client (the plug-in, in GIMP's Python) sends it (`to_dict`). Standard library only.

Every field is checked when the request is made, with one clear error per bad field. What can be refused is
refused where the request is made, and again on the worker's arrival.

Nothing is rewritten silently:
- A value given explicitly is honoured as given, or refused here: never adjusted to something else. The
  one exception happens at run time, where nothing else can be done: out of device memory, the tile engine
  retries with half the batch, then with smaller tiles (and with the overlap such a tile allows, where the
  one asked for no longer fits), and records each step in the report's tiling notices.
- "auto" and None leave the choice to the job, and the report says what it chose: `steps` and
  `timesteps` (with `steps_auto`'s measurements), and the tiling's `tile`, `overlap` and `batch`. Where the
  device's free memory makes "auto" choose a smaller tile than the default, a notice says so.
- An overlap is a least number of shared pixels: tiles start on even pixels, so an odd overlap shares one
  more, and the last tile of a row or column shares what it needs to reach the edge.
- The size is exactly as documented: round(side x scale), or the width and height asked for.
"""

from __future__ import annotations

import dataclasses
import warnings

from . import contract
from .contract import (
    COLOR_FIXES,
    DEFAULT_COLOR_FIX,
    DEFAULT_TILE,
    DEFAULT_TIMESTEPS,
    MAX_SCALE,
    MAX_SEED,
    MAX_STEPS,
    MAX_TILE,
    MAX_TILE_BATCH,
    MIN_SCALE,
    MIN_STEPS,
    NUM_TRAIN_TIMESTEPS,
    TILE_MULTIPLE,
    TRAINED_START_TIMESTEPS,
)
from .errors import InvalidRequest


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class UpscaleRequest:
    """What to do with one image.

    steps: 1 to 5, "auto" (measure the input: noise_level.choose_steps), or None for "as many as
      `timesteps` lists, else 1". timesteps: explicit, strictly descending, 1 to 1000.
    color_fix: wavelet, ycbcr or none. seed: the result is a function of (input, seed, device, dtype,
      tiling).
    scale: 1 to 16 (default 4), or width and/or height for an exact output size (one of them alone
      keeps the aspect ratio). The model always enlarges x4; other sizes are resampled from that.
    tile: "auto" (128, or smaller where device memory is short, but never too small for the overlap asked
      for) or a tile side in input pixels (a multiple of 16); overlap: input pixels shared by neighbouring
      tiles, at least (see the module docstring), None for 16 or as much as a smaller tile allows; an
      overlap must fit the tile (2 x overlap + 16 <= tile; with "auto", the 128-pixel tile); tile_batch:
      "auto" or tiles per batch on the device.
    """

    steps: int | str | None = None
    timesteps: tuple[int, ...] | None = None
    color_fix: str = DEFAULT_COLOR_FIX
    seed: int = 0
    scale: float | None = None
    width: int | None = None
    height: int | None = None
    tile: int | str = "auto"
    overlap: int | None = None
    tile_batch: int | str = "auto"

    def __post_init__(self):
        if self.timesteps is not None:
            if not isinstance(self.timesteps, (list, tuple)):
                raise InvalidRequest(f"timesteps must be a list of integers such as [200, 100], got {self.timesteps!r}")
            object.__setattr__(self, "timesteps", tuple(self.timesteps))
        self._check_steps()
        if not isinstance(self.color_fix, str) or self.color_fix not in COLOR_FIXES:
            raise InvalidRequest(f"color_fix must be one of {', '.join(COLOR_FIXES)}, got {self.color_fix!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise InvalidRequest(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        self._check_size()
        self._check_tiling()

    def _check_steps(self):
        if self.steps == "auto":
            if self.timesteps is not None:
                raise InvalidRequest("steps='auto' chooses the timesteps itself; do not give timesteps as well")
        elif self.steps is not None and not _is_int(self.steps):
            raise InvalidRequest(
                f"steps must be an integer from {MIN_STEPS} to {MAX_STEPS} or 'auto', got {self.steps!r}"
            )
        else:
            resolve_timesteps(self.steps, self.timesteps)  # raises on a bad count, range or order

    def _check_size(self):
        if self.scale is not None:
            if self.width is not None or self.height is not None:
                raise InvalidRequest("give scale, or width and/or height, not both")
            if (
                isinstance(self.scale, bool)
                or not isinstance(self.scale, (int, float))
                or not MIN_SCALE <= self.scale <= MAX_SCALE
            ):
                raise InvalidRequest(f"scale must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, got {self.scale!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise InvalidRequest(f"{name} must be a positive whole number of pixels, got {value!r}")

    def _check_tiling(self):
        multiple = TILE_MULTIPLE
        if self.tile != "auto" and (
            not _is_int(self.tile) or not multiple <= self.tile <= MAX_TILE or self.tile % multiple
        ):
            raise InvalidRequest(
                f"tile must be 'auto' or a multiple of {multiple} from {multiple} to {MAX_TILE} (input pixels), "
                f"got {self.tile!r}"
            )
        if self.overlap is not None and (not _is_int(self.overlap) or self.overlap < 0):
            raise InvalidRequest(f"overlap must be a whole number of input pixels, 0 or more, got {self.overlap!r}")
        if self.overlap is not None and self.tile != "auto" and 2 * self.overlap + multiple > self.tile:
            raise InvalidRequest(
                f"overlap {self.overlap} is too large for tile {self.tile}: keep 2 x overlap + {multiple} <= tile"
            )
        if self.overlap is not None and self.tile == "auto" and 2 * self.overlap + multiple > DEFAULT_TILE:
            raise InvalidRequest(
                f"overlap {self.overlap} is too large for the automatic tile ({DEFAULT_TILE} pixels at most): keep "
                f"2 x overlap + {multiple} <= {DEFAULT_TILE}, or give a tile of at least {2 * self.overlap + multiple}"
            )
        if self.tile_batch != "auto" and (not _is_int(self.tile_batch) or not 1 <= self.tile_batch <= MAX_TILE_BATCH):
            raise InvalidRequest(f"tile_batch must be 'auto' or from 1 to {MAX_TILE_BATCH}, got {self.tile_batch!r}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the result for an input of (height, width): see contract.output_size."""
        return contract.output_size(height, width, self.scale, self.width, self.height)

    @classmethod
    def from_dict(cls, fields: dict) -> UpscaleRequest:
        """Build from JSON-like data, ignoring unknown keys (newer clients may send more)."""
        if not isinstance(fields, dict):
            raise InvalidRequest(f"a request must be an object of named fields, got {type(fields).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        fields["timesteps"] = list(self.timesteps) if self.timesteps is not None else None
        return fields


# --- timesteps ------------------------------------------------------------------------------------------


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
