"""The plug-in's host memory on large results (issue 24): the peak resident size of the process that runs the
plug-in's code inside GIMP, over its size just before the upscale, in bytes per output pixel.

    sudo .venv/bin/python bench/memory_plugin.py [--gimp 3.2] [--sides 256,1024] [--scale 4] [--json out.json]

GIMP runs as its tests run it (tests/gimp_harness.py: this machine's GIMP or a Debian root, headless), with a
worker started here on the tiny random weights (the result's bytes do not depend on the weights). Each size is
one RGB 8-bit layer of SIDE x SIDE pixels upscaled by the plug-in's own work function (the one its menu entry
calls, in GIMP's Python: tests/gimp/scenarios.py `run_recording`), whose process resets its peak (Linux's
/proc/self/clear_refs) before the job and reads VmHWM after it. GIMP's core holds the layer itself (its
pixels, its tile cache and swap): that is GIMP's copy of the result, not counted here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from gimp_harness import PLUGINS, GimpRunner  # noqa: E402
from worker_helpers import WorkerProcess  # noqa: E402

SCENARIOS = REPO / "tests" / "gimp" / "scenarios.py"


def scenario(side: int, scale: float) -> dict:
    layer = {"name": "photo", "size": [side, side], "sample": "u8", "seed": 1}
    options = {"scale": scale, "tile": 128}
    return {"name": f"side-{side}", "canvas": [side, side], "layers": [layer], "record_calls": True, "options": options}


def measure(gimp: GimpRunner, sides: list[int], scale: float) -> list[dict]:
    from invsr.tiny_weights import write_tiny_weights

    work = gimp.workspace()
    write_tiny_weights(str(work / "weights"))
    worker = WorkerProcess(work / "run", work / "weights", "--preload", bind=None).wait_ready()
    try:
        out = work / "out"
        out.mkdir()
        plan = {
            "out": gimp.inside(out),
            "plugin": gimp.inside(PLUGINS / "invsr-upscale"),  # as the installer lays it out
            "connection_file": gimp.inside(work / "run" / "worker.json"),
            "screenshot": gimp.inside(REPO / "tests" / "gimp" / "screenshot.py"),
            "scenarios": [scenario(side, scale) for side in sides],
        }
        (out / "plan.json").write_text(json.dumps(plan))
        started = time.perf_counter()
        env = {"INVSR_SCENARIOS": gimp.inside(out / "plan.json"), "INVSR_CACHE": gimp.inside(work / "cache")}
        done = gimp.run_batch(SCENARIOS, out, env, timeout=3600)
        if done.returncode:
            raise SystemExit(f"GIMP failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        results = json.loads((out / "results.json").read_text())
    finally:
        worker.stop()
    rows = []
    for side in sides:
        result = results[f"side-{side}"]
        if result.get("error") or "crash" in result:
            raise SystemExit(f"side {side}: {result.get('error') or result['crash']}")
        memory = result["memory"]
        out_pixels = round(side * scale) ** 2
        grown = memory["peak"] - memory["idle"]
        rows.append(
            {
                "input": side,
                "scale": scale,
                "output_mp": out_pixels / 1e6,
                "result_mb_rgb8": 3 * out_pixels / 1e6,
                "peak_over_idle_mb": grown / 1e6,
                "bytes_per_output_pixel": grown / out_pixels,
                "peak_reset": memory["reset"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"GIMP run: {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gimp", default="3.2", choices=["3.0", "3.2"])
    parser.add_argument("--sides", default="256,1024", help="input sides in pixels, comma-separated")
    parser.add_argument("--scale", type=float, default=4.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with GimpRunner.find_or_build(args.gimp) as gimp:
        rows = measure(gimp, [int(side) for side in args.sides.split(",")], args.scale)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"gimp": args.gimp, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
