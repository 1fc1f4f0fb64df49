"""An upscale whose result in float32 would not fit the process's memory still gives the exact bytes (issue
24): in a process of its own, the library is loaded, the whole result of a float image made once without a
limit (its hash the expected one: the same process and thread count, on which float results depend), then
the address space is capped (RLIMIT_AS) a little above what one tile's work takes, where the whole float32
result provably does not fit, and the result, taken in bands, hashes to the same bytes; and, written to a
PNG under a cap set again the same way (by bands, as the command line writes it), decodes to its 16 bits
(a float image: its float32 result, which the PNG stores in 16 bits, is the one that does not fit). One
process does both, so that the library is loaded and the whole result made once."""

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
from pathlib import Path
import numpy as np, torch
from invsr.files import upscale_file
from invsr.image_io import ImageFile, read_image, to_integer, write_image
from invsr.pipeline import InvSRPipeline
from invsr.request import UpscaleRequest
from invsr.weights import locate

torch.set_num_threads(1)
weights, side, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[4])
request = UpscaleRequest(**json.loads(sys.argv[3]))
pipeline = InvSRPipeline.load(locate(weights), device="cpu", dtype="fp32")
# float: the result in its own pixel type is the float32 one, which does not fit (PNG stores 16 bits)
image = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8).astype(np.float32) / 255
hard = resource.getrlimit(resource.RLIMIT_AS)[1]

def vm(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field + ":")).split()[1]) * 1024

write_image(folder / "warm.tif", ImageFile(image[:64, :64]))  # a few tiles, in bands to the PNG writer: pools warm
upscale_file(pipeline, folder / "warm.tif", folder / "warm_out.png", request)
one_tile = vm("VmPeak") - vm("VmSize")  # measured before the whole result's run (VmPeak is never reset)
whole_result = pipeline.upscale(image, request).image  # no limit yet
expected = {"bands": hashlib.sha256(whole_result.tobytes()).hexdigest()}
expected["png"] = hashlib.sha256(to_integer(whole_result, np.uint16).tobytes()).hexdigest()
write_image(folder / "in.tif", ImageFile(image))
del whole_result
whole = 3 * 4 * (request.scale * side) ** 2  # the result in float32

def capped():  # the address space capped at what is in use, one tile's work and 16 MB (a few rows of tiles in
    # float32, bands, a report); says whether the whole float32 result would fit under it
    resource.setrlimit(resource.RLIMIT_AS, (vm("VmSize") + one_tile + 16 * 2**20, hard))
    try:
        np.ones(whole // 4, np.float32)
        return True
    except MemoryError:
        return False

class Counted:  # the pipeline, its bands counted on their way to the PNG writer
    def __init__(self):
        self.rows = []
    def upscale(self, image, request, progress=None, on_band=None):
        if on_band is None:  # a writer that takes the whole result (PNG before issue 24)
            return pipeline.upscale(image, request, progress)
        counted = lambda top, band: self.rows.append(top) or on_band(top, band)  # noqa: E731
        return pipeline.upscale(image, request, progress, on_band=counted)

report = {}
fits, digest, rows = capped(), hashlib.sha256(), []
pipeline.upscale(image, request, on_band=lambda top, band: rows.append(top) or digest.update(band.tobytes()))
report["bands"] = {"sha256": digest.hexdigest(), "bands": len(rows), "whole_fits": fits}
resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
fits, counted = capped(), Counted()
upscale_file(counted, folder / "in.tif", folder / "out.png", request)
resource.setrlimit(resource.RLIMIT_AS, (hard, hard))  # the file decoded whole, to compare
digest = hashlib.sha256(read_image(folder / "out.png").pixels.tobytes()).hexdigest()
report["png"] = {"sha256": digest, "bands": len(counted.rows), "whole_fits": fits}
for way in report:
    report[way]["expected"] = expected[way]
print(json.dumps(report))
"""


def test_a_result_larger_than_the_memory_limit_comes_out_exact_in_bands_and_in_a_png(tiny_weights, tmp_path):
    # one heap, and large blocks always mapped (so returned when freed): the cap measures what is in use
    env = dict(os.environ, MALLOC_ARENA_MAX="1", MALLOC_MMAP_THRESHOLD_="1048576", OMP_NUM_THREADS="1")
    folder = str(tiny_weights.noise_predictor.parent)
    done = subprocess.run(
        [sys.executable, "-c", CAPPED, folder, str(SIDE), json.dumps(REQUEST), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for way, measured in report.items():
        assert not measured["whole_fits"], f"{way}: the cap is too loose to show anything: the float32 result fit"
        assert measured["bands"] > 1 and measured["sha256"] == measured["expected"], (way, measured)
