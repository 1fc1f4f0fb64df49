"""Host memory a job holds of its input for its whole run (issue 24): its colour (`ImageJob`: in the
input's own pixel type since 2026-12-07, float32 before), then what the networks' padding and the two noise
draws keep (`TileWork`), before any tile is computed, in bytes per input pixel, each size and pixel type
in a fresh process (resident size before and after, Linux), of the checkout it is run from (its working
directory: `cd` to an older one to measure it). The caller's own array (3 bytes a pixel for 8-bit RGB)
comes on top. Usage:

    python bench/memory_input.py [--inputs 4096x4096,6001x4001,8192x5464] [--dtypes uint8,uint16,float32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

JOB = r"""
import json, sys
import numpy as np
from invsr.image_job import ImageJob
from invsr.request import UpscaleRequest
from invsr.tiles.work import ModelGeometry, TileWork
def resident():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS:")).split()[1]) * 1024
width, height, dtype = int(sys.argv[1]), int(sys.argv[2]), np.dtype(sys.argv[3])
image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8).astype(dtype)
image = image / np.float32(255) if dtype == np.float32 else image
before = resident()
job = ImageJob.start(image, UpscaleRequest(scale=4), 10**13)
started = resident()
work = TileWork.prepare(job.lr, ModelGeometry(8, 64, 4, False), job.recipe, 0, 128, 16)  # SD-Turbo's geometry
prepared = resident()
print(json.dumps({"job": started - before, "tile_work": prepared - started}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default="4096x4096,6001x4001,8192x5464", help="W x H, comma-separated")
    parser.add_argument("--dtypes", default="uint8", help="pixel types of the RGB input, comma-separated")
    args = parser.parse_args()
    for size in args.inputs.split(","):
        for dtype in args.dtypes.split(","):
            width, height = (int(side) for side in size.split("x"))
            command = [sys.executable, "-c", JOB, str(width), str(height), dtype]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            pixels = width * height
            row = {
                "input": f"{width} x {height}",
                "dtype": dtype,
                "colour_b_per_px": round(measured["job"] / pixels, 1),
                "padding_and_noise_b_per_px": round(measured["tile_work"] / pixels, 1),
                "total_mb": round((measured["job"] + measured["tile_work"]) / 1e6),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
