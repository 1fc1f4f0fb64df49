"""The dialog's Worker field and line, in a real GIMP (3.0 and 3.2) on a virtual screen, driven with the
keyboard: the line says what the worker is, the default upscales with the local worker, and a connection
file chosen in the file chooser sends the upscale to that worker.

Each run leaves its pictures of the dialog (worker-*.png) in pytest's folder for the test: look at them.
"""

import re
import sys

import numpy as np
import pytest
from test_gimp_plugin import (  # noqa: F401 (the fixtures: GIMP, the local worker, a shared folder)
    by_name,
    expected,
    gimp,
    keep_screenshots,
    photo_layer,
    pixels,
    run_gimp,
    scenario,
    worker,
    workspace,
)
from worker_helpers import WorkerProcess

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the GIMP harness uses a Linux chroot or Debian's GIMP")
LAST = ("gimp-config", "plug-in-settings", "GimpProcedureConfigRun-python-fu-invsr-upscale.last")
WAIT_FOR_LINE = ["sleep", 4]  # the line is found in the background: a worker answers hello in milliseconds


@pytest.fixture(scope="module")
def studio(workspace):
    """A second worker, on a TCP port, as a worker on another computer would be; its model not loaded yet."""
    process = WorkerProcess(workspace / "studio", workspace / "weights").wait_ready()
    yield process
    process.stop()


@pytest.fixture()
def screen(gimp, workspace, tmp_path):
    if not gimp.has_screen:
        pytest.skip("needs xvfb-run and xdotool where GIMP runs (tests/gimp/build-root.sh installs them)")
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"),  # the local worker: the `worker` fixture's
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "absent.json"),
    }

    def run(name, dialog, server=""):
        arguments = {"scale": 2.0, "seed": 11, "server": server, "size-by": "scale"}
        try:
            return run_gimp(
                gimp,
                workspace,
                name,
                [scenario(name, [photo_layer()], arguments=arguments, dialog=dialog)],
                env,
                screen=True,
            )
        finally:
            keep_screenshots(workspace / name, tmp_path)

    return run


def jobs_done(process: WorkerProcess) -> int:
    return process.log.read_text().count("done in") if process.log.exists() else 0


def last_values(folder) -> str:
    """What GIMP kept of the dialog's values at the end of the run."""
    return folder.joinpath(*LAST).read_text()


def check_upscaled_exactly(folder, result, pipeline):
    assert result["status"] == "success", result["error"]
    source = pixels(folder, by_name(result["before"], "photo"))
    got = pixels(folder, by_name(result["after"], "photo (InvSR ×2)"))
    np.testing.assert_array_equal(got, expected(pipeline, source, {"scale": 2.0, "seed": 11}).reshape(got.shape))


def check_no_mnemonic_warnings(folder):
    stderr = (folder / "gimp-stderr.txt").read_text()
    assert "mnemonic" not in stderr, [line for line in stderr.splitlines() if "mnemonic" in line]


def test_the_dialog_says_the_local_worker_is_ready_and_upscales_with_it(screen, worker, studio, pipeline):
    local_before = jobs_done(worker)
    folder, results = screen("worker-local", [WAIT_FOR_LINE, ["shot", "worker-local"], ["key", "alt+u"]])
    check_upscaled_exactly(folder, results["worker-local"], pipeline)
    assert jobs_done(worker) == local_before + 1 and jobs_done(studio) == 0  # the default: the local worker
    kept = last_values(folder)
    assert '(server "")' in kept, kept
    assert '(worker-line "Worker: local, running on cpu, ready, on small random weights: not a real upscale")' in kept
    check_no_mnemonic_warnings(folder)


def test_a_connection_file_chosen_in_the_dialog_gets_the_upscale(screen, gimp, worker, studio, pipeline):
    chosen = gimp.inside(studio.path)
    dialog = [
        ["key", "alt+v"],  # Advanced opens
        ["key", "alt+w"],  # Worker: from "The local worker" down to "A worker's connection file"
        ["key", "Down"],
        ["shot", "worker-no-file-yet"],
        ["key", "Tab"],  # to the file chooser's button, which opens the chooser
        ["key", "space"],
        ["window", "^Choose a worker"],
        ["key", "ctrl+l"],  # type the file's path
        ["type", chosen],
        ["key", "Return"],
        ["window", "^Upscale [(]InvSR[)]$"],
        WAIT_FOR_LINE,
        ["shot", "worker-chosen"],
        ["key", "alt+u"],
    ]
    local_before, studio_before = jobs_done(worker), jobs_done(studio)
    folder, results = screen("worker-chosen", dialog)
    check_upscaled_exactly(folder, results["worker-chosen"], pipeline)
    assert jobs_done(studio) == studio_before + 1 and jobs_done(worker) == local_before  # the chosen worker's
    kept = last_values(folder)
    assert f'(server "{chosen}")' in kept, kept
    line = f"Worker: worker.json at {studio.connection.endpoint}, running, the model loads on the first upscale"
    assert f'(worker-line "{line}")' in kept, kept  # as it was when Upscale was pressed
    check_no_mnemonic_warnings(folder)


def test_reset_to_factory_defaults_brings_the_field_back_to_the_local_worker(screen, gimp, worker, studio):
    """The dialog's Reset sets "server" itself: the Worker field, its line and the upscale follow."""
    dialog = [
        WAIT_FOR_LINE,
        ["shot", "worker-given"],  # the file the arguments named: the line says the studio worker
        ["key", "alt+r"],  # Reset's menu (its first item has the focus), then Reset to Factory Defaults
        ["key", "Down"],
        ["key", "Return"],
        WAIT_FOR_LINE,
        ["key", "alt+v"],
        ["shot", "worker-reset"],
        ["key", "alt+u"],
    ]
    local_before, studio_before = jobs_done(worker), jobs_done(studio)
    folder, results = screen("worker-reset", dialog, server=gimp.inside(studio.path))
    result = results["worker-reset"]
    assert result["status"] == "success", result["error"]
    assert result["after"]["size"] == [96, 80]  # the factory scale, 4
    assert jobs_done(worker) == local_before + 1 and jobs_done(studio) == studio_before
    kept = last_values(folder)
    assert '(server "")' in kept and '(worker-line "Worker: local, running on cpu, ready' in kept, kept
    check_no_mnemonic_warnings(folder)


def test_a_worker_that_does_not_answer_holds_up_neither_the_dialog_nor_the_plugins_exit(screen, gimp, workspace):
    """The check waits in its own thread: the dialog opens and draws "Worker: checking..." meanwhile (the
    picture worker-checking.png shows it), and a Cancel while a check still waits ends the plug-in: a socket
    left open in that thread must not hold up its exit (GIMP would wait for it until the run's time limit)."""
    import zmq

    from invsr.wire import connection

    silent = zmq.Context.instance().socket(zmq.ROUTER)  # takes the connection, never answers
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    far = workspace / "far-away.json"
    connection.write(far, connection.Connection(endpoint=f"tcp://127.0.0.1:{port}", key="00" * 32, protocol="2.0"))
    try:
        folder, results = screen("worker-silent", [["shot", "worker-checking"], ["key", "Escape"]], gimp.inside(far))
    finally:
        silent.close(linger=0)
    assert results["worker-silent"]["status"] == "cancel"
    check_no_mnemonic_warnings(folder)


def test_a_run_that_fails_after_the_dialog_keeps_the_values_the_user_set(screen, gimp, workspace, tmp_path):
    """A width six times the layer's, for a worker whose connection file is gone: the run fails after the
    dialog, and Re-show or Repeat find what the user set (GIMP itself keeps values only after a success):
    a script repeating the last values gets that width and that worker. The greyed Scale field shows the
    scale the width gives, and the line says what is beyond the model."""
    by_width = [["key", "alt+z"], ["key", "Down"], ["key", "alt+x"], ["key", "ctrl+a"], ["type", "144"]]
    dialog = [*by_width, ["key", "Tab"], ["shot", "beyond-the-model"], ["key", "alt+u"]]
    gone = gimp.inside(workspace / "gone" / "worker.json")
    arguments = {"scale": 2.0, "seed": 11, "server": gone, "size-by": "scale"}
    failing = scenario("kept", [photo_layer()], arguments=arguments, dialog=dialog)
    repeated = scenario("repeated", [photo_layer()], mode="WITH_LAST_VALS")  # as a script's Repeat
    env = {"INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"), "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "x")}
    try:
        folder, results = run_gimp(gimp, workspace, "kept", [failing, repeated], env, screen=True)
    finally:
        keep_screenshots(workspace / "kept", tmp_path)
    for name in ("kept", "repeated"):
        assert results[name]["status"] == "execution-error", results[name]
        assert f"Cannot use the worker's connection file {gone}" in results[name]["error"]
    kept = last_values(folder)
    assert "(seed 11)" in kept and '(size-by "width")' in kept and "(pixels 144)" in kept, kept
    assert re.search(r"\(scale 6(\.0+)?\)", kept), kept  # 144 / 24, not the 2 the dialog opened with
    assert re.search(r'\(estimate "Result: 144 \S+ 120 pixels, 1 tile, .*plain resampling"\)', kept), kept
