"""What the Ray path costs and gives on the CPU, side by side in one run, and what its traffic would be on GPUs.

Measured (tiny random weights, fp32, one PyTorch thread per computing process, so that one actor and the
in-process pipeline do the same work, and two actors use this machine's two cores):

- seconds per tile in-process, through one Ray actor, and through two: the Ray path's cost per tile
  (one actor against in-process) and the speed-up from one actor to two. The three are run in turn,
  round after round, and each is the median of its rounds, so that load from elsewhere falls on all;
- bytes per tile through Ray's object store at the default tile (128 input pixels, overlap 16): a batch's
  inputs as Ray pickles them, and a tile's output coming back;
- the front's own time per tile at the default tile: accumulating one 512 x 512 output (median of 32);
- faults (dispatch.py): two actors, one of them killed (SIGKILL) or frozen (SIGSTOP) mid-job; the seconds
  from the fault to the last of the batches it held being computed by the other, with the default limits
  (a frozen actor is given up after 10 s without answering a ping).

From those, the bandwidth a node needs at a GPU's measured rate (bench/README.md: about 22 tiles a second on
an H100) and the projected efficiency of 8 and 64 GPUs on 10 and 100 Gbit/s links. Usage:

    python bench/ray_path.py [--side 192] [--rounds 3] [--json bench/results/ray-cpu-DATE.json] [--faults-only]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from invsr.devices import cpu_threads

GPU_TILES_PER_S = 22.0  # one H100, default settings (bench/README.md: 44.9 ms per 512 x 512 output tile)
GPUS_PER_NODE = 8
LINKS_GBIT = (10, 100)
CLUSTERS = (8, 64)
SD_TURBO = dict(lr_multiple=16, sample_size=128, latent_channels=4)  # the real networks' geometry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=192, help="input side of the timed image (default 192)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--faults-only", action="store_true", help="only the time from a fault to its recovery")
    args = parser.parse_args()
    if args.faults_only:
        faults = fault_recovery()
        print(json.dumps(faults, indent=2))
        if args.json:
            args.json.write_text(json.dumps({"date": datetime.date.today().isoformat(), "faults": faults}) + "\n")
        return 0

    traffic = object_store_traffic()
    front_ms = front_ms_per_tile()
    timed = time_paths(args.side, args.rounds)
    faults = fault_recovery()
    projection = project(traffic["total_bytes"], front_ms)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}",
        "paths": timed,
        "traffic": traffic,
        "front_ms_per_tile": front_ms,
        "projection": projection,
        "faults": faults,
    }
    show(result)
    path = args.json or Path(__file__).parent / "results" / f"ray-cpu-{result['date']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


def time_paths(side: int, rounds: int) -> dict:
    """Seconds per tile: in-process, one actor, two actors; side by side, round after round."""
    import ray

    from invsr.pipeline import InvSRPipeline
    from invsr.request import UpscaleRequest
    from invsr.tiny_weights import write_tiny_weights
    from invsr_server.cluster.pipeline import ActorOptions, RayPipeline
    from invsr_server.cluster.ray_cluster import ActorShape

    folder = Path(tempfile.mkdtemp(prefix="invsr-bench-ray-"))
    weights = write_tiny_weights(folder / "tiny")
    image = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
    request = UpscaleRequest(tile=32, overlap=8, tile_batch=1, seed=0)
    torch.set_num_threads(1)
    here = InvSRPipeline.load(weights, device="cpu", dtype="fp32")
    # 3 CPUs of scheduling: the one-actor and two-actor pipelines both held; only one computes at a time
    ray.init(address="local", num_cpus=3, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    options = ActorOptions(weights=folder / "tiny", device="cpu", dtype="fp32")
    one = RayPipeline.start(options, ActorShape(1, 0, 1, 1))
    two = RayPipeline.start(options, ActorShape(2, 0, 1, 1))
    paths = {"in-process": here, "ray, 1 actor": one, "ray, 2 actors": two}
    try:
        tiles = here.upscale(image, request).report["tiling"]["tiles"]
        for pipeline in (one, two):
            pipeline.upscale(image, request)  # warm: first batches, object store
        seconds = {name: [] for name in paths}
        for _ in range(rounds):
            for name, pipeline in paths.items():
                started = time.perf_counter()
                pipeline.upscale(image, request)
                seconds[name].append(time.perf_counter() - started)
    finally:
        for pipeline in (one, two):
            pipeline.close()
        ray.shutdown()
    per_tile = {name: statistics.median(times) / tiles for name, times in seconds.items()}
    return {
        "image": [side, side],
        "tiles": tiles,
        "tile": 32,
        "rounds": rounds,
        "seconds": {name: [round(s, 3) for s in times] for name, times in seconds.items()},
        "ms_per_tile": {name: round(1000 * s, 2) for name, s in per_tile.items()},
        "ray_cost_ms_per_tile": round(1000 * (per_tile["ray, 1 actor"] - per_tile["in-process"]), 2),
        "speedup_2_over_1": round(per_tile["ray, 1 actor"] / per_tile["ray, 2 actors"], 2),
    }


def fault_recovery(rounds: int = 2) -> dict:
    """Seconds from a fault of one of two actors (SIGKILL, SIGSTOP) at a job's third tile to the moment the
    last batch it held is computed by the other; each a fresh pair of actors, the median of `rounds`."""
    import signal

    import ray

    from invsr.request import UpscaleRequest
    from invsr.tiny_weights import write_tiny_weights
    from invsr_server.cluster.pipeline import ActorOptions, RayPipeline
    from invsr_server.cluster.ray_cluster import ActorShape

    folder = Path(tempfile.mkdtemp(prefix="invsr-bench-faults-"))
    write_tiny_weights(folder / "tiny")
    image = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    request = UpscaleRequest(tile=32, overlap=8, tile_batch=1, seed=0)  # 25 batches
    options = ActorOptions(weights=folder / "tiny", device="cpu", dtype="fp32")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    seconds: dict[str, list[float]] = {"SIGKILL": [], "SIGSTOP": []}
    try:
        for name in [name for name in seconds for _ in range(rounds)]:
            pipeline = RayPipeline.start(options, ActorShape(2, 0, 1, 1))
            try:
                pipeline.upscale(image, request)  # warm
                seconds[name].append(_recovery(pipeline, image, request, getattr(signal, name)))
            finally:
                for actor in pipeline.actors():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(actor["pid"], signal.SIGCONT)
                pipeline.close()
    finally:
        ray.shutdown()
    return {
        name: {"seconds": [round(s, 2) for s in times], "median_s": round(statistics.median(times), 2)}
        for name, times in seconds.items()
    }


def _recovery(pipeline, image, request, signum) -> float:
    victim = pipeline.dispatcher.actors[1]
    fault: dict = {}

    def progress(update):
        if update.stage != "tiles":
            return
        job = pipeline.dispatcher.jobs[0] if pipeline.dispatcher.jobs else None
        if not fault and update.done >= 3 and job is not None:
            with pipeline.dispatcher.lock:
                fault["held"] = {slot.bounds[0] for slot in victim.slots}
            fault["at"] = time.perf_counter()
            os.kill(victim.info["pid"], signum)
        elif fault and "done" not in fault and job is not None and fault["held"] <= job.counted:
            fault["done"] = time.perf_counter()

    pipeline.upscale(image, request, progress=progress)
    return fault.get("done", time.perf_counter()) - fault["at"]


def default_work():
    """A 1024 x 1024 image's work at the default tile, planned for the real networks."""
    from invsr.tiles import DEFAULT_OVERLAP, DEFAULT_TILE, TileRecipe
    from invsr.tiles.work import ModelGeometry, TileWork

    geometry = ModelGeometry(**SD_TURBO, static_shapes=False)
    lr = torch.rand(1, 3, 1024, 1024)
    return TileWork.prepare(lr, geometry, TileRecipe((200,), "wavelet"), 0, DEFAULT_TILE, DEFAULT_OVERLAP)


def object_store_traffic() -> dict:
    """Bytes of one tile's trip at the default tile: its inputs as pickled (Ray pickles arguments with
    pickle protocol 5: tensors' bytes plus a small header), and its float32 output."""
    work = default_work()
    inputs = work.inputs(0, 1, 1)
    sent = len(pickle.dumps(inputs, protocol=5))
    tile = work.plan.tiles[0].crop
    back = len(pickle.dumps([torch.rand(1, 3, 4 * tile.height, 4 * tile.width)], protocol=5))
    return {"tile": work.plan.tile, "inputs_bytes": sent, "output_bytes": back, "total_bytes": sent + back}


def front_ms_per_tile() -> float:
    """The front's time to accumulate one default tile's output (the canvas at x4)."""
    from invsr.tiles import TileAccumulator

    work = default_work()
    accumulator = TileAccumulator(work.plan)
    outputs = [torch.rand(1, 3, 4 * t.visible.height, 4 * t.visible.width) for t in work.plan.tiles[:32]]
    seconds = []
    with cpu_threads(1):  # as the job's thread on the front: one tile after another
        for position, output in enumerate(outputs):
            started = time.perf_counter()
            accumulator.add(position, output)
            seconds.append(time.perf_counter() - started)
    return round(1000 * statistics.median(seconds), 2)


def project(bytes_per_tile: int, front_ms: float) -> dict:
    """Per node at GPU_TILES_PER_S per GPU, and the efficiency of N GPUs: the front on a node of its own
    GPUs, whose traffic stays in shared memory; the others' crosses the front's link, which caps the
    tiles per second it can take; the front's accumulation caps them too (one thread per job)."""
    per_gpu_gbit = GPU_TILES_PER_S * bytes_per_tile * 8 / 1e9
    rows = []
    for gpus in CLUSTERS:
        local = min(gpus, GPUS_PER_NODE)
        for link in LINKS_GBIT:
            remote_rate = min((gpus - local) * GPU_TILES_PER_S, link * 1e9 / 8 / bytes_per_tile)
            rate = local * GPU_TILES_PER_S + remote_rate
            front_limit = 1000.0 / front_ms
            rows.append(
                {
                    "gpus": gpus,
                    "link_gbit": link,
                    "front_link_needed_gbit": round((gpus - local) * per_gpu_gbit, 1),
                    "tiles_per_s": round(min(rate, front_limit), 1),
                    "efficiency": round(min(rate, front_limit) / (gpus * GPU_TILES_PER_S), 2),
                    "limited_by": "front's accumulation"
                    if front_limit < rate
                    else ("link" if rate < gpus * GPU_TILES_PER_S else "GPUs"),
                }
            )
    return {
        "gpu_tiles_per_s": GPU_TILES_PER_S,
        "per_gpu_gbit": round(per_gpu_gbit, 2),
        "per_node_gbit": round(GPUS_PER_NODE * per_gpu_gbit, 1),
        "front_tiles_per_s": round(1000.0 / front_ms, 1),
        "rows": rows,
    }


def show(result: dict) -> None:
    for name, fault in result["faults"].items():
        print(f"{name} of one of two actors: its batches computed by the other {fault['median_s']} s later")
    paths = result["paths"]
    print(f"{paths['tiles']} tiles of {paths['tile']} pixels, {paths['image'][0]} x {paths['image'][1]} input")
    print("| path | ms per tile |\n|---|---|")
    for name, ms in paths["ms_per_tile"].items():
        print(f"| {name} | {ms} |")
    print(f"Ray's cost per tile: {paths['ray_cost_ms_per_tile']} ms; 2 actors over 1: {paths['speedup_2_over_1']}x")
    traffic = result["traffic"]
    print(
        f"default tile: {traffic['inputs_bytes'] / 1e6:.2f} MB in, {traffic['output_bytes'] / 1e6:.2f} MB out; "
        f"front {result['front_ms_per_tile']} ms per tile"
    )
    projection = result["projection"]
    print(f"per GPU {projection['per_gpu_gbit']} Gbit/s, per 8-GPU node {projection['per_node_gbit']} Gbit/s")
    print("| GPUs | link Gbit/s | front link needed | tiles/s | efficiency | limited by |\n|---|---|---|---|---|---|")
    for row in projection["rows"]:
        print(
            f"| {row['gpus']} | {row['link_gbit']} | {row['front_link_needed_gbit']} | {row['tiles_per_s']} | "
            f"{row['efficiency']:.0%} | {row['limited_by']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
