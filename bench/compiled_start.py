"""One compiled start, timed, in this (fresh) process: load the networks, compile them with the bundle of an
earlier start if our cache folder holds one (invsr/compile_cache.py), and upscale one image: what a
`invsr serve --compile` worker does before its first result. Prints one line of JSON.

    python bench/compiled_start.py --weights DIR [--device cuda] [--side 1024]   # real or tiny weights on disk
    python bench/compiled_start.py --random-full-size --device cuda              # SD-Turbo's shapes, random values
    python bench/compiled_start.py --tiny-random --eager                         # checks the script, on the CPU

Run it twice with the same INVSR_CACHE for a cold and a warm start (bench/gpu/run.py's start rows and
tests/unit/test_compile_cache.py do); give each run its own empty TORCHINDUCTOR_CACHE_DIR, so that what the warm
start finds is our bundle, not PyTorch's own caches left from the cold one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # before torch is imported: a start includes that

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "gpu"))


def load(args):
    from invsr.pipeline import InvSRPipeline

    if args.tiny_random:  # the test weights, written here: checks this script without weights on disk
        import tempfile

        from invsr.tiny_weights import write_tiny_weights

        weights = write_tiny_weights(Path(tempfile.mkdtemp(prefix="invsr-start-")) / "tiny")
        return InvSRPipeline.load(weights, device=args.device, dtype=args.dtype)
    if args.random_full_size:  # the GPU benchmark's networks: no 2.6 GB of weights needed
        from run import build, pipeline_for

        device = torch.device(args.device)
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        return pipeline_for(build(False, device, dtype)[0], device, dtype)
    from invsr.weights import locate

    return InvSRPipeline.load(locate(args.weights), device=args.device, dtype=args.dtype)


def torch_cache_counters() -> dict:
    """How often PyTorch's own caches hit and missed in this process (its counters: a diagnosis, not an API)."""
    from torch._dynamo.utils import counters

    return {group: dict(counters[group]) for group in ("inductor", "aot_autograd") if group in counters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--random-full-size", action="store_true")
    parser.add_argument("--tiny-random", action="store_true")
    parser.add_argument("--eager", action="store_true", help="do not compile: only checks the script")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--side", type=int, default=128, help="the first image's side, in input pixels")
    args = parser.parse_args()
    imported = time.perf_counter()
    pipeline = load(args)
    loaded = time.perf_counter()
    pipeline.optimize(compile=not args.eager, channels_last=pipeline.device.type == "cuda")
    pipeline.warm_up()  # compiles, or loads what an earlier start compiled
    compiled = time.perf_counter()
    image = (np.random.default_rng(0).random((args.side, args.side, 3)) * 255).astype(np.uint8)
    result = pipeline.upscale(image)
    if pipeline.device.type == "cuda":
        torch.cuda.synchronize(pipeline.device)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "import_seconds": imported - STARTED,
                "load_seconds": loaded - imported,
                "compile_seconds": compiled - loaded,
                "first_image_seconds": done - compiled,
                "to_first_result_seconds": done - STARTED,
                "compile_cache": pipeline.load_report.get("compile_cache", {}),
                "torch_cache_counters": torch_cache_counters(),
                "output": list(result.image.shape),
                "device": str(pipeline.device),
                "dtype": str(pipeline.dtype),
            }
        )
    )


if __name__ == "__main__":
    main()
