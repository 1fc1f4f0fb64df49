"""Host memory of assembling the result alone (issue 24), up to a 45-megapixel photo at x4: the tile
accumulator and the finishing of the result's rows, fed made-up tile outputs instead of the model's, so
that what is measured is what grows with the output, not the networks' working memory (a fixed ~100 MB
on the CPU, with tens of MB of allocator noise, which hides a difference of 10 MB in a whole run).

Two ways, each size in a fresh process, peak resident size over the size before the job (Linux's
/proc/self/clear_refs, VmHWM), and the most the accumulator's canvas held (its float values and
finished pixels, counted exactly): `whole bands`, the float32 bands finished by rows once each is complete
(what the library did before), and `columns`, the columns of each band finished to the result's own
pixels as soon as no tile still to come reaches them (the accumulator given a `finish`, as the worker and
the CLI run it now). The rows are made contiguous, as the worker does to send them, then dropped, as by a
client that keeps up. Tiles of 128 pixels overlapping by 16 (the defaults), in band order, as one device
computes them. `--source` adds the whole bands of another checkout (the commit before, whose accumulator
held two rows of tiles where the last column is narrower). `--tiff FOLDER` measures the command line's
path instead: the columns finished early and written to a TIFF by bands (`TiffBands`), with `--threads` the
compression threads tifffile would use on a machine of twice as many cores (`--source`: the same in
another checkout). Usage:

    python bench/memory_assembly.py [--inputs 1024x1024,2048x2048,4096x4096,6000x4000,6001x4001,8192x5464]
        [--dtype uint8] [--tiff /tmp --threads 4]
        [--source /path/to/checkout] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from memory_bands import environment

JOB = r"""
import json, os, sys, time
from pathlib import Path
import numpy as np, torch
from invsr.image_io import TiffBands
from invsr.pixels import BandFinisher, Colour, Pixels
from invsr.tiles import TileAccumulator, TilePlan

height, width, dtype, way, write = int(sys.argv[1]), int(sys.argv[2]), np.dtype(sys.argv[3]), sys.argv[4], sys.argv[5]
def status(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field + ":")).split()[1]) * 1024
padded = (-(-height // 8) * 8, -(-width // 8) * 8)  # to the networks' multiple, as the pipeline pads
plan = TilePlan.make((height, width), padded, 128, 16, 8)
pixels = Pixels(Colour.of(torch.zeros(1, 3, 1, 1)), None, False, dtype, False)  # RGB: no input pixels needed
order = [position for start, stop in plan.band_order(plan.batches(1)) for position in range(start, stop)]
outputs = {}  # one made-up output per tile shape: the values do not change the canvas's memory
for tile in plan.tiles:
    shape = (1, 3, 4 * tile.visible.height, 4 * tile.visible.width)
    outputs.setdefault(shape, torch.rand(shape, generator=torch.Generator().manual_seed(0)))
noise = torch.Generator().manual_seed(1)  # but a file's are its compressed size: noise, as deflate cannot shrink
def output(shape):
    return torch.rand(shape, generator=noise) if write else outputs[shape]
open("/proc/self/clear_refs", "w").write("5")
idle, started, rows, held = status("VmRSS"), time.perf_counter(), 0, 0
finisher = BandFinisher(pixels, (4 * height, 4 * width))
accumulator = TileAccumulator(plan, finish=finisher) if way == "columns" else TileAccumulator(plan)
target = Path(write) if write else None
writer = TiffBands(target, 4 * height, 4 * width, 3, dtype, None, None) if target else None
def held_bytes(canvas):
    if hasattr(canvas, "held_bytes"):
        return canvas.held_bytes
    return sum(strip.nbytes for strip in canvas.strips.values())  # a checkout from before columns
for position in order:
    tile = plan.tiles[position]
    accumulator.add(position, output((1, 3, 4 * tile.visible.height, 4 * tile.visible.width)))
    held = max(held, held_bytes(accumulator.canvas))
    for top, band in accumulator.bands():
        finished = band if way == "columns" else finisher(top, band)
        finished = np.ascontiguousarray(finished)  # as the worker sends them, and files take them
        rows += finished.shape[0]
        if writer is not None:
            writer.add(top, finished)
assert rows == 4 * height
if writer is not None:
    writer.finish(None)
    os.unlink(target)
seconds = round(time.perf_counter() - started, 1)
print(json.dumps({"grown": status("VmHWM") - idle, "held": held, "seconds": seconds}))
"""


def measure(height: int, width: int, dtype: str, way: str, env: dict, write: str = "") -> dict:
    done = subprocess.run(
        [sys.executable, "-c", JOB, str(height), str(width), dtype, way, write], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise SystemExit(f"the {way} job failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--inputs", default="1024x1024,2048x2048,4096x4096,6000x4000,6001x4001,8192x5464", help="W x H, x4 out"
    )
    parser.add_argument("--dtype", default="uint8", choices=["uint8", "uint16"])
    parser.add_argument("--source", type=Path, default=None, help="a checkout from before, for its whole bands too")
    parser.add_argument("--tiff", type=Path, default=None, help="a folder: write the rows there as TIFF, by bands")
    parser.add_argument("--threads", type=int, default=None, help="tifffile's compression threads (its default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ways = [("whole bands", "whole", environment(None)), ("columns", "columns", environment(None))]
    if args.source is not None:
        ways.insert(0, ("whole bands, before", "whole", environment(args.source)))
    if args.tiff is not None:  # the command line's path: columns finished early, then the file's writer
        ways = [("columns, TIFF", "columns", environment(None))]
        if args.source is not None:
            ways.insert(0, ("columns, TIFF, before", "columns", environment(args.source)))
    for _, _, env in ways:
        if args.threads:
            env["TIFFFILE_NUM_THREADS"] = str(args.threads)
    write = str(args.tiff / "out.tif") if args.tiff is not None else ""
    rows = []
    for size in args.inputs.split(","):
        width, height = (int(side) for side in size.split("x"))
        out_pixels = 16 * width * height
        for way, job, env in ways:
            measured = measure(height, width, args.dtype, job, env, write)
            row = {
                "way": way,
                "input": f"{width} x {height}",
                "output_mp": round(out_pixels / 1e6, 1),
                "output_width": 4 * width,
                "peak_over_idle_mb": round(measured["grown"] / 1e6, 1),
                "canvas_peak_mb": round(measured["held"] / 1e6, 1),
                "bytes_per_output_pixel": round(measured["grown"] / out_pixels, 3),
                "seconds": measured["seconds"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        note = f"{args.dtype} RGB, {time.strftime('%Y-%m-%d')}"
        if args.tiff is not None:
            note += f", written to TIFF on {args.threads or 'the default number of'} threads"
        args.json.write_text(json.dumps({"what": note, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
