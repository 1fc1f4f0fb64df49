"""PNG written band by band (invsr.png_bands) against libpng through imagecodecs (the whole array at once,
as image_io wrote PNG before): seconds and bytes on photo-like images, to choose zlib's strategy and whether whole-image
writes should go through the band writer too (issue 24).

The image is the bundled sample photo resized (Lanczos) to SIDE x SIDE, with sensor-like noise (a normal
of `--noise` 8-bit levels) or without (smooth, as an upscale's large areas are); 8 and 16 bits. Each
encoder runs `--repeat` times; the best time counts (the machine may be shared). Usage:

    python bench/png_write.py [--side 4000] [--noise 2] [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from pathlib import Path

import imagecodecs
import numpy as np

from invsr import png_bands
from invsr.png_bands import PngBands

BAND_ROWS_BYTES = 64 << 20  # as the pipeline's bands (image_io.BAND_BYTES)


def photo(side: int, noise: float, bits: int) -> np.ndarray:
    from PIL import Image

    with Image.open(Path(png_bands.__file__).parent / "data" / "sample.png") as image:
        smooth = np.asarray(image.convert("RGB").resize((side, side), Image.LANCZOS), np.float32)
    levels = smooth + np.random.default_rng(0).normal(0, noise, smooth.shape) if noise else smooth
    if bits == 8:
        return np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    return np.clip(np.rint(levels * 257), 0, 65535).astype(np.uint16)


def banded(pixels: np.ndarray, path: Path, strategy: int) -> int:
    png_bands.STRATEGY = strategy
    height, width, channels = pixels.shape
    writer = PngBands(path, height, width, channels, pixels.dtype, None, None)
    rows = max(1, BAND_ROWS_BYTES // (width * channels * pixels.itemsize))
    for top in range(0, height, rows):
        writer.add(top, pixels[top : top + rows])
    writer.finish(None)
    return path.stat().st_size


def best_of(repeat: int, encode) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        size = encode()
        times.append(time.perf_counter() - started)
    return min(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4000)
    parser.add_argument("--noise", type=float, default=2.0, help="sensor-like noise, in 8-bit levels")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "out.png"
        for bits, noise in ((8, args.noise), (8, 0.0), (16, args.noise)):
            pixels = photo(args.side, noise, bits)
            kind = f"{args.side} x {args.side} RGB {bits}-bit, noise {noise:g}"
            libpng = best_of(args.repeat, lambda: len(imagecodecs.png_encode(pixels, level=6)))  # noqa: B023
            row = {"image": kind, "writer": "imagecodecs (libpng, level 6)", "seconds": libpng[0], "bytes": libpng[1]}
            rows.append(row)
            for name, strategy in (("default", zlib.Z_DEFAULT_STRATEGY), ("filtered", zlib.Z_FILTERED)):
                seconds, size = best_of(args.repeat, lambda: banded(pixels, path, strategy))  # noqa: B023
                writer = f"PngBands (zlib level 6, {name} strategy)"
                rows.append({"image": kind, "writer": writer, "seconds": seconds, "bytes": size})
            for row in rows[-3:]:
                row.update(seconds=round(row["seconds"], 2), size_vs_libpng=round(row["bytes"] / libpng[1], 3))
                row["time_vs_libpng"] = round(row["seconds"] / libpng[0], 2)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
