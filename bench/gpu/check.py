"""What only a real GPU can show, checked in about a minute on the tiny random weights:

    python bench/gpu/check.py [--device cuda] [--json FILE] [--skip compile,...]
    python bench/gpu/check.py --device cpu --small --skip compile,worker   # checks the script itself

- dtypes: `auto` picks bf16 where the card has it; bf16, fp16 and fp32 results beside the CPU's fp32 one
  (PSNR: the GPU must agree with the CPU up to the precision's rounding, MIN_PSNR);
- out of memory: with the process's share of the card capped at 1.5x what a 64-pixel tile needs, a job
  at 256-pixel tiles in batches of 4 must fall back (halving the batch, then smaller tiles) and give
  exactly what the settings it fell back to give uncapped;
- resampling: scales 2 and 3.3 (resampled per tile on the device) against the CPU's result, to float32
  rounding;
- batching: tile_batch 8 must give what tile_batch 1 gives, to float32 rounding (other kernels for
  another batch size: not bit for bit);
- torch.compile and channels-last (`--compile`): the eager result to the precision's rounding, the first
  and second job's time, and an image of another size served without compiling again (static shapes);
- the worker on the GPU: a real `invsr serve --device DEVICE` process and its client give exactly the
  in-process result.

Each check records its figures and whether it passed; one failing does not stop the others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# dB against a float32 result computed otherwise (on the CPU, in another batch, uncompiled): what each
# precision's rounding allows, with a margin under what an H100 measured (float32 63.2 to 65.2, bf16 45.7
# and 46.1, fp16 58.6: bench/results/gpu-check-H100-2026-11-26.json). Where the docs say "exactly", the
# check compares bytes.
MIN_PSNR = {"float32": 55.0, "bfloat16": 40.0, "float16": 50.0}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if error == 0 else 10 * math.log10(255.0**2 / error)


def photo(height: int, width: int) -> np.ndarray:
    from PIL import Image

    sample = Image.open(ROOT / "invsr" / "data" / "sample.png").convert("RGB")
    return np.asarray(sample.resize((width, height), Image.LANCZOS)).copy()


def load(weights, device: str, dtype: str):
    from invsr.pipeline import InvSRPipeline

    return InvSRPipeline.load(weights, device=device, dtype=dtype)


def check_dtypes(weights, device: str, image, cpu_result) -> dict:
    from invsr.devices import resolve_device, resolve_dtype

    rows = {"auto_dtype": str(resolve_dtype("auto", resolve_device(device))).removeprefix("torch.")}
    passed = True
    for dtype in ("fp32", "bf16", "fp16"):
        pipeline = load(weights, device, dtype)
        name = str(pipeline.dtype).removeprefix("torch.")
        result = pipeline.upscale(image, _request(seed=3))
        rows[name] = {"psnr_vs_cpu_fp32": round(psnr(result.image, cpu_result), 2), "seconds": result.report["seconds"]}
        passed &= rows[name]["psnr_vs_cpu_fp32"] >= MIN_PSNR[name]
    rows["passed"] = bool(passed)
    return rows


def check_resample(weights, device: str, image) -> dict:
    """Scales other than 4 are resampled tile by tile on the device (resample.py, float32 matrix products)."""
    rows, passed = {}, True
    on_cpu, on_device = load(weights, "cpu", "fp32"), load(weights, device, "fp32")
    for scale in (2.0, 3.3):
        request = _request(seed=8, scale=scale)
        cpu, gpu = on_cpu.upscale(image, request).image, on_device.upscale(image, request).image
        rows[f"x{scale}"] = {"size": list(gpu.shape[:2]), "psnr_vs_cpu_fp32": round(psnr(gpu, cpu), 2)}
        passed &= gpu.shape == cpu.shape and rows[f"x{scale}"]["psnr_vs_cpu_fp32"] >= MIN_PSNR["float32"]
    rows["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    rows["passed"] = bool(passed)
    return rows


def check_out_of_memory_fallback(weights, device: str, image) -> dict:
    """Cap the card at 1.5x what a 64-pixel tile needs; a 256-pixel batch of 4 must fall back and finish."""
    if not device.startswith("cuda"):
        return {"skipped": "needs CUDA (a capped memory fraction)"}
    pipeline = load(weights, device, "fp32")
    torch.cuda.reset_peak_memory_stats()
    pipeline.upscale(image, _request(seed=4, tile=64, tile_batch=1))
    allowed = int(1.5 * torch.cuda.max_memory_allocated())
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(allowed / torch.cuda.get_device_properties(0).total_memory)
    try:
        capped = pipeline.upscale(image, _request(seed=4, tile=256, tile_batch=4))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    tiling = capped.report["tiling"]
    same = pipeline.upscale(
        image, _request(seed=4, tile=tiling["tile"], overlap=tiling["overlap"], tile_batch=tiling["batch"])
    )
    identical = bool(np.array_equal(capped.image, same.image))
    return {
        "allowed_bytes": allowed,
        "tiling": tiling,
        "identical_to_uncapped_at_those_settings": identical,
        "psnr_vs_uncapped_at_those_settings": round(psnr(capped.image, same.image), 2),
        "passed": bool(tiling["notices"]) and identical,
    }


def check_batching(weights, device: str, image) -> dict:
    pipeline = load(weights, device, "fp32")
    one = pipeline.upscale(image, _request(seed=5, tile_batch=1))
    eight = pipeline.upscale(image, _request(seed=5, tile_batch=8))
    agreement = psnr(one.image, eight.image)
    seconds = {"batch1": one.report["seconds"], "batch8": eight.report["seconds"]}
    passed = agreement >= MIN_PSNR["float32"]
    return {"psnr_batch8_vs_batch1": round(agreement, 2), "seconds": seconds, "passed": passed}


def check_compile(weights, device: str, image) -> dict:
    """One tile; then an image of another size, which static shapes must not recompile for."""
    pipeline = load(weights, device, "auto")
    eager = pipeline.upscale(image, _request(seed=6))
    pipeline.optimize(compile=True)
    times = []
    for job in (image, image, image[:72, :96]):
        started = time.perf_counter()
        compiled = pipeline.upscale(job, _request(seed=6))
        times.append(round(time.perf_counter() - started, 3))
        if len(times) == 1:
            agreement = psnr(compiled.image, eager.image)
    no_recompile = times[2] < max(1.0, 3 * times[1])  # compiling again would take about as long as the first job
    dtype = str(pipeline.dtype).removeprefix("torch.")
    return {
        "first_job_seconds": times[0],
        "second_job_seconds": times[1],
        "other_size_job_seconds": times[2],
        "dtype": dtype,
        "psnr_vs_eager": round(agreement, 2),
        "passed": agreement >= MIN_PSNR[dtype] and no_recompile,
    }


def check_worker(weights, device: str, image, folder: Path) -> dict:
    from worker_helpers import WorkerProcess

    pipeline = load(weights, device, "auto")
    local = pipeline.upscale(image, _request(seed=7)).image
    worker = WorkerProcess(
        folder / "worker", weights.noise_predictor.parent, "--preload", "--device", device
    ).wait_ready(timeout=300)
    try:
        with worker.client(timeout=60) as client:
            array = np.ascontiguousarray(image)
            result = client.upscale(
                memoryview(array).cast("B"), image.shape[1], image.shape[0], 3, "u8", _request(seed=7)
            )
            remote = np.frombuffer(result.pixels, np.uint8).reshape(result.height, result.width, 3)
            hello = client.hello()
    finally:
        worker.stop()
    identical = bool(np.array_equal(remote, local))
    agreement = round(psnr(remote, local), 2)
    return {
        "worker_model": hello.model.to_dict(),
        "identical": identical,
        "psnr_vs_in_process": agreement,
        "passed": identical,
    }


def _request(**fields):
    from invsr.request import UpscaleRequest

    return UpscaleRequest(**fields)


def environment(device: str) -> dict:
    import diffusers
    import transformers

    facts = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
    }
    if device.startswith("cuda"):
        facts |= {
            "card": torch.cuda.get_device_name(0),
            "cuda": torch.version.cuda,
            "bf16": torch.cuda.is_bf16_supported(),
            "memory_bytes": torch.cuda.get_device_properties(0).total_memory,
        }
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--skip", default="", help="checks to leave out, comma-separated (say compile, slow on a CPU)")
    parser.add_argument(
        "--small", action="store_true", help="a quarter-size image: checks the script in minutes on a CPU (no figures)"
    )
    args = parser.parse_args()
    from invsr.pipeline import InvSRPipeline, quiet_library_logs
    from invsr.tiny_weights import write_tiny_weights

    quiet_library_logs()
    folder = Path(tempfile.mkdtemp(prefix="invsr-gpu-check-"))
    weights = write_tiny_weights(folder / "weights")
    image = photo(56, 72) if args.small else photo(200, 264)  # small: one 64-pixel tile's worth
    cpu_result = InvSRPipeline.load(weights, device="cpu", dtype="fp32").upscale(image, _request(seed=3)).image
    results = {"environment": environment(args.device)}
    checks = {
        "dtypes": lambda: check_dtypes(weights, args.device, image, cpu_result),
        "resample": lambda: check_resample(weights, args.device, image),
        "out_of_memory_fallback": lambda: check_out_of_memory_fallback(weights, args.device, photo(512, 512)),
        "batching": lambda: check_batching(weights, args.device, image),
        "compile": lambda: check_compile(weights, args.device, photo(128, 128)),
        "worker": lambda: check_worker(weights, args.device, image, folder),
    }
    for name in args.skip.split(","):
        checks.pop(name, None)
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            results[name] = check()
        except Exception:
            results[name] = {"passed": False, "error": traceback.format_exc(limit=8)}
        results[name]["check_seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {json.dumps(results[name], default=str)}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))  # partial results survive a timeout
    failed = [name for name, row in results.items() if isinstance(row, dict) and row.get("passed") is False]
    print("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
    with contextlib.suppress(Exception):
        torch.cuda.synchronize()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
