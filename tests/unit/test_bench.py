"""The GPU benchmark and checks run end to end in their CPU modes, so that the scarce GPU sessions
find them working: every row measured, every check run and passed, JSON written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # minutes on a 2-core machine

REPO = Path(__file__).resolve().parents[2]


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *arguments], cwd=REPO, capture_output=True, text=True, timeout=2400)


def test_gpu_benchmark_runs_every_row_at_reduced_size(tmp_path):
    """Every row, and (--starts) the compiled-start rows' two fresh processes (eager on the CPU: a CPU compile
    of the tiny networks takes minutes; tests/test_compile_cache.py tests what the warm start relies on)."""
    # The deadline is the GPU session's; here every row must run, however busy the machine.
    done = run_script(
        "bench/gpu/run.py",
        *("--small", "--side", "64", "--warmups", "0", "--budget", "0.1", "--starts"),
        *("--deadline", "3000", "--json", str(tmp_path / "gpu.json")),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    names = [row["name"].split(" (")[0] for row in result["rows"]]
    assert names == [
        "reference",
        "ours",
        *[f"ours, batch {n}" for n in (1, 2, 4, 16, 32)],
        "ours, default, stages not waited for",
        "ours, fp16",
        "ours, compiled",
        "ours, compiled, stages not waited for",
        "ours, channels-last, batch 16",
    ]
    assert all(row["seconds"] > 0 and row["output_mp_per_s"] > 0 for row in result["rows"])
    ours = result["rows"][1:]
    assert [row["tiling"]["batch"] for row in ours[1:6]] == [1, 2, 4, 16, 32]  # the sweep ran at the batch it names
    assert all(row["stage_seconds"]["vae_decode"] > 0 for row in ours)
    assert result["small"] and result["parameters"]["noise_predictor"] > 0
    starts = result["starts"]
    assert [start["name"] for start in starts] == ["compiled start, cold", "compiled start, warm"]
    assert all("error" not in start and start["to_first_result_seconds"] > 0 for start in starts), starts
    assert all(start["output"] == [256, 256, 3] for start in starts)


def test_gpu_checks_run_and_pass_on_the_cpu(tmp_path):
    done = run_script(
        "bench/gpu/check.py",
        "--device",
        "cpu",
        "--small",
        "--skip",
        "compile,worker",
        "--json",
        str(tmp_path / "check.json"),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "check.json").read_text())
    assert result["dtypes"]["passed"] and result["batching"]["passed"] and result["resample"]["passed"]
    assert "skipped" in result["out_of_memory_fallback"]  # it needs CUDA
    assert "all checks passed" in done.stdout
