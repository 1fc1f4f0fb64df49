"""Which GIMP the installer serves, and which Python runs its plug-ins, found without running GIMP: fake
programs on PATH (a `gimp` that only says its version, python3 scripts that pass or fail the check for GIMP's
gi) and a fake --gimp-python that answers the installer's probe as a GIMP 3.2 in a container would."""

import json
import os
import sys
import sysconfig

import pytest

from invsr.wire import vendored
from invsr_gimp import gimp_python, install

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the fakes are shell scripts")


def program(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


@pytest.fixture
def no_gimp_started(tmp_path, monkeypatch):
    """No GIMP configuration folder yet, nothing on PATH but what a test puts in tmp_path/bin."""
    for name in ("GIMP3_DIRECTORY", gimp_python.PYTHON_ENVIRONMENT_VARIABLE, "VIRTUAL_ENV", "CONDA_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path / "config" / "GIMP"


def test_a_gimp_on_path_by_its_plain_name_says_its_version(tmp_path, no_gimp_started):
    program(tmp_path / "bin" / "gimp", "echo 'GNU Image Manipulation Program version 3.2.6'\n")
    assert install.plugin_dirs(None) == [no_gimp_started / "3.2" / "plug-ins"]


def gimp_32_python(tmp_path):
    """A command that answers the installer's probe as GIMP 3.2's Python 3.14 in a container does."""
    facts = {"executable": "/usr/bin/python3", "implementation": "cpython", "version": [3, 14, 0]}
    facts |= {"platform": "linux-x86_64", "machine": "x86_64", "glibc": "2.41", "macos": "", "free_threaded": False}
    facts |= {"gimp": True, "gimp_version": [3, 2, 6], "zmq_error": "ModuleNotFoundError: No module named 'zmq'"}
    return str(program(tmp_path / "container" / "python3", f"echo 'INVSR-PROBE {json.dumps(facts)}'\n"))


def test_the_gimp_that_gimp_python_reaches_decides_the_folder_and_doctor_finds_it(tmp_path, no_gimp_started):
    python = gimp_32_python(tmp_path)
    assert install.plugin_dirs(None, python) == [no_gimp_started / "3.2" / "plug-ins"]
    state = {"gimp_dir": None, "gimp_python": python, "installed": []}
    assert install._gimp_found(state) == [(True, f"GIMP 3.2.6 found: the Python `{python}` imports its libgimp")]


def test_the_python_an_interpreter_file_of_gimps_names_runs_the_plugin(tmp_path, no_gimp_started):
    mapped = program(tmp_path / "opt" / "gimp" / "bin" / "python3.13", "exit 0\n")
    program(tmp_path / "bin" / "python3", "exit 0\n")  # first on PATH, and not the one GIMP runs
    interpreters = no_gimp_started / "3.2" / "interpreters"
    interpreters.mkdir(parents=True)
    (interpreters / "pygimp.interp").write_text(f"python={mapped}\npython3={mapped}\n:Python:E::py::python3:\n")
    found = gimp_python.find(no_gimp_started / "3.2" / "plug-ins")
    assert found.command == (str(mapped),) and str(interpreters / "pygimp.interp") in found.description


def test_a_python3_first_on_path_without_gimps_gi_is_not_gimps(tmp_path, no_gimp_started, monkeypatch):
    """pyenv's shim (or a venv's, or conda's python3) first on a terminal's PATH: not the one GIMP runs."""
    pyenv = program(tmp_path / "pyenv" / "shims" / "python3", "exit 1\n")  # no gi: the check fails
    system = program(tmp_path / "usr-bin" / "python3", "exit 0\n")
    monkeypatch.setenv("PATH", os.pathsep.join([str(pyenv.parent), str(system.parent)]))
    found = gimp_python.find(no_gimp_started / "3.0" / "plug-ins")
    assert found.command == (str(system),) and f"{pyenv} before it on PATH cannot import GIMP's gi" in found.description


def wheel_file(vendor, tag):
    info = vendor / "pyzmq-27.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
    (vendor / "zmq").mkdir()


def test_a_vendored_pyzmq_for_another_python_is_never_loaded(tmp_path, monkeypatch):
    major, minor = sys.version_info[:2]
    arch = sysconfig.get_platform().split("-")[-1]
    other = f"cp{major}{minor + 1}"
    wheel_file(tmp_path / "other", f"{other}-{other}-manylinux_2_28_{arch}")
    wheel_file(tmp_path / "abi3", f"cp{major}{minor - 1}-abi3-manylinux_2_28_{arch}")
    assert vendored.misfit(str(tmp_path / "abi3")) is None  # the stable ABI of an older version loads
    said = vendored.misfit(str(tmp_path / "other"))
    assert f"built as {other}-{other}-manylinux_2_28_{arch}" in said and f"Python {major}.{minor}" in said
    path = list(sys.path)
    monkeypatch.setattr(vendored.importlib.util, "find_spec", lambda name: None)  # no zmq of its own
    assert vendored.put_on_path(str(tmp_path / "other")) == said and sys.path == path
    assert vendored.put_on_path(str(tmp_path / "abi3")) == vendored.VENDORED and str(tmp_path / "abi3") in sys.path
    sys.path[:] = path
    monkeypatch.undo()
    assert vendored.put_on_path(str(tmp_path / "abi3")) == vendored.OWN and sys.path == path  # pyzmq is here
