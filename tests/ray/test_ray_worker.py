"""`invsr serve --ray local --actors 2`: the worker's tiles on two Ray actors (CPU actors: this machine has
no GPU), behind the ZeroMQ front clients already know. The worker process starts the module's one Ray
instance itself, and ends it when it stops."""

import threading
import time

import numpy as np
import pytest
from PIL import Image
from ray_helpers import descendants, one_thread, running
from worker_helpers import WorkerProcess

from invsr.request import UpscaleRequest
from invsr.wire import errors
from invsr.wire.replies import ModelState

pytestmark = pytest.mark.worker  # ray: from the folder
TILED = ["--tile", "32", "--overlap", "8", "--tile-batch", "1"]


@pytest.fixture(scope="module")
def ray_worker(tmp_path_factory, tiny_weights):
    folder = tmp_path_factory.mktemp("ray-worker")
    options = ("--ray", "local", "--actors", "2", "--preload")
    with WorkerProcess(folder, tiny_weights.noise_predictor.parent, *options) as process:
        process.wait_ready()
        with process.client() as client:
            deadline = time.monotonic() + 300
            while client.hello().model.state not in ("ready", "failed") and time.monotonic() < deadline:
                time.sleep(0.5)
            assert client.hello().model.state == "ready", process.text_output()
        started = descendants(process.process.pid)
        yield process
    deadline = time.monotonic() + 30
    while running(started) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not running(started), "the stopped worker left none of Ray's processes behind"


def test_hello_and_status_show_the_actors_their_devices_and_health(ray_worker):
    with ray_worker.client() as client:
        for model in (client.hello().model, ModelState.from_dict(client.status()["model"])):
            actors = model.actors
            assert [a["name"] for a in actors] == ["actor-0", "actor-1"]
            assert all(a["state"] == "ready" and a["device"] == "cpu" and a["pid"] for a in actors)
            assert model.device == "ray: 2 actors on cpu"


def test_the_real_client_gets_the_in_process_bytes(ray_worker, tiny_weights, pipeline, tmp_path, photo):
    from invsr.image_io import ImageFile, write_image
    from invsr_server.cli.commands import main

    write_image(tmp_path / "in.png", ImageFile(photo[:96, :80].copy()))
    remote = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "remote.png"), "--seed", "9", *TILED]
    assert main([*remote, "--server", str(ray_worker.path)]) == 0
    local = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "local.png"), "--seed", "9", *TILED]
    with one_thread():  # as each actor computes
        assert main([*local, "--weights", str(tiny_weights.noise_predictor.parent), "--device", "cpu"]) == 0
    pixels = [np.asarray(Image.open(tmp_path / name)) for name in ("remote.png", "local.png")]
    assert np.array_equal(*pixels), "the same pixels (the provenance written with them names the devices)"


def test_two_clients_at_once_both_get_their_own_result(ray_worker, pipeline, photo):
    # one tile per batch: the big job is 25 batches, the small one 4, so sharing the actors fairly lets the
    # small one finish first (the automatic batch would make the big job two batches that nothing can pass)
    tiling = {"tile": 32, "overlap": 8, "tile_batch": 1}
    jobs = {"big": (photo, 1), "small": (photo[:40, :40].copy(), 2)}
    results, finished = {}, []
    big_computing = threading.Event()

    def run(name):
        image, seed = jobs[name]
        with ray_worker.client() as client:
            result = client.upscale(
                memoryview(image).cast("B"),
                image.shape[1],
                image.shape[0],
                3,
                "u8",
                UpscaleRequest(seed=seed, **tiling),
                on_progress=lambda progress: big_computing.set() if name == "big" else None,
            )
        results[name] = np.frombuffer(result.pixels, np.uint8).reshape(result.height, result.width, 3)
        finished.append(name)

    threads = {name: threading.Thread(target=run, args=(name,)) for name in jobs}
    threads["big"].start()
    assert big_computing.wait(300), "the big job reported no progress"
    threads["small"].start()  # while the big one has most of its tiles still to do
    for thread in threads.values():
        thread.join(300)
    assert finished[0] == "small", "the small job waited for the big one instead of sharing the actors"
    with one_thread():
        for name, (image, seed) in jobs.items():
            request = UpscaleRequest(seed=seed, **tiling)
            assert np.array_equal(results[name], pipeline.upscale(image, request).image), name


def test_cancel_through_the_front_stops_the_job(ray_worker, photo):
    """Cancelled after its first tile, of 121: the job stops there (25 tiles were done before a cancel reached
    the front, now and then, on a busy machine)."""
    tiles_done = []
    image = np.tile(photo, (2, 2, 1))
    with ray_worker.client() as client:
        with pytest.raises(errors.Cancelled):
            client.upscale(
                memoryview(image).cast("B"),
                256,
                256,
                3,
                "u8",
                UpscaleRequest(tile=32, overlap=8, tile_batch=1),
                on_progress=lambda progress: tiles_done.append(progress.done),
                should_cancel=lambda: any(tiles_done),
            )
        assert max(tiles_done) < 121, "cancelled before its last tile"
        deadline = time.monotonic() + 60
        while any(a["in_flight"] for a in client.status()["model"]["actors"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(a["in_flight"] for a in client.status()["model"]["actors"])
