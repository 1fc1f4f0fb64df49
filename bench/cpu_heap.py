"""The networks' working memory on the CPU: peak resident size of one library upscale (tiny weights, tiles
of 128, the result taken in bands and dropped) over the peak after a 64 x 64 warm-up, and its seconds.
glibc serves a freed large block's size from its heap afterwards (its mmap threshold rises), so the peak
can grow with the number of tiles; run it under MALLOC_MMAP_THRESHOLD_=N to compare (one process a run):

    OMP_NUM_THREADS=1 python bench/cpu_heap.py 512 &
    OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=1048576 python bench/cpu_heap.py 512
"""

import json
import os
import resource
import sys
import tempfile
import time

import numpy as np

from invsr.pipeline import InvSRPipeline
from invsr.request import UpscaleRequest
from invsr.tiny_weights import write_tiny_weights


def main() -> None:
    side = int(sys.argv[1])
    pipeline = InvSRPipeline.load(write_tiny_weights(tempfile.mkdtemp()), device="cpu")
    rng = np.random.default_rng(0)
    request = UpscaleRequest(tile=128, overlap=16, steps=1)
    pipeline.upscale((rng.random((64, 64, 3)) * 255).astype(np.uint8), request)
    idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    image = (rng.random((side, side, 3)) * 255).astype(np.uint8)
    started = time.perf_counter()
    pipeline.upscale(image, request, on_band=lambda top, rows: None)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row = {
        "input": side,
        "mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc's default (rising)"),
        "peak_over_warm_up_mb": round((peak - idle) / 1e6),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
