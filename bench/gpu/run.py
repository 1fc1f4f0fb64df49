"""GPU benchmark: one 1024 x 1024 -> 4096 x 4096 job with full-size networks, the reference implementation's
way against ours. Written to finish within 6 minutes on one H100, warm-up and compilation included.

    python bench/gpu/run.py [--json FILE]          # on a CUDA GPU
    python bench/gpu/run.py --small                # on the CPU, tiny networks and a small image: checks the script

The networks have random weights (speed does not depend on their values) and full size: SD-Turbo's UNet
(865.9 M parameters) and VAE, its CLIP text encoder, and the InvSR noise predictor (33.8 M). Rows:

- reference: fp16, eager, 128-pixel input tiles at a stride of 64 (half a tile), batch 8, fresh noise per
  tile, the prompt re-encoded by the text encoder for every batch (bench/reference_tiling.py);
- ours: our default settings (bf16, 128-pixel tiles overlapping by 16, automatic batch);
- ours at batches 1 to 32 (one run each): speed and peak memory against the batch, which calibrate
  MAX_AUTO_BATCH and BYTES_PER_OUTPUT_PIXEL of invsr/tiles/settings.py (the B/px column). On an H100
  (bench/results/gpu-H100-2026-11-26.json) batches of 8 ran 2.1x faster per tile than single tiles and
  gave 89% of batch 32's speed for a third of its memory (6.4 GB against 19.4 GB); the bytes per output
  pixel per dtype byte were 1038-1039 at batches of 2 to 32, 1232 for one tile, less compiled (1300
  leaves a margin);
- ours with the stage timer not waiting for the GPU at each stage's end: what those waits cost;
- ours in fp16, the reference's dtype;
- ours with cuDNN's autotuning of convolution algorithms (not in the default rows);
- ours, compiled: channels-last and torch.compile (InvSRPipeline.optimize, `--compile`), automatic
  batch; compiled, tiles are all full-size and the last batch is filled (static shapes), which costs
  some work on this image (81 tiles in batches of 8: 88 tiles' work) but compiles once for every image;
  then the same without the stage timer's waits;
- ours, channels-last at batch 16, without compiling: what the layout and batch alone give;
- not in the default rows: compiled without channels-last, and compiled at batch 16;
- with `--starts`, before the rows: a cold and a warm compiled start, each in a fresh process, to the first
  result of a 1024 x 1024 image (compiled_starts; invsr/compile_cache.py keeps what the first compiled).

`--rows` picks rows by key (see DEFAULT_ROWS). Rows run in the order given; each writes the JSON as it ends, a
failing row is recorded and the next runs,
and no row starts after --deadline seconds (bench/gpu/device.sh runs this within a time limit).

Per row: milliseconds per 512 x 512 output tile of the image (the image's output area over 512^2, so
the reference's extra overlap counts against it), output megapixels per second, peak GPU memory, and the
fraction of the compute limit: 5.76 TFLOP per 512^2 tile for one step (docs/METHOD.md, "Cost") at the card's peak
dense bf16/fp16 rate.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TFLOP_PER_TILE = 5.76  # one step, 512 x 512 output (docs/METHOD.md, "Cost")
SWEEP_BATCHES = (1, 2, 4, 16, 32)  # and 8, the default row's
DEFAULT_ROWS = (
    "reference,default,batch1,batch2,batch4,batch16,batch32,unsynced,fp16,compiled,compiled-unsynced,channels-last"
)
PEAK_TFLOPS = {
    "H100": 790.0,
    "H200": 790.0,
    "A100": 312.0,
}  # dense bf16/fp16 tensor-core peaks (docs/METHOD.md, "Cost")

# SD-Turbo's CLIP text encoder (SD 2.1's OpenCLIP ViT-H text tower); the UNet and VAE shapes are in invsr.tiny_weights.
SD_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=512,
)


def build(small: bool, device: torch.device, dtype: torch.dtype):
    """Random-weight networks of the real (or, with `small`, the tiny test) shapes, on the device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from invsr.noise_predictor import NoisePredictor, NoisePredictorConfig
    from invsr.sampling import Models
    from invsr.tiny_weights import SD_TURBO_UNET, SD_TURBO_VAE, TEXT_WIDTH, TINY_NOISE_PREDICTOR, TINY_UNET, TINY_VAE

    text = (
        dict(SD_TEXT, hidden_size=TEXT_WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        if small
        else SD_TEXT
    )
    with torch.device(device):
        unet = UNet2DConditionModel(**(TINY_UNET if small else SD_TURBO_UNET)).to(dtype).eval()
        vae = AutoencoderKL(**(TINY_VAE if small else SD_TURBO_VAE)).to(dtype).eval()
        predictor = NoisePredictor(TINY_NOISE_PREDICTOR if small else NoisePredictorConfig()).to(dtype).eval()
        encoder = CLIPTextModel(CLIPTextConfig(**text)).to(dtype).eval()
    for network in (unet, vae, predictor, encoder):
        network.requires_grad_(False)
    ids = torch.randint(0, 49408 if not small else 256, (1, 77), device=device)
    with torch.inference_mode():
        embedding = encoder(ids)[0]
    counts = {
        name: sum(p.numel() for p in net.parameters())
        for name, net in (("unet", unet), ("vae", vae), ("noise_predictor", predictor), ("text_encoder", encoder))
    }
    return Models(predictor, unet, vae, embedding), encoder, ids, counts


def pipeline_for(models, device, dtype):
    from invsr.pipeline import InvSRPipeline
    from invsr.weights import WeightPaths

    fake = WeightPaths(Path("/random/sd-turbo"), Path("/random/noise_predictor.pth"), "random weights (benchmark)")
    return InvSRPipeline(models, fake, device, dtype, {"seconds": 0})


def run_reference(models, encoder, ids, device, image, batch):
    import reference_tiling

    from invsr.progress import StageTimer

    lr = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    class ReencodingModels:  # re-encodes the prompt for every batch, as the reference does per call
        def __getattr__(self, name):
            if name == "prompt_embedding":
                with torch.inference_mode():
                    return encoder(ids)[0]
            return getattr(models, name)

    reference_tiling.upscale(ReencodingModels(), device, lr, (200,), 0, "wavelet", StageTimer(device), batch=batch)


def reference_row(args, device, dtype, image, side, counts: dict) -> dict:
    """The reference's way, with its own fp16 networks (freed when this returns)."""
    models, encoder, ids, built = build(args.small, device, dtype)
    counts.update(built)
    print(f"  parameters: {counts}", flush=True)
    return measure(
        "reference (fp16, eager, 128/64 tiles, batch 8, prompt per call)",
        lambda: run_reference(models, encoder, ids, device, image, 8),
        device,
        side,
        args.warmups,
        3,
        args.budget,
    )


@contextlib.contextmanager
def stage_synchronization(synced: bool):
    """With `synced` False, the pipeline's stage timer does not wait for the device at each stage's end
    (measuring what those waits cost; the stage times are then only where the host waited)."""
    import invsr.progress

    waiting = invsr.progress.synchronize
    invsr.progress.synchronize = waiting if synced else (lambda device: None)
    try:
        yield
    finally:
        invsr.progress.synchronize = waiting


@contextlib.contextmanager
def cudnn_autotuning(enabled: bool):
    """torch.backends.cudnn.benchmark: time cuDNN's convolution algorithms for each new shape, keep the fastest."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def compiled_starts(small: bool, side: int, folder: Path) -> list[dict]:
    """A cold and then a warm compiled start, each in a fresh process (bench/compiled_start.py): from the
    interpreter's start to the first result of a `side` x `side` image. Both share our cache folder (INVSR_CACHE),
    where the cold start leaves its bundle (invsr/compile_cache.py); each has its own empty PyTorch cache folder
    (TORCHINDUCTOR_CACHE_DIR), so that what the warm one finds is our bundle alone. With `small`, on the CPU, the
    networks are the tiny ones and not compiled (a CPU compile takes minutes): only the script is checked."""
    starts = []
    for name in ("cold", "warm"):
        env = dict(os.environ, INVSR_CACHE=str(folder / "invsr-cache"), TORCHINDUCTOR_CACHE_DIR=str(folder / name))
        command = [sys.executable, str(HERE.parent / "compiled_start.py"), "--side", str(side)]
        command += ["--tiny-random", "--eager"] if small else ["--random-full-size", "--device", "cuda"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
        row = {"name": f"compiled start, {name}", "wall_seconds": time.perf_counter() - started}
        if done.returncode == 0:
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {row['name']}: {row['to_first_result_seconds']:.1f} s to the first result", flush=True)
        else:
            row["error"] = done.stderr[-3000:]
            print(row["error"], flush=True)
        starts.append(row)
    return starts


def measure(name, action, device, image_side, warmups, runs, budget_s) -> dict:
    """Median seconds of `runs` (fewer if the time budget runs out), peak memory, derived rates."""
    started = time.perf_counter()
    for _ in range(warmups):
        action()
    warm = time.perf_counter() - started
    started = time.perf_counter()  # the budget is for the timed runs
    torch.cuda.reset_peak_memory_stats(device) if device.type == "cuda" else None
    times = []
    while len(times) < runs and (not times or time.perf_counter() - started < budget_s):
        t = time.perf_counter()
        action()
        torch.cuda.synchronize(device) if device.type == "cuda" else None
        times.append(time.perf_counter() - t)
    seconds = statistics.median(times)
    out_side = 4 * image_side
    tiles = out_side**2 / 512**2
    row = {
        "name": name,
        "seconds": seconds,
        "runs": len(times),
        "warmup_seconds": warm,
        "ms_per_512_tile": 1000 * seconds / tiles,
        "output_mp_per_s": out_side**2 / 1e6 / seconds,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }
    print(
        f"  {name}: {seconds:.2f} s ({row['ms_per_512_tile']:.1f} ms per 512^2 tile), warm-up {warm:.1f} s", flush=True
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny networks, a 128 x 128 image, on the CPU")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timed runs per row, at most")
    parser.add_argument("--warmups", type=int, default=1, help="untimed runs before each row's timed ones")
    parser.add_argument("--side", type=int, default=None, help="the image's side (default 1024; 128 with --small)")
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"which rows, in order (default {DEFAULT_ROWS})")
    parser.add_argument("--deadline", type=float, default=300.0, help="start no row after this many seconds")
    parser.add_argument(
        "--starts", action="store_true", help="first, a cold and a warm compiled start in fresh processes"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    side = args.side or (128 if args.small else 1024)
    starts = []
    if args.starts:  # before this process takes any GPU memory
        folder = Path(tempfile.mkdtemp(prefix="invsr-starts-"))
        starts = compiled_starts(args.small, side, folder)
        # The rows compiled here then find PyTorch's caches as the cold start left them: compiling is not
        # what they measure, and it costs the GPU session minutes.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "cold")
    device = torch.device("cpu") if args.small else torch.device("cuda")
    card = "CPU" if args.small else torch.cuda.get_device_name(device)
    image = (torch.rand(side, side, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    from invsr.pipeline import quiet_library_logs
    from invsr.request import UpscaleRequest

    quiet_library_logs()
    print(f"{card}: {side}^2 -> {4 * side}^2", flush=True)
    fp16 = torch.float32 if args.small else torch.float16
    ours_dtype = torch.float32 if args.small else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    counts, pipelines = {}, {}

    def pipeline(kind: str):
        """Our pipelines, each built once: 'default' (eager), 'fp16' (eager, the reference's dtype),
        'compiled' (channels-last and torch.compile, which change a pipeline for good) and
        'compiled-contiguous' (torch.compile alone)."""
        if kind not in pipelines:
            dtype = fp16 if kind == "fp16" else ours_dtype
            pipelines[kind] = pipeline_for(build(args.small, device, dtype)[0], device, dtype)
            if kind == "default":
                counts["our_model_bytes"] = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
            if kind.startswith("compiled"):
                pipelines[kind].optimize(compile=not args.small, channels_last=kind == "compiled")
        return pipelines[kind]

    def ours_row(name, kind="default", batch="auto", channels_last=False, synced=True, cudnn_benchmark=False, runs=3):
        def row():
            chosen = pipeline(kind)
            if channels_last:
                chosen.optimize(compile=False)
            reports = []
            weights = (
                torch.cuda.memory_allocated(device) if device.type == "cuda" else None
            )  # all pipelines built so far
            with stage_synchronization(synced), cudnn_autotuning(cudnn_benchmark):
                measured = measure(
                    name,
                    lambda: reports.append(chosen.upscale(image, UpscaleRequest(tile_batch=batch)).report),
                    device,
                    side,
                    args.warmups,
                    runs,
                    args.budget,
                )
            tiling = reports[-1]["tiling"]
            measured["tiling"] = {key: tiling[key] for key in ("tile", "overlap", "batch", "tiles", "notices")}
            measured["stage_seconds"] = reports[-1]["seconds"]
            if measured["peak_gpu_bytes"]:  # what tiles/settings.py's BYTES_PER_OUTPUT_PIXEL estimates
                batch_pixels = tiling["batch"] * (4 * tiling["tile"]) ** 2
                measured["bytes_per_output_pixel_per_dtype_byte"] = round(
                    (measured["peak_gpu_bytes"] - weights) / batch_pixels / chosen.dtype.itemsize
                )
            return measured

        return row

    catalogue = {
        "reference": (
            "reference (fp16, eager, 128/64 tiles, batch 8, prompt per call)",
            lambda: reference_row(args, device, fp16, image, side, counts),
        ),
        "default": ("ours (default: 128/16 tiles, automatic batch)", None),
        # memory and speed against the batch, eager: calibrates tiles/settings.py's BYTES_PER_OUTPUT_PIXEL and
        # MAX_AUTO_BATCH
        **{f"batch{n}": (f"ours, batch {n}", dict(batch=n, runs=1)) for n in SWEEP_BATCHES},
        "unsynced": ("ours, default, stages not waited for", dict(synced=False)),
        "fp16": ("ours, fp16", dict(kind="fp16")),
        "cudnn-benchmark": ("ours, cuDNN autotuning (cudnn.benchmark)", dict(cudnn_benchmark=True)),
        "compiled": ("ours, compiled (channels-last, torch.compile, automatic batch)", dict(kind="compiled")),
        "compiled-unsynced": ("ours, compiled, stages not waited for", dict(kind="compiled", synced=False)),
        # not in the default rows (each compiles again, about 100 s on an H100): the open questions of
        # bench/results/gpu-H100-2026-11-26.json, whether compiled runs faster without channels-last
        # (as eager does) and how much larger batches add when compiled
        "compiled-contiguous": ("ours, compiled, default memory layout", dict(kind="compiled-contiguous")),
        "compiled-batch16": ("ours, compiled, batch 16", dict(kind="compiled", batch=16)),
        "channels-last": (
            "ours, channels-last, batch 16",
            dict(batch=16, channels_last=True),
        ),  # changes 'default': last
    }
    unknown = [key for key in args.rows.split(",") if key not in catalogue]
    if unknown:
        parser.error(f"unknown rows {', '.join(unknown)}; known: {', '.join(catalogue)}")
    plan = []
    for key in args.rows.split(","):
        name, make = catalogue[key]
        plan.append((name, make if callable(make) else ours_row(name, **(make or {}))))
    path = (
        args.json
        or HERE.parent
        / "results"
        / f"gpu-{'cpu-small' if args.small else card.replace(' ', '_')}-{datetime.date.today()}.json"
    )
    rows = []
    for name, make_row in plan:
        if time.perf_counter() - started > args.deadline:
            rows.append({"name": name, "skipped": f"past the {args.deadline:.0f} s deadline"})
        else:
            try:
                rows.append(make_row())
            except Exception:
                rows.append({"name": name, "error": traceback.format_exc(limit=6)})
                print(rows[-1]["error"], flush=True)
        write_result(path, card, side, args.small, counts, rows, starts)  # what is done survives a timeout
    print_rows(rows, side, card)
    for start in starts:
        if "error" not in start:
            print(
                f"{start['name']}: {start['to_first_result_seconds']:.1f} s to the first result (import "
                f"{start['import_seconds']:.1f}, load {start['load_seconds']:.1f}, "
                f"compile {start['compile_seconds']:.1f}, first image {start['first_image_seconds']:.1f}); "
                "our bundle loaded: "
                f"{start.get('compile_cache', {}).get('loaded')}"
            )
    write_result(path, card, side, args.small, counts, rows, starts)
    print(f"wrote {path}")


def print_rows(rows: list[dict], side: int, card: str) -> None:
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in card), None)
    print(f"\n{'row':<66} {'ms/tile':>8} {'MP/s':>7} {'GPU GB':>7} {'of limit':>9} {'B/px':>6}")
    for row in rows:
        if "seconds" not in row:
            print(f"{row['name']:<66} {row.get('skipped') or 'failed'}")
            continue
        row["fraction_of_compute_limit"] = (
            (TFLOP_PER_TILE * (4 * side) ** 2 / 512**2 / row["seconds"]) / peak if peak else None
        )
        memory = f"{row['peak_gpu_bytes'] / 1e9:.1f}" if row["peak_gpu_bytes"] else "-"
        limit = f"{100 * row['fraction_of_compute_limit']:.1f}%" if row["fraction_of_compute_limit"] else "-"
        print(
            f"{row['name']:<66} {row['ms_per_512_tile']:>8.1f} {row['output_mp_per_s']:>7.2f} {memory:>7} {limit:>9} "
            f"{row.get('bytes_per_output_pixel_per_dtype_byte', '-'):>6}"
        )


def write_result(path: Path, card: str, side: int, small: bool, counts: dict, rows: list[dict], starts) -> None:
    result = {
        "card": card,
        "date": str(datetime.date.today()),
        "input": [side, side],
        "small": small,
        "torch": torch.__version__,
        "parameters": counts,
        "rows": rows,
        "starts": starts,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
