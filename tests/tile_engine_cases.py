"""A matrix of upscales that exercises every path of the tile engine, and the recorded results it must keep.

Recorded once from the engine as it was before it was cut into parts (one `TiledUpscale` class), so that
the parts can be shown to give byte for byte the same images, tiling reports and progress sequences.
`python tests/tile_engine_cases.py` records again: only ever do that on purpose, when a change of
results is intended, and say so in the commit.

The cases go through `InvSRPipeline.upscale` (the public path) on the tiny random weights. Running out
of device memory is simulated at the UNet, the first network that sees a whole batch at latent size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from invsr.devices import cpu_threads

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "data" / "tile_engine_results.npz"
SAMPLE = HERE.parent / "invsr" / "data" / "sample.png"
BENCH = HERE.parent / "bench"
THREADS = 1  # CPU kernels split their sums by thread: other thread counts give other last bits
STORED_BYTES = 64_000  # results up to this size are stored whole, larger ones by their SHA-256 only


def platform() -> dict:
    """What byte-identical float results depend on besides our code: the torch build and its CPU kernels."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def recording_threads():
    """Run with the thread count the results were recorded with, and restore the caller's after."""
    return cpu_threads(THREADS)


def images() -> dict[str, np.ndarray]:
    """Inputs cut from the bundled photo: sides that are not multiples of 16, and sides of 1 to 3 pixels."""
    from PIL import Image

    photo = np.asarray(Image.open(SAMPLE).convert("RGB")).copy()
    rgb = photo[30:70, 40:96].copy()  # 40 x 56: 6 tiles of 32, 2 of 48
    alpha = np.clip(np.linspace(-80, 330, 56)[None, :] + np.linspace(0, 60, 40)[:, None], 0, 255).astype(np.uint8)
    return {
        "rgb": rgb,
        "small": photo[30:54, 40:80].copy(),  # 24 x 40: one tile of 64
        "large_gray16": (photo[10:82, 20:110, 1].astype(np.uint16) * 257),  # 72 x 90: 4 tiles of 64
        "gray_70x90": photo[40:110, 30:120, 0].copy(),  # 12 tiles of 32
        "rgba": np.dstack([rgb, alpha]),  # partly transparent, some pixels fully
        "gray_alpha_float": np.dstack([rgb[..., 0], alpha]).astype(np.float32) / 255,
        "rgb_float": rgb.astype(np.float32) / 255,
        "gray8": rgb[..., 2].copy(),
        "row_1x37": photo[5:6, 3:40].copy(),
        "rows_3x50": photo[60:63, 10:60].copy(),
        "cols_37x2": photo[3:40, 90:92].copy(),
        "pixel_1x1": photo[64:65, 64:65].copy(),
        "tiny_2x3": photo[70:72, 70:73].copy(),
    }


@dataclasses.dataclass(frozen=True)
class Case:
    image: str
    request: dict  # UpscaleRequest fields
    static_shapes: bool = False  # the compiled networks' tiling, on eager networks
    max_batch: int | None = None  # simulated device memory: tiles per batch that fit
    max_latent: int | None = None  # simulated device memory: the largest latent side that fits


CASES = {
    "one_tile": Case("small", dict(tile=64)),
    "tiles_32": Case("rgb", dict(tile=32, overlap=8)),
    "tiles_48_overlap_4": Case("rgb", dict(tile=48, overlap=4, color_fix="ycbcr")),
    "tiles_64_overlap_16_gray16": Case("large_gray16", dict(tile=64, overlap=16)),
    "grid_3x4_batch_2": Case("gray_70x90", dict(tile=32, overlap=8, tile_batch=2, scale=2)),
    "scale_2": Case("rgb", dict(tile=32, overlap=8, scale=2)),
    "scale_1_4_ycbcr": Case("rgb", dict(tile=32, overlap=6, scale=1.4, color_fix="ycbcr")),
    "width_100": Case("rgb", dict(tile=48, overlap=8, width=100)),
    "height_150_none": Case("gray8", dict(tile=32, overlap=8, height=150, color_fix="none")),
    "width_and_height": Case("small", dict(tile=32, overlap=4, width=61, height=130)),
    "rgba": Case("rgba", dict(tile=32, overlap=8)),
    "gray_alpha_float": Case("gray_alpha_float", dict(tile=48, overlap=8, scale=3)),
    "float_none_steps_3": Case("rgb_float", dict(tile=32, overlap=8, color_fix="none", steps=3)),
    "batch_3_ycbcr_steps_3": Case("rgb", dict(tile=32, overlap=8, tile_batch=3, color_fix="ycbcr", steps=3, seed=5)),
    "batch_3_wavelet": Case("rgb", dict(tile=32, overlap=0, tile_batch=3)),
    "row_1x37": Case("row_1x37", dict(tile=32, overlap=8)),
    "rows_3x50_batch_3": Case("rows_3x50", dict(tile=32, overlap=8, tile_batch=3, scale=2.5)),
    "cols_37x2": Case("cols_37x2", dict(tile=32, overlap=8, color_fix="ycbcr")),
    "pixel_1x1": Case("pixel_1x1", dict(tile=32)),
    "tiny_2x3_scale_5": Case("tiny_2x3", dict(tile=32, scale=5)),
    "static_batch_3": Case("rgb", dict(tile=32, overlap=8, tile_batch=3), static_shapes=True),
    "static_small_scale_2": Case("small", dict(tile=32, overlap=8, scale=2), static_shapes=True),
    "static_1x1": Case("pixel_1x1", dict(tile=32, tile_batch=2), static_shapes=True),
    "oom_halves_the_batch": Case("rgb", dict(tile=32, overlap=8, tile_batch=3), max_batch=1),
    "oom_smaller_tiles": Case("rgb", dict(tile=64, overlap=16, tile_batch=2), max_latent=16),
    "oom_static": Case("rgb", dict(tile=48, overlap=8, tile_batch=3), static_shapes=True, max_batch=2, max_latent=16),
}


@contextlib.contextmanager
def limited_memory(unet, max_batch: int | None, max_latent: int | None):
    """The UNet raises what a full GPU raises when a batch has more tiles, or larger latents, than fit."""
    forward = unet.forward

    def limited(sample, *args, **kwargs):
        too_many = max_batch is not None and sample.shape[0] > max_batch
        too_large = max_latent is not None and max(sample.shape[-2:]) > max_latent
        if too_many or too_large:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return forward(sample, *args, **kwargs)

    unet.forward = limited
    try:
        yield
    finally:
        unet.forward = forward


def run_case(pipeline, case: Case, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The image, and what else must not change: the tiling report, the progress sequence, the stages."""
    from invsr.request import UpscaleRequest

    seen = []
    pipeline.compiled_shapes = set() if case.static_shapes else None
    try:
        with limited_memory(pipeline.models.unet, case.max_batch, case.max_latent):
            result = pipeline.upscale(inputs[case.image], UpscaleRequest(**case.request), progress=seen.append)
    finally:
        pipeline.compiled_shapes = None
    facts = {
        "tiling": result.report["tiling"],
        "progress": [[p.stage, p.done, p.total, p.paced_since[1]] for p in seen],
        "stages": sorted(result.report["seconds"]),
        "shape": list(result.image.shape),
        "dtype": str(result.image.dtype),
        "sha256": hashlib.sha256(np.ascontiguousarray(result.image).tobytes()).hexdigest(),
    }
    return result.image, facts


# The comparison tilings of the benchmarks (bench/tile_variants.py): hard cuts instead of blending,
# fresh noise per batch instead of one draw for the image.
BENCH_CASES = {
    "bench_hard_cut": dict(hard_cut=True),
    "bench_fresh_noise_batch_2": dict(fresh_noise=True, batch=2),
}


def run_bench_case(pipeline, options: dict, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The x4 result of the 24 x 40 image in 32-pixel tiles with one of the benchmarks' options."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import tile_variants

    from invsr.progress import StageTimer
    from invsr.tiles import TileRecipe, TileSettings

    options = dict(options)
    settings = TileSettings(32, 8, options.pop("batch", 1))
    lr = torch.from_numpy(inputs["small"]).permute(2, 0, 1)[None].float() / 255
    timer = StageTimer(pipeline.device)
    result, plan = tile_variants.upscale(
        pipeline.models, pipeline.device, lr, TileRecipe((200,), "wavelet"), 3, settings, timer, **options
    )
    image = result[0].permute(1, 2, 0).numpy()
    report = {**plan.describe(), "batch": settings.batch, "static_shapes": False, "notices": []}
    facts = {"tiling": report, "sha256": hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()}
    return image, facts


def load_recorded() -> tuple[dict[str, np.ndarray], dict, dict]:
    """(the images stored whole, by case; facts by case; the platform they were recorded on)."""
    with np.load(RECORDED) as data:
        meta = json.loads(str(data["meta"]))
        return {name: data[name] for name in meta["facts"] if name in data.files}, meta["facts"], meta["platform"]


def record() -> None:
    import tempfile

    from invsr.pipeline import InvSRPipeline
    from invsr.tiny_weights import write_tiny_weights

    pipeline = InvSRPipeline.load(write_tiny_weights(Path(tempfile.mkdtemp()) / "tiny"), device="cpu", dtype="fp32")
    inputs = images()
    arrays, facts = {}, {}
    with recording_threads():
        for name, case in CASES.items():
            arrays[name], facts[name] = run_case(pipeline, case, inputs)
            print(name, facts[name]["shape"], facts[name]["tiling"]["tiles"], facts[name]["tiling"]["notices"])
        for name, options in BENCH_CASES.items():
            arrays[name], facts[name] = run_bench_case(pipeline, options, inputs)
    stored = {name: array for name, array in arrays.items() if array.nbytes <= STORED_BYTES}
    meta = json.dumps({"platform": platform(), "threads": THREADS, "facts": facts})
    RECORDED.parent.mkdir(exist_ok=True)
    np.savez_compressed(RECORDED, meta=np.array(meta), **stored)
    print(f"wrote {RECORDED} ({RECORDED.stat().st_size:,} bytes)")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    record()
