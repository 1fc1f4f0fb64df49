"""Ray for tests: one instance per test module on this machine's CPUs, with two fake GPUs, so that actors
are placed as on a GPU machine (one GPU each) and compute on the CPU with the tiny weights.

Results on the CPU depend on PyTorch's thread count; Ray gives each actor with one CPU one thread, so the
in-process results they are compared with are made with one thread too (`one_thread`)."""

from __future__ import annotations

import contextlib
import os

import pytest

ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install -e '.[ray]'")

OBJECT_STORE_BYTES = 200 * 1024 * 1024  # far more than the tests' batches, far less than the default share


@contextlib.contextmanager
def ray_instance():
    """A Ray instance on this machine with 2 CPUs and 2 fake GPUs, shut down at the end."""
    ray.init(
        address="local",  # its own, never a cluster someone else started on this machine
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        logging_level="WARNING",
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def cluster():
    """The module's Ray instance (`ray_instance`), for the tests that need one running."""
    with ray_instance():
        yield


def one_thread():
    """One PyTorch thread in this process, as Ray gives an actor with one CPU."""
    from invsr.devices import cpu_threads

    return cpu_threads(1)


def start_pipeline(weights, **options):
    """A RayPipeline of two actors (one fake GPU each) on the CPU in fp32."""
    from invsr_server.cluster.pipeline import ActorOptions, RayPipeline
    from invsr_server.cluster.ray_cluster import actor_shape

    actor_options = ActorOptions(weights=weights.sd_turbo.parent, device="cpu", dtype="fp32", **options)
    return RayPipeline.start(actor_options, actor_shape(2))


def actor_pid(pipeline, name: str) -> int:
    return next(actor["pid"] for actor in pipeline.actors() if actor["name"] == name)


def kill_process(pid: int, signum) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def descendants(pid: int) -> set[int]:
    """The processes started by `pid`, and by those, from /proc (as the reaper finds them)."""
    from invsr_server.cluster import reaper

    return reaper.descendants(pid, reaper.processes())


def running(pids: set[int]) -> set[int]:
    """Those of `pids` still running (not zombies)."""
    alive = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
    return alive
