"""Actors lost or hung in the middle of a job (real Ray processes: ray.kill, SIGKILL, SIGSTOP): the job
completes on the others with the same bytes, nothing counted twice (the accumulator refuses a tile given
twice); with no actor left it fails with a clear message. One Ray instance for the module; each test
starts its own two actors, since it ends one of them."""

import signal

import numpy as np
import pytest
from ray_helpers import actor_pid, cluster, kill_process, one_thread, ray, start_pipeline  # noqa: F401 (cluster: a fixture)

from invsr.request import UpscaleRequest
from invsr.wire.errors import DeviceError

REQUEST = UpscaleRequest(tile=32, overlap=8, tile_batch=1, seed=4)  # 25 batches of the 128 x 128 photo


@pytest.fixture
def two_actors(cluster, tiny_weights):
    pipeline = start_pipeline(tiny_weights, slow_factor=10.0, slow_floor=3.0)
    yield pipeline
    for actor in pipeline.actors():  # a stopped one must run again to be ended
        kill_process(actor["pid"], signal.SIGCONT)
    pipeline.close()


@pytest.fixture(scope="module")
def expected(pipeline, photo):
    with one_thread():
        return pipeline.upscale(photo, REQUEST).image


def upscale_and_at(pipeline, photo, tiles_done: int, action):
    """Upscale the photo, doing `action()` once `tiles_done` tiles have arrived."""
    done = []

    def progress(update):
        if update.stage == "tiles" and update.done >= tiles_done and not done:
            done.append(True)
            action()

    result = pipeline.upscale(photo, REQUEST, progress=progress)
    assert done, "the action ran during the job"
    return result


def states(pipeline) -> dict:
    return {actor["name"]: actor["state"] for actor in pipeline.actors()}


def test_an_actor_ended_by_ray_kill_mid_job_leaves_the_result_unchanged(two_actors, photo, expected):
    victim = two_actors.dispatcher.actors[1].handle
    result = upscale_and_at(two_actors, photo, 3, lambda: ray.kill(victim, no_restart=True))
    assert np.array_equal(result.image, expected)
    assert states(two_actors) == {"actor-0": "ready", "actor-1": "dead"}
    assert result.report["tiling"]["batches_by_actor"]["actor-0"] >= 20, "the survivor did the rest"


def test_an_actor_process_killed_with_sigkill_mid_job_leaves_the_result_unchanged(two_actors, photo, expected):
    pid = actor_pid(two_actors, "actor-0")
    result = upscale_and_at(two_actors, photo, 3, lambda: kill_process(pid, signal.SIGKILL))
    assert np.array_equal(result.image, expected)
    assert states(two_actors) == {"actor-0": "dead", "actor-1": "ready"}
    assert two_actors.upscale(photo, REQUEST).image.tobytes() == expected.tobytes(), "and it serves on"


def test_a_hung_actor_is_given_up_and_its_batch_run_elsewhere(two_actors, photo, expected):
    pid = actor_pid(two_actors, "actor-1")
    result = upscale_and_at(two_actors, photo, 3, lambda: kill_process(pid, signal.SIGSTOP))
    assert np.array_equal(result.image, expected)
    assert states(two_actors) == {"actor-0": "ready", "actor-1": "slow"}
    kill_process(pid, signal.SIGCONT)  # it wakes up: its late results are dropped, not counted again
    assert np.array_equal(two_actors.upscale(photo, REQUEST).image, expected)


def test_with_no_actor_left_the_job_fails_saying_so(two_actors, photo):
    def kill_both():
        for actor in two_actors.dispatcher.actors:
            ray.kill(actor.handle, no_restart=True)

    with pytest.raises(DeviceError, match="every Ray actor is lost"):
        upscale_and_at(two_actors, photo, 1, kill_both)
    with pytest.raises(DeviceError, match="every Ray actor is lost"):
        two_actors.upscale(photo, REQUEST)
