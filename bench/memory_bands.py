"""Host memory of the result, before and after bands (issue 24): peak resident memory above idle of the
worker (`invsr serve`, a client taking the result in bands, or whole from a worker without them), and of
the command line writing TIFF, PNG (`--what png`) and JPEG (in process), in bytes per output pixel.

Each measurement runs in fresh processes on the tiny random weights (the result's buffers do not depend on
the weights). The worker's peak is its own (Linux's /proc/PID/clear_refs resets it before the job); the
command line's is its whole run's, less that of the same command on a 64 x 64 input (its idle size: the
model, the libraries). `--source` runs another checkout (say the commit before bands) for the "before"
column; its `invsr` and `invsr_server` are put first on the path. Usage:

    python bench/memory_bands.py [--sides 1024,2048] [--source /path/to/checkout] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REQUEST = ["--tile", "128", "--overlap", "16", "--scale", "4", "--steps", "1"]

PEAK = r"""
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr[-3000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""

WORKER_JOB = r"""
import json, sys, time, numpy as np
from invsr.request import UpscaleRequest
from invsr.wire.client import Client
path, side, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def status(field):
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith(field + ":")).split()[1]) * 1024
image = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
request = UpscaleRequest(tile=128, overlap=16, scale=4, steps=1)
with Client.from_file(path, timeout=60) as client:
    client.upscale(image[:64, :64].tobytes(), 64, 64, 3, "u8", request)  # warm: the model loaded, pools grown
    open(f"/proc/{pid}/clear_refs", "w").write("5")
    idle = status("VmRSS")
    if hasattr(client, "upscale_bands"):
        client.upscale_bands(image.tobytes(), side, side, 3, "u8", request, on_band=lambda band: None)
    else:
        client.upscale(image.tobytes(), side, side, 3, "u8", request)
    print(json.dumps({"idle": idle, "peak": status("VmHWM")}))
"""


LIBRARY_JOBS = r"""
import json, sys, numpy as np, torch
from invsr.pipeline import InvSRPipeline
from invsr.request import UpscaleRequest
from invsr.weights import locate
weights, sides = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
pipeline = InvSRPipeline.load(locate(weights), device="cpu", dtype="fp32")
request = UpscaleRequest(tile=128, overlap=16, scale=4, steps=1)
def status(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field + ":")).split()[1]) * 1024
bands = "on_band" in InvSRPipeline.upscale.__code__.co_varnames
def job(image):
    if bands:  # as the worker does for a client that takes bands: each band sent on, none kept
        pipeline.upscale(image, request, on_band=lambda top, rows: None)
    else:
        pipeline.upscale(image, request)
rng = np.random.default_rng(0)
job((rng.random((128, 128, 3)) * 255).astype(np.uint8))  # warm: one tile
for side in sides:
    image = (rng.random((side, side, 3)) * 255).astype(np.uint8)
    open("/proc/self/clear_refs", "w").write("5")
    idle = status("VmRSS")
    job(image)
    grown = status("VmHWM") - idle
    print(json.dumps({"what": "library" + (" (bands)" if bands else ""), "input": side, "grown": grown}))
"""


def library_rows(weights: str, sides: str, env: dict) -> list[dict]:
    """The library as the worker runs it, in one process: each size's peak over the resident size before it."""
    done = subprocess.run(
        [sys.executable, "-c", LIBRARY_JOBS, weights, sides],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    if done.returncode:
        raise SystemExit(f"the library jobs failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def environment(source: Path | None) -> dict:
    env = dict(os.environ)
    if source is not None:
        links = Path(tempfile.mkdtemp(prefix="invsr-bench-path-"))
        for name, folder in (("invsr", "invsr"), ("invsr_server", "server"), ("invsr_gimp", "plugin")):
            (links / name).symlink_to(source / folder)
        env["PYTHONPATH"] = str(links)
    return env


def cli_peak(weights: str, source: Path, target: Path, env: dict) -> int:
    command = [sys.executable, "-m", "invsr_server", "upscale", str(source), "-o", str(target), "--weights", weights]
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *command, *REQUEST, "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    if done.returncode:
        raise SystemExit(f"invsr upscale failed:\n{done.stderr}")
    return int(done.stdout.split()[-1])


def worker_peak(weights: str, side: int, folder: Path, env: dict) -> dict:
    path = folder / "worker.json"
    serve = [sys.executable, "-m", "invsr_server", "serve", "--connection-file", str(path), "--weights", weights]
    process = subprocess.Popen(
        [*serve, "--device", "cpu", "--preload"],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        done = subprocess.run(
            [sys.executable, "-c", WORKER_JOB, str(path), str(side), str(process.pid)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        if done.returncode:
            raise SystemExit(f"the worker job failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="1024,2048", help="input sides in pixels, comma-separated (x4 out)")
    parser.add_argument("--source", type=Path, default=None, help="another checkout to measure (the 'before')")
    parser.add_argument(
        "--what", default="library,worker,tiff,jpeg", help="what to measure, comma-separated (also: png)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    env = environment(args.source)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        from invsr.image_io import ImageFile, write_image
        from invsr.tiny_weights import write_tiny_weights

        weights = str(folder / "weights")
        write_tiny_weights(weights)
        rng = np.random.default_rng(0)
        idle_input = folder / "idle.png"
        write_image(idle_input, ImageFile((rng.random((64, 64, 3)) * 255).astype(np.uint8)))
        if "library" in args.what.split(","):
            for measured in library_rows(weights, args.sides, env):
                out_pixels = (4 * measured["input"]) ** 2
                row = dict(measured, output_mp=out_pixels / 1e6, peak_over_idle_mb=measured["grown"] / 1e6)
                row["bytes_per_output_pixel"] = measured["grown"] / out_pixels
                rows.append(row)
                print(json.dumps(row), flush=True)
        for side in (int(s) for s in args.sides.split(",")):
            source = folder / f"in-{side}.png"
            write_image(source, ImageFile((rng.random((side, side, 3)) * 255).astype(np.uint8)))
            out_pixels = (4 * side) ** 2
            for what in (w for w in args.what.split(",") if w != "library"):
                started = time.perf_counter()
                if what == "worker":
                    measured = worker_peak(weights, side, folder, env)
                    grown = measured["peak"] - measured["idle"]
                else:
                    suffix = {"tiff": ".tif", "png": ".png", "jpeg": ".jpg"}[what]
                    idle = cli_peak(weights, idle_input, folder / f"idle-out{suffix}", env)
                    grown = cli_peak(weights, source, folder / f"out{suffix}", env) - idle
                row = {
                    "what": what,
                    "input": side,
                    "output_mp": out_pixels / 1e6,
                    "peak_over_idle_mb": grown / 1e6,
                    "bytes_per_output_pixel": grown / out_pixels,
                    "seconds": round(time.perf_counter() - started, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"source": str(args.source or "this checkout"), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
