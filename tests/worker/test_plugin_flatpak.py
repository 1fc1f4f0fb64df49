"""GIMP as a flatpak: its sandbox cannot start the worker, so the user starts one on the host, and the
plug-in inside the sandbox finds its connection file in the folder that flatpak shares between the two.

No flatpak runs here: the sandbox's side is the plug-in's own code in a process with the environment
flatpak gives a sandbox (FLATPAK_ID, XDG_RUNTIME_DIR), against a real worker started the way docs/GIMP.md
and `invsr gimp doctor` tell the user.
"""

import os
import sys
from pathlib import Path
from unittest import mock

import pytest
from gimp_harness import PLUGINS
from worker_helpers import WorkerProcess

APP = "org.gimp.GIMP"


def test_the_host_and_the_sandbox_name_the_same_folder(monkeypatch):
    """flatpak mounts the host's $XDG_RUNTIME_DIR/app/APP at /run/user/UID/app/APP in the sandbox, whose
    XDG_RUNTIME_DIR is /run/user/UID: the same rule on both sides gives the same path."""
    from invsr.wire.flatpak import flatpak_connection_file, in_flatpak_sandbox

    monkeypatch.delenv("FLATPAK_ID", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    host = flatpak_connection_file()
    assert host == Path("/run/user/1000/app/org.gimp.GIMP/invsr/worker.json")
    assert not in_flatpak_sandbox() or os.path.exists("/.flatpak-info")
    monkeypatch.setenv("FLATPAK_ID", APP)
    assert in_flatpak_sandbox() and flatpak_connection_file() == host
    monkeypatch.delenv("XDG_RUNTIME_DIR")  # flatpak's rule when the host session has none
    assert flatpak_connection_file() == Path(f"/run/user/{os.getuid()}/app/org.gimp.GIMP/invsr/worker.json")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """The host's $XDG_RUNTIME_DIR, which flatpak shares (its app/APP folder) with the sandbox."""
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def host_worker(runtime, tiny_weights):
    """A worker started on the host as `invsr gimp install` and `doctor` tell the user to."""
    from invsr.wire.flatpak import flatpak_connection_file

    with mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": str(runtime)}):
        path = flatpak_connection_file(APP)
    worker = WorkerProcess(path.parent, tiny_weights.noise_predictor.parent).wait_ready()
    yield worker
    worker.stop()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """This process seen as GIMP's flatpak (once FLATPAK_ID is set): a home and an empty runtime folder."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INVSR_GIMP_SETTINGS", str(tmp_path / "no-settings.json"))
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    return tmp_path


def test_in_the_sandbox_the_plugin_uses_the_worker_started_on_the_host(sandbox, monkeypatch, runtime, host_worker):
    from invsr_plugin import flow
    from invsr_wire.request import UpscaleRequest  # the plug-in's copy of the wire, as in GIMP

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("FLATPAK_ID", APP)
    with flow.connect(flow.Options(), on_status=print) as client:
        assert client.hello().pid == host_worker.connection.pid
        result = client.upscale(bytes(range(48)) * 4, 8, 8, 3, "u8", UpscaleRequest(scale=2))
    assert (result.width, result.height) == (16, 16) and len(bytes(result.pixels)) == 16 * 16 * 3


def test_in_the_sandbox_without_a_worker_the_plugin_says_how_to_start_one(sandbox, monkeypatch):
    from invsr_plugin import flow

    monkeypatch.setenv("FLATPAK_ID", APP)
    with pytest.raises(flow.PluginError) as raised:
        flow.connect(flow.Options(), on_status=print)
    message = str(raised.value)
    assert "GIMP runs as a flatpak, whose sandbox cannot start the InvSR worker" in message
    assert 'invsr serve --connection-file "$XDG_RUNTIME_DIR/app/org.gimp.GIMP/invsr/worker.json"' in message
    assert not (sandbox / "runtime" / "invsr").exists()  # no attempt at the sandbox's own runtime folder


def test_install_and_doctor_for_the_flatpak_say_what_to_start(sandbox, monkeypatch, capsys, runtime, host_worker):
    from invsr.wire.flatpak import flatpak_connection_file
    from invsr_server.cli.commands import main

    monkeypatch.setenv("INVSR_GIMP_PYTHON", sys.executable)  # stands for the flatpak's Python, which has none here
    plugins = sandbox / "home" / ".var" / "app" / APP / "config" / "GIMP" / "3.2" / "plug-ins"
    path = flatpak_connection_file()
    assert main(["gimp", "install", "--gimp-dir", str(plugins)]) == 0
    told = "GIMP's flatpak cannot start the worker: start it yourself and leave it running:\n  invsr serve"
    assert f"{told} --connection-file {path}" in capsys.readouterr().out

    assert main(["gimp", "doctor", "--gimp-dir", str(plugins)]) == 1
    told = "start it on this computer and leave it running: invsr serve"
    assert f"{told} --connection-file {path}" in capsys.readouterr().out

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # the worker started as told, there
    main(["gimp", "doctor", "--gimp-dir", str(plugins)])
    worker_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert worker_line.startswith("[ ok ] for GIMP's flatpak: the worker answers"), worker_line
