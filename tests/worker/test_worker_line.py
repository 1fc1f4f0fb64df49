"""The dialog's Worker line (the plug-in's invsr_plugin/worker_status.py) against real worker processes and
real connection files: what it says for a running worker, a stale or missing file, a file that is not one;
and that finding out never starts a worker."""

import json
import shutil
import sys
import time

import pytest
from gimp_harness import PLUGINS
from worker_helpers import WorkerProcess, curve_worker

from invsr.wire import connection

START = {"start_command": [sys.executable, "-m", "invsr_server", "serve"]}  # as `invsr gimp install` records it


@pytest.fixture(scope="module")
def worker_status():
    sys.path.insert(0, str(PLUGINS / "invsr-upscale"))
    try:
        from invsr_plugin import worker_status

        yield worker_status
    finally:
        sys.path.remove(str(PLUGINS / "invsr-upscale"))


@pytest.fixture(scope="module")
def ready_worker(tmp_path_factory, tiny_weights):
    """A worker that loaded its model at start, on its default endpoint (a Unix socket)."""
    folder = tmp_path_factory.mktemp("ready")
    with WorkerProcess(folder, tiny_weights.noise_predictor.parent, "--preload", bind=None).wait_ready() as worker:
        with worker.client() as client:
            deadline = time.monotonic() + 120
            while client.hello().model.state != "ready" and time.monotonic() < deadline:
                time.sleep(0.2)
        yield worker


@pytest.fixture(scope="module")
def idle_worker(tmp_path_factory, tiny_weights):
    """A worker on a TCP port that has not loaded its model yet (it loads at the first job)."""
    folder = tmp_path_factory.mktemp("idle")
    with WorkerProcess(folder, tiny_weights.noise_predictor.parent).wait_ready() as worker:
        yield worker


def test_the_local_worker_running_and_ready_says_its_device(worker_status, ready_worker, monkeypatch):
    monkeypatch.setenv("INVSR_RUNTIME_DIR", str(ready_worker.folder))  # its file is the local worker's
    assert worker_status.line("", START) == (
        "Worker: local, running on cpu, ready, on small random weights: not a real upscale"
    )


def test_a_running_worker_whose_model_is_not_loaded_says_when_it_loads(worker_status, idle_worker, monkeypatch):
    monkeypatch.setenv("INVSR_RUNTIME_DIR", str(idle_worker.folder))
    assert worker_status.line("", START) == "Worker: local, running, the model loads on the first upscale"
    endpoint = idle_worker.connection.endpoint
    assert worker_status.line(str(idle_worker.path), {}) == (
        f"Worker: worker.json at {endpoint}, running, the model loads on the first upscale"
    )
    with idle_worker.client() as client:
        assert client.hello().model.state == "not loaded"  # asking did not make it load


def test_a_connection_file_names_its_worker_and_its_state(worker_status, ready_worker, tmp_path):
    chosen = tmp_path / "studio-pc.json"  # a copy under the name the user gave it
    shutil.copy(ready_worker.path, chosen)
    assert worker_status.line(str(chosen), {}) == (
        f"Worker: studio-pc.json at {ready_worker.connection.endpoint}, running on cpu, ready, "
        "on small random weights: not a real upscale"
    )


def test_no_local_worker_says_it_will_be_started_and_starts_none(worker_status, tmp_path, monkeypatch):
    monkeypatch.setenv("INVSR_RUNTIME_DIR", str(tmp_path))
    assert worker_status.line("", START) == "Worker: local, not running: it will be started when you upscale"
    assert worker_status.line("", {}) == (
        "Worker: local, not running, and this copy of the plug-in cannot start one. In a terminal, run: "
        "invsr gimp install"
    )
    assert list(tmp_path.iterdir()) == []  # no worker started: it would have written its connection file


@pytest.fixture(scope="module")
def stale_file(tmp_path_factory, tiny_weights):
    """The connection file of a worker that has since died without removing it (killed, or its computer
    restarted): a real endpoint and process id, neither alive."""
    folder = tmp_path_factory.mktemp("stale")
    worker = WorkerProcess(folder, tiny_weights.noise_predictor.parent).wait_ready()
    kept = folder / "kept.json"
    shutil.copy(worker.path, kept)
    worker.stop()
    shutil.copy(kept, worker.path)
    return worker.path


def test_a_stale_local_file_says_not_running_and_starts_none(worker_status, stale_file, monkeypatch):
    monkeypatch.setenv("INVSR_RUNTIME_DIR", str(stale_file.parent))
    before = stale_file.read_bytes()
    assert worker_status.line("", START) == "Worker: local, not running: it will be started when you upscale"
    assert stale_file.read_bytes() == before  # no new worker wrote its own


def test_a_stale_chosen_file_names_no_worker_that_answers(worker_status, stale_file):
    started = time.monotonic()
    said = worker_status.line(str(stale_file), START, timeout=30)
    assert said == "Worker: the file worker.json names no worker that answers: start it on its computer"
    assert time.monotonic() - started < 15  # a dead local process is known at once, not after the timeout


def test_a_silent_endpoint_names_no_worker_that_answers(worker_status, tmp_path):
    """A file whose worker is on another computer (no process id to check) that does not answer."""
    import zmq

    silent = zmq.Context.instance().socket(zmq.ROUTER)  # accepts connections, answers nothing
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        path = tmp_path / "far.json"
        connection.write(path, connection.Connection(endpoint=f"tcp://127.0.0.1:{port}", key="00" * 32, protocol="2.0"))
        assert worker_status.line(str(path), {}, timeout=1.0) == (
            "Worker: the file far.json names no worker that answers: start it on its computer"
        )
    finally:
        silent.close(linger=0)


def test_a_missing_or_foreign_file_says_to_choose_the_workers_own(worker_status, tmp_path):
    missing = tmp_path / "gone.json"
    assert worker_status.line(str(missing), {}) == (
        f"Worker: the file {missing} is not there: choose the connection file the worker wrote"
    )
    foreign = tmp_path / "settings.json"
    foreign.write_text(json.dumps({"theme": "dark"}))
    assert worker_status.line(str(foreign), {}) == (
        "Worker: settings.json is not a worker's connection file: choose the one invsr serve wrote"
    )


def test_a_curve_worker_without_a_client_key_says_how_to_give_one(worker_status, tmp_path, tiny_weights):
    from invsr.wire.keys import make_key_pair

    make_key_pair(tmp_path / "server", "server")
    _, laptop = make_key_pair(tmp_path / "allowed", "laptop")
    with curve_worker(tmp_path / "w", tiny_weights.noise_predictor.parent, keys=tmp_path).wait_ready() as worker:
        where = f"worker.json at {worker.connection.endpoint}"
        assert worker_status.line(str(worker.path), {}) == (
            f"Worker: {where} requires CurveZMQ encryption. In a terminal, run: "
            "invsr gimp install --client-key NAME.key_secret"
        )
        assert worker_status.line(str(worker.path), {"client_key": str(laptop)}) == (
            f"Worker: {where}, running, the model loads on the first upscale"
        )


@pytest.mark.parametrize(
    "model, words",
    [
        ({"state": "ready", "device": "cuda:0 (NVIDIA H200)"}, "running on cuda:0 (NVIDIA H200), ready"),
        ({"state": "loading"}, "running, loading the model"),
        ({"state": "compiling", "device": "cuda:0"}, "running on cuda:0, compiling the networks once after its start"),
        ({"state": "failed", "error": "no weights"}, "running, but its model failed to load: no weights."),
        (
            {"state": "unavailable", "error": "the Ray cluster's head at 10.0.0.1:6379 is unreachable since 10:00:00"},
            "running, but it cannot compute now: the Ray cluster's head at 10.0.0.1:6379 is unreachable",
        ),
    ],
)
def test_each_model_state_is_said_in_words(worker_status, model, words):
    assert worker_status.model_words(worker_status.ModelState.from_dict(model)).startswith(words)


def test_in_gimps_flatpak_the_line_looks_where_the_sandbox_meets_the_worker(
    worker_status, idle_worker, tmp_path, monkeypatch
):
    """The sandbox cannot start a worker: the line says to start one outside, or names the one that runs
    with its file in the folder both sides see."""
    from invsr.wire import flatpak

    monkeypatch.setenv("FLATPAK_ID", flatpak.GIMP_APP_ID)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert worker_status.line("", START) == (
        "Worker: local, not running, and GIMP's flatpak cannot start it. In a terminal outside GIMP, run: "
        'invsr serve --connection-file "$XDG_RUNTIME_DIR/app/org.gimp.GIMP/invsr/worker.json"'
    )
    shared = flatpak.flatpak_connection_file()
    shared.parent.mkdir(parents=True)
    shutil.copy(idle_worker.path, shared)  # as `invsr serve --connection-file` there would have written it
    assert worker_status.line("", START) == "Worker: local, running, the model loads on the first upscale"
