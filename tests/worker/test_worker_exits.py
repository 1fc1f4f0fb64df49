"""A worker that a client started, and that vanished mid-job, is described in a sentence: killed by the
system, crashed, or stopped (its supervisor records the exit status); the plug-in says that sentence, where
the log is and what to do, never the log itself."""

import os
import signal
import time

import pytest
from gimp_harness import PLUGINS
from worker_helpers import serve_command, stop_started_worker

from invsr.request import UpscaleRequest
from invsr.wire import errors, exits
from invsr.wire.client import connect, stop_worker
from invsr.wire.connection import read

LONG_JOB = UpscaleRequest(tile=32, overlap=8, steps=5)  # some seconds on the test weights: 121 tiles


@pytest.fixture
def started(tmp_path, tiny_weights):
    """A worker started as the plug-in starts one: by `connect`, under its supervisor."""
    path = tmp_path / "run" / "worker.json"
    command = serve_command(tiny_weights.noise_predictor.parent, "--bind", "tcp://127.0.0.1:*", "--preload")
    client = connect(path, start_command=command, start_timeout=120)
    yield path, client
    client.close()
    stop_started_worker(path)


def _plugin_messages(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from invsr_plugin import messages

    return messages


def test_a_worker_killed_mid_job_is_said_to_be_killed_for_memory_with_where_its_log_is(started, monkeypatch):
    path, client = started
    worker = client.connection
    assert worker.supervisor_pid and worker.supervisor_pid != worker.pid
    killed = []

    def kill_at_the_first_tiles(progress):
        if not killed and progress.stage == "tiles":
            os.kill(worker.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer does
            killed.append(True)

    pixels = bytes(range(256)) * (96 * 96 * 3 // 256)
    with pytest.raises(errors.WorkerLost, match=r"has died: it was killed by the system \(SIGKILL\)") as lost:
        client.upscale(pixels, 96, 96, 3, "u8", LONG_JOB, on_progress=kill_at_the_first_tiles)
    assert lost.value.details["exit"] == -signal.SIGKILL
    said = _plugin_messages(monkeypatch).job_failed(lost.value, remote=False, layer_name="photo")
    assert said.startswith("The InvSR worker was killed by the system (SIGKILL), most often because the computer")
    assert "nothing was changed" in said and "Close other programs" in said
    assert said.endswith(f"Its log: {worker.log_file}") and "\n" not in said  # a sentence, not the log's lines
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{worker.supervisor_pid}") and time.monotonic() < deadline:
        time.sleep(0.1)  # the supervisor ends with the worker: nothing is left running
    assert exits.read(exits.record_path(worker.log_file), worker.pid) == -signal.SIGKILL


def test_a_supervised_worker_stops_cleanly_and_a_silent_one_is_not_called_dead(started, monkeypatch):
    path, client = started
    worker = read(path)
    assert stop_worker(path) == worker.pid  # `invsr serve --stop` signals the worker itself, not its supervisor
    assert exits.read(exits.record_path(worker.log_file), worker.pid, wait=10) == 0
    assert exits.describe(0).startswith("was stopped")
    frozen = errors.WorkerLost("frozen", {"reason": "the worker at X (process 7) has not answered for 30 s"})
    said = _plugin_messages(monkeypatch).job_failed(frozen, remote=False, layer_name="photo")
    assert said == (
        "The InvSR worker stopped answering during the upscale; nothing was changed: the worker at X (process 7) "
        "has not answered for 30 s."
    )


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (-signal.SIGSEGV, "crashed (SIGSEGV"),
        (-signal.SIGTERM, "was stopped (SIGTERM"),
        (3, "stopped with an error (exit status 3)"),
        (None, "how is not known"),
    ],
)
def test_every_way_a_worker_ends_has_its_own_words(status, words):
    assert words in exits.describe(status)
