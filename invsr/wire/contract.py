"""What every side agrees on: pixel types on the wire, the names and ranges of an upscale's parameters,
how output sizes are rounded, and the work limit.

The library validates requests with these, the worker advertises them in `hello`, and the plug-in and
the command line offer them, so each fact is written here once. Standard library only: the plug-in
imports it inside GIMP's Python.
"""

from __future__ import annotations

from .errors import InvalidImage, InvalidRequest

# Pixel sample types: the wire's name -> (NumPy's name, bytes per sample).
PIXEL_DTYPES = {"u8": ("uint8", 1), "u16": ("uint16", 2), "f32": ("float32", 4)}
WIRE_DTYPES = {numpy_name: wire for wire, (numpy_name, _) in PIXEL_DTYPES.items()}  # NumPy's name -> the wire's
CHANNELS = (1, 2, 3, 4)  # gray, gray + alpha, RGB, RGBA

COLOR_FIXES = ("wavelet", "ycbcr", "none")
DEFAULT_COLOR_FIX = "wavelet"

MIN_STEPS, MAX_STEPS = 1, 5
# Timesteps of SD's 1000-step training schedule: the default row for each step count, and the starts the
# noise predictor was trained on (others work but are outside its training).
NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_TIMESTEPS = {
    1: (200,),
    2: (200, 100),
    3: (200, 100, 50),
    4: (200, 150, 100, 50),
    5: (250, 200, 150, 100, 50),
}
TRAINED_START_TIMESTEPS = (250, 200, 150, 100)
MODEL_SCALE = 4  # the network always enlarges x4; other sizes are resampled from its result
MIN_SCALE, MAX_SCALE = 1.0, 16.0
DEFAULT_SCALE = 4.0
TILE_MULTIPLE = 16  # tile sides are multiples of this (SD-Turbo's: 8 for the VAE times 2 for the latent grid)
MAX_TILE = 1024  # input pixels
DEFAULT_TILE = 128  # tile "auto": the noise predictor's training size, or smaller where device memory is short
DEFAULT_OVERLAP = 16  # input pixels, where the tile allows
MAX_TILE_BATCH = 64
MAX_SEED = 2**63 - 1
DEFAULT_MAX_PIXELS = 512_000_000  # work pixels: the x4 result or the output, whichever is larger


def sample_bytes(dtype: str) -> int:
    """Bytes per sample of a wire dtype."""
    return PIXEL_DTYPES[dtype][1]


def scaled_side(side: int, scale: float) -> int:
    """A side enlarged by `scale`: round(side * scale) (Python's round, halves to even), at least 1."""
    return max(1, round(side * scale))


def output_size(
    height: int, width: int, scale: float | None = None, out_width: int | None = None, out_height: int | None = None
) -> tuple[int, int]:
    """(height, width) of the result: each side times `scale` (default x4), or the exact width and/or height
    asked for (one alone keeps the aspect ratio). Raises when the enlargement is outside 1 to 16."""
    if out_width is None and out_height is None:
        scale = DEFAULT_SCALE if scale is None else float(scale)
        return scaled_side(height, scale), scaled_side(width, scale)
    out_w = out_width if out_width is not None else max(1, round(width * out_height / height))
    out_h = out_height if out_height is not None else max(1, round(height * out_width / width))
    for name, out, side in (("width", out_w, width), ("height", out_h, height)):
        if not MIN_SCALE <= out / side <= MAX_SCALE:
            raise InvalidRequest(
                f"output {name} {out} is {out / side:.3g}x the input's {side}: InvSR enlarges from 1x to 16x"
            )
    return out_h, out_w


def check_work_size(height: int, width: int, out_size: tuple[int, int], max_pixels: int) -> None:
    """Refuse, before any work, a job whose x4 intermediate or output exceeds the pixel limit."""
    largest = max(MODEL_SCALE * height * MODEL_SCALE * width, out_size[0] * out_size[1])
    if largest > max_pixels:
        raise InvalidImage(
            f"a {width} x {height} image enlarged to {out_size[1]} x {out_size[0]} needs "
            f"{largest / 1e6:.3g} megapixels of work (the x4 result or the output, the larger), over the limit "
            f"of {max_pixels / 1e6:.3g}; choose a smaller scale or part of the image, or raise --max-pixels"
        )
