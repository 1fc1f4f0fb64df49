"""`invsr serve --ray ADDRESS` outlives its cluster's head (GCS), and joins a head started again there.

A real worker process joins a cluster of two nodes on this machine (Ray's own test cluster; the second
node has a fake GPU), whose head is then killed during a job: the worker says so within seconds, the job
ends (here with the message, its inputs having been on the head's node), the worker lives on past Ray's
reconnect timeout (shortened to 15 s for the cluster and the worker: Ray's driver ends its process at that
timeout), refuses jobs saying why, and once a new head listens at the same address, joins it and computes
the in-process bytes again."""

import contextlib
import os
import socket
import threading
import time

import numpy as np
import pytest
from ray_helpers import one_thread, ray  # noqa: F401 (ray: skips the module without Ray)
from worker_helpers import WorkerProcess

from invsr.request import UpscaleRequest
from invsr.wire import errors

pytestmark = pytest.mark.worker  # ray: from the folder
RECONNECT_S = 15  # Ray's gcs_rpc_server_reconnect_timeout_s here (60 s by default; the worker needs 5 s to leave)
REQUEST = UpscaleRequest(seed=3, tile=32, overlap=8, tile_batch=1)


@contextlib.contextmanager
def two_node_cluster(port: int):
    """A head whose GCS listens on `port`, and a second node with a fake GPU, where the actor goes (so that it
    outlives the head for a while, as on a real cluster); one CPU each."""
    from ray.cluster_utils import Cluster

    node = dict(num_cpus=1, object_store_memory=100 * 1024 * 1024)
    cluster = Cluster(initialize_head=True, head_node_args=dict(node, gcs_server_port=port))
    try:
        cluster.add_node(**node, num_gpus=1)
        yield cluster
    finally:
        cluster.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while not (found := condition()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def upscale(client, image, **options) -> np.ndarray:
    result = client.upscale(memoryview(image).cast("B"), image.shape[1], image.shape[0], 3, "u8", REQUEST, **options)
    return np.frombuffer(result.pixels, np.uint8).reshape(result.height, result.width, 3)


def in_flight(worker, image):
    """A job of 25 batches started in a thread of its own: (an event set once 3 tiles are done, the thread,
    and its outcome: the result or the error, once it ended)."""
    computing, outcome = threading.Event(), {}

    def run():
        with worker.client() as client:
            try:
                outcome["result"] = upscale(client, image, on_progress=lambda p: p.done >= 3 and computing.set())
            except errors.InvSRError as error:
                outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return computing, thread, outcome


def assert_ended_clearly(job, outcome, expected):
    """The job in flight when the head went ended within seconds: with the `expected()` pixels, or with the
    message."""
    job.join(30)
    assert not job.is_alive(), "the job in flight ended, never waiting on the lost head"
    if "error" in outcome:
        assert isinstance(outcome["error"], errors.DeviceError) and "unreachable since" in str(outcome["error"])
    else:  # it finished, its batches coming back
        with one_thread():  # as each actor computes
            assert np.array_equal(outcome["result"], expected())
    print("the job in flight", "failed" if "error" in outcome else "finished")


def test_the_worker_outlives_its_ray_head_and_rejoins_a_new_one(tmp_path, weights, pipeline, photo, monkeypatch):
    monkeypatch.setenv("RAY_gcs_rpc_server_reconnect_timeout_s", str(RECONNECT_S))  # the clusters' processes
    image = photo[:40, :40].copy()
    with one_thread():  # as each actor computes
        expected = pipeline.upscale(image, REQUEST).image
    port = free_port()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(two_node_cluster(port))
        address = cluster.address
        options = ("--ray", address, "--actors", "1", "--preload")
        worker = stack.enter_context(WorkerProcess(tmp_path, weights, *options, env=dict(os.environ)))
        worker.wait_ready()
        with worker.client() as client:
            assert wait_for(lambda: client.hello().model.state == "ready", 120), worker.text_output()
            assert np.array_equal(upscale(client, image), expected)

            computing, job, outcome = in_flight(worker, photo)
            assert computing.wait(60), worker.text_output()
            cluster.remove_node(cluster.head_node, allow_graceful=False)
            killed = time.monotonic()
            lost = wait_for(lambda: client.hello().model.state == "unavailable" and client.hello().model, 10)
            noticed = time.monotonic() - killed
            assert lost, f"hello says the head is lost within 10 s\n{worker.text_output()}"
            assert f"head at {address} is unreachable since" in lost.error
            assert client.status()["model"]["state"] == "unavailable"
            assert_ended_clearly(job, outcome, lambda: pipeline.upscale(photo, REQUEST).image)
            time.sleep(max(0.0, killed + RECONNECT_S + 3 - time.monotonic()))  # past Ray's timeout
            assert worker.process.poll() is None, f"the worker lives on\n{worker.text_output()}"
            with pytest.raises(errors.DeviceError, match="unreachable since .*start it again"):
                upscale(client, image)

            stack.enter_context(two_node_cluster(port))  # a new cluster at the same address
            restarted = time.monotonic()
            assert wait_for(lambda: client.hello().model.state == "ready", 90), worker.text_output()
            rejoined = time.monotonic() - restarted
            assert np.array_equal(upscale(client, image), expected)
        worker.stop()  # while its cluster runs: leaving it needs the head
    print(f"head lost noticed in {noticed:.1f} s; rejoined, actors loaded, {rejoined:.1f} s after the new head")
