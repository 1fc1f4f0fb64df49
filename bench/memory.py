"""Peak memory of one upscale for two image sizes: host memory grows with the image, network work does not.

Each size runs in a fresh process, whose peak resident memory is reset just before the job (Linux's
/proc/self/clear_refs), so the peak is that job's own; on the tiny random
weights (memory of the image buffers does not depend on the weights; the network's part of it does,
which is why on a GPU the device peak is also printed). Usage:

    python bench/memory.py [--sizes 256,768] [--scales 4,2] [--device cpu] [--json bench/results/memory.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

JOB = r"""
import json, sys, numpy as np, torch
from invsr.pipeline import InvSRPipeline
from invsr.weights import locate
from invsr.request import UpscaleRequest

weights, side, device, scale = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
pipeline = InvSRPipeline.load(locate(weights), device=device, dtype="auto")
largest = {"vae_decoder_input": 0, "noise_predictor_input": 0}
def watch(name):
    def hook(module, args):
        largest[name] = max(largest[name], args[0].numel())
    return hook
pipeline.models.vae.decoder.register_forward_pre_hook(watch("vae_decoder_input"))
pipeline.models.noise_predictor.register_forward_pre_hook(watch("noise_predictor_input"))
pipeline.upscale(np.zeros((32, 32, 3), np.uint8))  # warm up: allocator pools, lazy imports
image = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
def status_kib(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM), so it is this job's alone
before = status_kib("VmRSS")
result = pipeline.upscale(image, UpscaleRequest(tile=128, overlap=16, scale=scale))
peak = status_kib("VmHWM")
print(json.dumps({
    "input": [side, side],
    "scale": scale,
    "output": list(result.image.shape[:2]),
    "output_bytes": result.image.nbytes,
    "host_peak_increase_bytes": max(0, peak - before) * 1024,
    "device_peak_bytes": result.report["peak_memory"]["device_bytes"],
    "tiles": result.report["tiling"]["tiles"],
    "largest_network_inputs": largest,
    "seconds": sum(result.report["seconds"].values()),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,768", help="input sides in pixels, comma-separated")
    parser.add_argument("--scales", default="4", help="enlargements, comma-separated: each size at each scale")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        from invsr.tiny_weights import write_tiny_weights

        write_tiny_weights(folder)
        rows = [
            run_job(folder, int(side), args.device, scale)
            for scale in args.scales.split(",")
            for side in args.sizes.split(",")
        ]
    print(
        f"{'scale':>5} {'input':>10} {'output':>12} {'tiles':>6} {'output MB':>10} {'host peak +MB':>14} "
        f"{'x output':>9} {'device MB':>10} {'largest VAE input':>18}"
    )
    for row in rows:
        device = "-" if row["device_peak_bytes"] is None else f"{row['device_peak_bytes'] / 1e6:.0f}"
        print(
            f"{row['scale']:>5g} {'x'.join(map(str, row['input'])):>10} {'x'.join(map(str, row['output'])):>12} "
            f"{row['tiles']:>6} "
            f"{row['output_bytes'] / 1e6:>10.1f} {row['host_peak_increase_bytes'] / 1e6:>14.1f} "
            f"{row['host_peak_increase_bytes'] / row['output_bytes']:>9.1f} {device:>10} "
            f"{row['largest_network_inputs']['vae_decoder_input']:>18,}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


def run_job(weights: str, side: int, device: str, scale: str = "4") -> dict:
    done = subprocess.run(
        [sys.executable, "-c", JOB, weights, str(side), device, scale], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the {side}-pixel job failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
