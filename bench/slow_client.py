"""Host memory when a client takes its bands more slowly than the worker makes them (issue 24, protocol 3.3):
peak resident memory over idle of the worker and of the client, for the same job taken unpaced (as a 3.2
client does: no `window`, so every band is sent as soon as it is finished) and paced (this version's client:
a window of 64 MB, or `--window` MB, and `taken` after each).

A slow client is a PNG being compressed, a network slower than the device, a busy GIMP: here the client
sleeps `--delay` seconds per band. One worker (`invsr serve`, CPU, tiny random weights) serves both jobs,
one after the other; each process's peak is reset before each job (Linux's /proc/PID/clear_refs). A float
image, so that the result is 12 bytes per pixel and its backlog stands out of the allocator's noise. Usage:

    python bench/slow_client.py [--side 256] [--scale 8] [--delay 1.0] [--window MB] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIENT = r"""
import json, sys, time, numpy as np
from invsr.request import UpscaleRequest
from invsr.wire.client import Client
path, side, scale, delay, worker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
window = int(float(sys.argv[6]) * 2**20) if len(sys.argv) > 6 else None

def status(pid, field):
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith(field + ":")).split()[1]) * 1024

def reset(pid):
    open(f"/proc/{pid}/clear_refs", "w").write("5")

image = np.random.default_rng(0).random((side, side, 3)).astype(np.float32)
request = UpscaleRequest(tile=64, overlap=16, scale=scale, steps=1)
rows = []
with Client.from_file(path, timeout=60) as client:
    client.upscale(image[:64, :64].tobytes(), 64, 64, 3, "f32", request)  # warm: the model loaded, pools grown
    paced_operations = client.operations
    client.band_window = window or client.band_window
    for way in ("unpaced", "paced"):
        client.operations = paced_operations if way == "paced" else ()  # no `taken`: a 3.2 client
        idle = {"worker": status(worker, "VmRSS"), "client": status("self", "VmRSS")}
        reset(worker), reset("self")
        bands, started = [], time.perf_counter()
        def take(band):
            bands.append(band.rows)
            time.sleep(delay)
        client.upscale_bands(image.tobytes(), side, side, 3, "f32", request, on_band=take)
        row = {"way": way, "bands": len(bands), "seconds": round(time.perf_counter() - started, 1)}
        for who, pid in (("worker", worker), ("client", "self")):
            row[who + "_over_idle_mb"] = round((status(pid, "VmHWM") - idle[who]) / 1e6, 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
print(json.dumps(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="input side in pixels (float RGB)")
    parser.add_argument("--scale", type=int, default=8, help="x8: the model's x4 resampled, 4x the output per tile")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the client takes per band")
    parser.add_argument("--window", type=float, default=None, help="MB; the client's own (64) without it")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        from invsr.tiny_weights import write_tiny_weights

        weights, path = str(folder / "weights"), folder / "worker.json"
        write_tiny_weights(weights)
        serve = [sys.executable, "-m", "invsr_server", "serve", "--connection-file", str(path), "--weights", weights]
        worker = subprocess.Popen([*serve, "--device", "cpu", "--preload"], cwd=scratch, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            arguments = [str(path), str(args.side), str(args.scale), str(args.delay), str(worker.pid)]
            arguments += [] if args.window is None else [str(args.window)]
            done = subprocess.run([sys.executable, "-c", CLIENT, *arguments], stdout=subprocess.PIPE, text=True)
            if done.returncode:
                raise SystemExit("the client failed")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    out_pixels = (args.scale * args.side) ** 2
    result = {"side": args.side, "scale": args.scale, "delay": args.delay, "window_mb": args.window or 64}
    result["result_mb"] = 12 * out_pixels / 1e6
    result["rows"] = rows
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
