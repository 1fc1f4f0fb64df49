"""The CPU benchmarks, in one command (under 10 minutes on 2 cores): prints tables, writes JSON.

    python bench/run.py [--json bench/results/cpu-DATE.json] [--quick]

- bridge: `echo` round trips of 1, 16 and 64 megapixel RGBA frames (8 and 16 bits) through workers on the
  default ipc socket, on loopback TCP, and signing every byte (as protocol 3.0 did; `--insecure` does), beside
  a copy of the same bytes into a fresh buffer;
- tiling: our default tiling against the reference implementation's scheme on one large image;
- end to end: seconds per output megapixel through the CLI's file path in-process and through the worker;
- memory: peak memory for two image sizes at 4x, and the larger at 2x (bench/memory.py).

Every time is the median of several runs, and every comparison is measured side by side in this run.
All model work uses the tiny random weights: they show the costs of everything around the networks
(tiling, bridge, I/O), not the networks' own speed, which bench/gpu measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the test helper that starts a real worker process


def median_seconds(action, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


BRIDGES = {  # how each echo travels: the default ipc socket, loopback TCP, and every byte signed (as 3.0 did)
    "ipc": "the default: an ipc socket, buffers signed by their lengths",
    "tcp": "loopback TCP with the PLAIN password, buffers signed by their lengths",
    "signed": "every byte signed: protocol 3.0 on any transport, 3.1 with --insecure",
}


def bridge_workers(folder: Path, weights: Path) -> dict:
    """One worker per way of BRIDGES; the one that signs every byte is bound beyond loopback with --insecure
    (the only place 3.1 does that) and reached through 127.0.0.1, so its bytes travel as on loopback."""
    from worker_helpers import WorkerProcess

    started = {
        "ipc": WorkerProcess(folder / "ipc", weights, bind=None),
        "tcp": WorkerProcess(folder / "tcp", weights),
        "signed": WorkerProcess(folder / "signed", weights, "--insecure", bind="tcp://0.0.0.0:*"),
    }
    return {name: worker.wait_ready() for name, worker in started.items()}


def reachable(worker):
    connection = worker.connection
    if connection.endpoint.startswith("tcp://0.0.0.0:"):
        return dataclasses.replace(connection, endpoint=connection.endpoint.replace("0.0.0.0", "127.0.0.1"))
    return connection


def bench_bridge(workers: dict, runs: int, sizes=(1, 16, 64)) -> list[dict]:
    """Echo round trips through each worker of `workers` (keys of BRIDGES), side by side, against a copy of the
    same bytes into a fresh buffer (what receiving into new memory costs at least), and one signature over
    the frame in this process (an echo signed byte for byte makes four)."""
    from invsr.wire.client import Client
    from invsr.wire.protocol import sign

    rows = []
    clients = {name: Client(reachable(worker), timeout=60) for name, worker in workers.items()}
    try:
        assert clients["signed"].signed_buffers and not clients["tcp"].signed_buffers
        for megapixels in sizes:
            for bits in (8, 16):
                nbytes = megapixels * 1_000_000 * 4 * bits // 8
                payload = np.frombuffer(np.random.default_rng(0).bytes(nbytes), np.uint8)
                row = {"megapixels": megapixels, "bits": bits, "bytes": nbytes}
                for name, client in clients.items():
                    client.echo([payload])  # warm up: buffers, connection
                    # called within this line, while the loop variables hold this row's values
                    row[f"echo_{name}_seconds"] = median_seconds(lambda: client.echo([payload]), runs)  # noqa: B023
                row["copy_seconds"] = median_seconds(lambda: payload.copy(), runs)  # noqa: B023
                row["sign_seconds"] = median_seconds(lambda: sign(b"k" * 32, b"{}", [payload]), runs)  # noqa: B023
                for name in (*clients, "copy", "sign"):
                    key = f"echo_{name}" if name in clients else name
                    row[f"{key}_GBps"] = nbytes / row[f"{key}_seconds"] / 1e9
                for name in clients:  # of a fresh copy's speed
                    row[f"echo_{name}_of_copy"] = row["copy_seconds"] / row[f"echo_{name}_seconds"]
                rows.append(row)
    finally:
        for client in clients.values():
            client.close()
    return rows


def bench_tiling(pipeline, runs: int, side: int) -> dict:
    import reference_tiling
    from seams import seam_positions, seam_score

    from invsr.progress import StageTimer
    from invsr.tiles import DEFAULT_OVERLAP, DEFAULT_TILE, TileDriver, TileRecipe, TileSettings

    image = torch.from_numpy(_photo(side)).permute(2, 0, 1)[None].float() / 255
    models, device = pipeline.models, pipeline.device

    def ours():
        driver = TileDriver(models, device, StageTimer(device))
        tiled = driver.run(image, TileRecipe((200,), "wavelet"), 0, TileSettings(DEFAULT_TILE, DEFAULT_OVERLAP, 1))
        report = tiled.report()
        return tiled.image, report["tiles"], report["work_ratio"], list(tiled.plan.rows), list(tiled.plan.cols)

    def reference():
        result, rows, cols = reference_tiling.upscale(models, device, image, (200,), 0, "wavelet", StageTimer(device))
        return result, len(rows) * len(cols), reference_tiling.work_ratio(rows, cols, side, side), rows, cols

    found = {}
    for name, scheme in (("ours", ours), ("reference", reference)):
        result, tiles, ratio, rows, cols = scheme()
        found[name] = {
            "tiles": tiles,
            "work_ratio": ratio,
            "seam_score": seam_score(result, seam_positions(rows, 4), seam_positions(cols, 4)),
            "seconds": median_seconds(scheme, runs),
        }
    found["time_ratio"] = found["reference"]["seconds"] / found["ours"]["seconds"]
    found["input"] = [side, side]
    return found


def bench_end_to_end(pipeline, worker, runs: int, side: int) -> dict:
    from invsr.files import upscale_file
    from invsr.image_io import ImageFile, write_image
    from invsr.request import UpscaleRequest
    from invsr_server.cli.remote import RemotePipeline

    folder = Path(tempfile.mkdtemp())
    write_image(folder / "in.png", ImageFile(_photo(side)))
    request = UpscaleRequest()
    megapixels = (4 * side) ** 2 / 1e6
    with worker.client(timeout=60) as client:
        remote = RemotePipeline(client)
        upscale_file(remote, folder / "in.png", folder / "warm.png", request)  # the worker's first job loads the model
        local_times, remote_times = [], []
        for _ in range(runs):  # alternated, so that drifts of a shared machine hit both alike
            local_times.append(
                median_seconds(lambda: upscale_file(pipeline, folder / "in.png", folder / "local.png", request), 1)
            )
            remote_times.append(
                median_seconds(lambda: upscale_file(remote, folder / "in.png", folder / "remote.png", request), 1)
            )
        local, through = statistics.median(local_times), statistics.median(remote_times)
    identical = (folder / "local.png").read_bytes() == (folder / "remote.png").read_bytes()
    return {
        "input": [side, side],
        "output_megapixels": megapixels,
        "in_process_seconds_per_mp": local / megapixels,
        "worker_seconds_per_mp": through / megapixels,
        "bridge_share": (through - local) / through,
        "bridge_seconds": through - local,
        "identical_output": identical,
    }


def _photo(side: int) -> np.ndarray:
    from PIL import Image

    sample = Image.open(HERE.parent / "invsr" / "data" / "sample.png").convert("RGB")
    return np.asarray(sample.resize((side, side), Image.LANCZOS)).copy()


def print_bridge(rows: list[dict]) -> None:
    print("\nBridge: echo round trips (GB/s, and as a share of a copy into a fresh buffer) by way; a signature")
    for name, meaning in BRIDGES.items():
        print(f"  {name}: {meaning}")
    names = [name for name in BRIDGES if f"echo_{name}_GBps" in rows[0]]
    head = "".join(f"{name + ' GB/s':>12}{'of copy':>8}" for name in names)
    print(f"{'frame':>20} {'MB':>6}{head}{'copy GB/s':>11}{'sign GB/s':>11}")
    for row in rows:
        cells = "".join(f"{row[f'echo_{n}_GBps']:>12.2f}{row[f'echo_{n}_of_copy']:>8.2f}" for n in names)
        print(
            f"{row['megapixels']:>5} MP RGBA {row['bits']:>2}-bit {row['bytes'] / 1e6:>6.0f}{cells}"
            f"{row['copy_GBps']:>11.2f}{row['sign_GBps']:>11.2f}"
        )


def print_tables(results: dict) -> None:
    if "bridge" in results:
        print_bridge(results["bridge"])
    if "tiling" in results:
        print_tiling(results["tiling"])
    if "end_to_end" in results:
        print_end_to_end(results["end_to_end"])
    if "memory" in results:
        print_memory(results["memory"])


def print_tiling(tiling: dict) -> None:
    print(
        f"\nTiling of a {tiling['input'][0]} x {tiling['input'][1]} input (tiny weights): ours vs the reference scheme"
    )
    print(f"{'scheme':>10} {'tiles':>6} {'work ratio':>11} {'seam score':>11} {'seconds':>8}")
    for name in ("ours", "reference"):
        row = tiling[name]
        print(
            f"{name:>10} {row['tiles']:>6} {row['work_ratio']:>11.3f} {row['seam_score']:>11.3f} {row['seconds']:>8.2f}"
        )
    print(f"time ratio (reference / ours): {tiling['time_ratio']:.2f}")


def print_end_to_end(e2e: dict) -> None:
    print(
        f"\nEnd to end through the CLI's file path, {e2e['input'][0]}^2 -> {e2e['output_megapixels']:.2f} MP "
        "(tiny weights)"
    )
    print(
        f"in-process {e2e['in_process_seconds_per_mp']:.2f} s/MP, "
        f"through the worker {e2e['worker_seconds_per_mp']:.2f} s/MP, "
        f"bridge share {100 * e2e['bridge_share']:.1f}%, outputs identical: {e2e['identical_output']}"
    )


def print_memory(rows: list) -> None:
    print("\nMemory (fresh process per size, tiny weights)")
    for row in rows:
        print(
            f"{row['input'][0]}^2 x{row['scale']:g} -> {row['output'][0]}^2: "
            f"output {row['output_bytes'] / 1e6:.1f} MB, "
            f"host peak +{row['host_peak_increase_bytes'] / 1e6:.0f} MB, "
            f"largest network input {row['largest_network_inputs']['vae_decoder_input']:,}"
        )


PARTS = ("bridge", "tiling", "end_to_end", "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU benchmarks of InvSR for GIMP")
    parser.add_argument("--json", type=Path, default=HERE / "results" / f"cpu-{datetime.date.today()}.json")
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller sizes, to check the script")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which, comma-separated (default {','.join(PARTS)})")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per figure (default 5, --quick 2)")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if not set(parts) <= set(PARTS):
        parser.error(f"--parts: choose from {', '.join(PARTS)}")
    runs = args.runs or (2 if args.quick else 5)
    from invsr.tiny_weights import write_tiny_weights

    folder = Path(tempfile.mkdtemp(prefix="invsr-bench-"))
    weights = write_tiny_weights(folder / "weights")
    results = {
        "date": str(datetime.date.today()),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    if "bridge" in parts:
        bridges = bridge_workers(folder / "bridges", weights.noise_predictor.parent)
        try:
            results["bridge"] = bench_bridge(bridges, runs, sizes=(1, 16) if args.quick else (1, 16, 64))
        finally:
            for each in bridges.values():
                each.stop()
    if "tiling" in parts or "end_to_end" in parts:
        results.update(bench_model_parts(folder, weights, parts, runs, args.quick))
    if "memory" in parts:
        import memory

        small, large = (128, 256) if args.quick else (256, 768)
        jobs = [(small, "4"), (large, "4"), (large, "2")]  # at 2x only the output-sized result is held, not the x4
        results["memory"] = [memory.run_job(str(folder / "weights"), side, "cpu", scale) for side, scale in jobs]
    print_tables(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


def bench_model_parts(folder: Path, weights, parts: list, runs: int, quick: bool) -> dict:
    """Tiling and end to end: the tiny model in this process and in a worker."""
    from worker_helpers import WorkerProcess

    from invsr.pipeline import InvSRPipeline

    pipeline = InvSRPipeline.load(weights, device="cpu")
    found = {}
    if "tiling" in parts:
        found["tiling"] = bench_tiling(pipeline, runs, side=192 if quick else 384)
    if "end_to_end" in parts:
        with WorkerProcess(folder / "worker", folder / "weights", "--preload", "--client-timeout", "60") as worker:
            worker.wait_ready()
            found["end_to_end"] = bench_end_to_end(pipeline, worker, runs, side=64 if quick else 128)
    return found


if __name__ == "__main__":
    main()
