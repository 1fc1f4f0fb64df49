"""`invsr upscale FOLDER -o OUT --ray local --actors 2`: images over two Ray actors, each written when done,
a damaged file failing alone, and `--skip-existing` resuming. The command joins the module's Ray instance
(two fake GPUs), as it would a cluster this process had joined; `--ray` without Ray says how to get it."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from ray_helpers import cluster, descendants, kill_process, one_thread, ray, running  # noqa: F401 (cluster: a fixture)
from worker_helpers import RUN_COMMAND

from invsr.request import UpscaleRequest
from invsr_server.cli.commands import main


@pytest.fixture
def folder(tmp_path, photo):
    source = tmp_path / "in"
    source.mkdir()
    for k, (top, left) in enumerate([(0, 0), (40, 30), (80, 60)]):
        Image.fromarray(photo[top : top + 48, left : left + 40]).save(source / f"photo{k}.png")
    (source / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    return source


def upscale(source, output, tiny_weights, *extra):
    weights = str(tiny_weights.noise_predictor.parent)
    options = ["--ray", "local", "--actors", "2", "--weights", weights, "--device", "cpu", "--dtype", "fp32"]
    return main(["upscale", str(source), "-o", str(output), "--seed", "2", "--tile", "32", *options, *extra])


def test_a_folder_over_two_actors_isolates_a_damaged_file_and_resumes(
    cluster, folder, tmp_path, tiny_weights, pipeline, capsys
):
    output = tmp_path / "out"
    assert upscale(folder, output, tiny_weights) == 1, "one image failed"
    err = capsys.readouterr().err
    assert "damaged.png" in err and "1 of 4 image(s) failed" in err
    written = sorted(path.name for path in output.iterdir())
    assert written == ["photo0.png", "photo1.png", "photo2.png"]
    with one_thread():
        for name in written:
            image = np.asarray(Image.open(folder / name))
            expected = pipeline.upscale(image, UpscaleRequest(seed=2, tile=32)).image
            assert np.array_equal(np.asarray(Image.open(output / name)), expected), name
    assert _gpus_freed(), "the command ended its actors, which held the GPUs"

    stamps = {path.name: path.stat().st_mtime_ns for path in output.iterdir()}
    assert upscale(folder, output, tiny_weights, "--skip-existing") == 1, "the damaged file fails again"
    err = capsys.readouterr().err
    assert "3 of 4 outputs exist already" in err
    assert {path.name: path.stat().st_mtime_ns for path in output.iterdir()} == stamps, "nothing rewritten"


def _gpus_freed(timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("GPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    return ray.available_resources().get("GPU", 0) == 2


def test_killing_the_command_ends_the_ray_it_started(folder, tmp_path, tiny_weights):
    weights = str(tiny_weights.noise_predictor.parent)
    options = ["--ray", "local", "--actors", "1", "--weights", weights, "--device", "cpu", "--tile", "32"]
    command = [sys.executable, "-c", RUN_COMMAND, "upscale", str(folder), "-o", str(tmp_path / "out"), *options]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not any(_name(pid).startswith("ray::TileActor") for pid in descendants(process.pid)):
            assert process.poll() is None and time.monotonic() < deadline, "no actor started"
            time.sleep(0.2)
        started = descendants(process.pid)
    finally:
        kill_process(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + 15
    while running(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(started), sorted(_name(pid) for pid in running(started))


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""


def test_joining_a_cluster_without_its_token_names_authentication_as_the_likely_cause(cluster, folder, tmp_path):
    address = ray.get_runtime_context().gcs_address  # the module's Ray, which requires a token
    env = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_TOKEN"}
    upscale = ["upscale", str(folder), "-o", str(tmp_path / "out"), "--ray", address]
    done = subprocess.run(
        [sys.executable, "-c", RUN_COMMAND, *upscale],
        env={**env, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot join the Ray cluster" in done.stderr and "set RAY_AUTH_MODE=token" in done.stderr


def test_ray_without_ray_installed_says_how_to_install_it(tmp_path, folder):
    hide_ray = "import sys\nsys.modules['ray'] = None  # as if not installed\n" + RUN_COMMAND
    upscale = ["upscale", str(folder), "-o", str(tmp_path / "out"), "--ray", "local"]
    for command in (upscale, ["serve", "--ray", "local"]):
        done = subprocess.run([sys.executable, "-c", hide_ray, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "pip install 'invsr-gimp[ray]'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_what_ray_cannot_do_is_refused_before_any_work(folder, tmp_path, capsys):
    out = ["upscale", str(folder), "-o", str(tmp_path / "out")]
    assert main([*out, "--actors", "2"]) == 2
    assert "give --ray local or --ray ADDRESS" in capsys.readouterr().err
    assert main([*out, "--ray", "local", "--compile"]) == 2
    assert "--compile is not applied to Ray actors" in capsys.readouterr().err
    assert main([*out, "--ray", "local", "--server"]) == 2
    assert not (tmp_path / "out").exists()
