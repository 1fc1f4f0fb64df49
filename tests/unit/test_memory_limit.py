"""An upscale whose result in float32 would not fit the process's memory still gives the exact bytes (issue
24): in a process of its own, the library is loaded, the whole result made once without a limit (its hash
the expected one: the same process and thread count, on which float results depend), then the address
space is capped (RLIMIT_AS) a little above what one tile's work takes, where the whole float32 result
provably does not fit, and the result, taken in bands, hashes to the same bytes; or, written to a PNG under
the cap (by bands, as the command line writes it), decodes to them (a float image: its float32 result,
which the PNG stores in 16 bits, is the one that does not fit)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc: Linux")]

SIDE = 256  # 2048 x 2048 out at x8: 50 MB of float32 RGB
# Small tiles: one tile's work is far below the result's. x8 (the model's x4, then resampled tile by tile) makes
# the result as large as x4 of a 512-pixel image for a quarter of the model's work.
REQUEST = dict(tile=32, overlap=8, scale=8, seed=7)

CAPPED = r"""
import hashlib, json, resource, sys
import numpy as np, torch
from invsr.pipeline import InvSRPipeline
from invsr.request import UpscaleRequest
from invsr.weights import locate

torch.set_num_threads(1)
weights, side, request = sys.argv[1], int(sys.argv[2]), UpscaleRequest(**json.loads(sys.argv[3]))
png = sys.argv[4] if len(sys.argv) > 4 else None  # a folder: the result written to a PNG there
pipeline = InvSRPipeline.load(locate(weights), device="cpu", dtype="fp32")
image = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
if png:  # float: the result in its own pixel type is the float32 one, which does not fit (PNG stores 16 bits)
    image = image.astype(np.float32) / 255

def vm(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field + ":")).split()[1]) * 1024

if png:  # a few tiles, through the PNG writer: pools and code warm
    from pathlib import Path
    from invsr.files import upscale_file
    from invsr.image_io import ImageFile, read_image, to_integer, write_image
    write_image(Path(png) / "warm.tif", ImageFile(image[:64, :64]))
    upscale_file(pipeline, Path(png) / "warm.tif", Path(png) / "warm_out.png", request)
else:
    pipeline.upscale(image[:64, :64], request, on_band=lambda top, rows: None)  # a few tiles: pools and code warm
one_tile = vm("VmPeak") - vm("VmSize")  # measured before the whole result's run (VmPeak is never reset)
whole_result = pipeline.upscale(image, request).image  # no limit yet
if png:
    whole_result = to_integer(whole_result, np.uint16)
    write_image(Path(png) / "in.tif", ImageFile(image))
expected = hashlib.sha256(whole_result.tobytes()).hexdigest()
del whole_result
whole = 3 * 4 * (request.scale * side) ** 2  # the result in float32
cap = vm("VmSize") + one_tile + 16 * 2**20  # and 16 MB for a few rows of tiles in float32, bands, a report
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
try:
    np.ones(whole // 4, np.float32)
    fits = True
except MemoryError:
    fits = False
digest, rows = hashlib.sha256(), []
def take(top, band):
    digest.update(band.tobytes())
    rows.append(top)
class Counted:  # the pipeline, its bands counted on their way to the PNG writer
    def upscale(self, image, request, progress=None, on_band=None):
        if on_band is None:  # a writer that takes the whole result (PNG before issue 24)
            return pipeline.upscale(image, request, progress)
        counted = lambda top, band: rows.append(top) or on_band(top, band)  # noqa: E731
        return pipeline.upscale(image, request, progress, on_band=counted)
if png:
    upscale_file(Counted(), Path(png) / "in.tif", Path(png) / "out.png", request)
    headroom = cap - vm("VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # the file decoded whole, to compare
    digest.update(read_image(Path(png) / "out.png").pixels.tobytes())
else:
    pipeline.upscale(image, request, on_band=take)
    headroom = cap - vm("VmSize")
got = digest.hexdigest()
print(json.dumps({"sha256": got, "expected": expected, "bands": len(rows), "whole_fits": fits, "headroom": headroom}))
"""


@pytest.mark.parametrize("written", ["bands", "png"])
def test_a_result_larger_than_the_memory_limit_comes_out_exact(tiny_weights, tmp_path, written):
    # one heap, and large blocks always mapped (so returned when freed): the cap measures what is in use
    env = dict(os.environ, MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="1048576", OMP_NUM_THREADS="1")
    folder = str(tiny_weights.noise_predictor.parent)
    png = [str(tmp_path)] if written == "png" else []
    done = subprocess.run(
        [sys.executable, "-c", CAPPED, folder, str(SIDE), json.dumps(REQUEST), *png],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["whole_fits"], "the cap is too loose to show anything: the float32 result fit under it"
    assert report["bands"] > 1 and report["sha256"] == report["expected"], report
