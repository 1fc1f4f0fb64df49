"""The package as a new user gets it: the wheel, installed with pip into a fresh virtual environment (no
source tree), then `invsr gimp install` into a GIMP 3.2 whose Python has no pyzmq, and an upscale through
that GIMP. Also `--offline-wheel`, with a pyzmq wheel downloaded once.

GIMP 3.2 runs in the Debian forky root without python3-zmq (gimp_harness.GimpRunner.without_zmq); the
installer runs on this machine and reaches GIMP's Python with `--gimp-python "chroot ROOT /usr/bin/python3"`.
Folders both sides use are mounted into the root at their own paths, as a home folder is for a GIMP in a
container.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gimp_harness import REPO, ROOTS, GimpRunner
from packaging.requirements import Requirement
from test_gimp_plugin import SCENARIOS, by_name, expected, photo_layer, pixels, scenario

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the GIMP harness uses a Linux chroot")
BUILD_LEFTOVERS = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


def run(command, **options):
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=1200, **options)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel, built as a packager would (pip, in an isolated build environment), from a clean copy of
    the source tree, so that nothing built here before can slip into it."""
    source = tmp_path_factory.mktemp("source") / "invsr-gimp"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, source])
    (built,) = out.glob("invsr_gimp-*.whl")
    return built


def test_the_wheel_carries_the_plugin_and_the_licences(wheel):
    """Each of the three code folders under its import name (setup.cfg's package_dir), every module and
    the plug-in's files (help pages included) with it."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in (("invsr", "invsr"), ("invsr_server", "server"), ("invsr_gimp", "plugin")):
        files = [path for path in (REPO / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts]
        carried = {f"{package}/{path.relative_to(REPO / folder)}" for path in files}
        assert carried <= names, sorted(carried - names)
    info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    licences = {name.rsplit("/", 1)[-1] for name in names if name.startswith(f"{info}/")}
    assert {"LICENSE", "NOTICE"} <= licences
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "License: Apache-2.0" in metadata.split("\n\n")[0]
    required = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    assert not any(line.startswith("accelerate") for line in required)
    # setup.cfg's rule (tests/unit/test_requirements.py): each requirement a floor, no ceiling without a known
    # break (none now), so that a user's newer PyTorch (a CUDA build of 2.15, say) stays as it is
    for line in required:
        requirement = Requirement(line)
        if requirement.marker is None:  # not an extra's
            assert {spec.operator for spec in requirement.specifier} == {">="}, line
            if requirement.name == "torch":
                assert requirement.specifier.contains("2.15.0") and requirement.specifier.contains("2.16.0"), line
    assert {Requirement(line).name for line in required} >= {"torch", "diffusers", "transformers", "pyzmq"}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel):
    """A new virtual environment with the wheel, as docs/GIMP.md tells a user: PyTorch first, then the wheel.
    Without compiling to bytecode at install (minutes on two busy cores; Python compiles on first import)."""
    venv = tmp_path_factory.mktemp("user") / "venv"
    run([sys.executable, "-m", "venv", venv])
    run([venv / "bin" / "pip", "install", "--quiet", "--no-compile", "torch==2.13.0"])
    run([venv / "bin" / "pip", "install", "--quiet", "--no-compile", wheel])
    return venv


@pytest.fixture(scope="module")
def gimp(tmp_path_factory):
    """GIMP 3.2 in a root whose Python has no pyzmq."""
    with GimpRunner.find_or_build("3.2").without_zmq() as runner:
        yield runner


@pytest.fixture(scope="module")
def shared(gimp, tmp_path_factory, tiny_weights):
    """A folder here and in the root at the same path, with the weights beside it."""
    folder = gimp.share(tmp_path_factory.mktemp("shared"), writable=True)
    gimp.share(tiny_weights.noise_predictor.parent)
    return folder


def test_gimps_python_in_that_root_has_no_pyzmq(gimp):
    done = gimp.run(["python3", "-c", "import zmq"], {})
    assert done.returncode == 1 and "No module named 'zmq'" in done.stderr


def test_two_commands_give_gimp_32_a_working_plugin(gimp, shared, fresh_venv, tiny_weights, pipeline):
    """`pip install` (the fixture) and `invsr gimp install`: the plug-in lands in GIMP 3.2's folder, pyzmq
    for GIMP's Python 3.14 in its vendor folder, and GIMP upscales with a worker it starts from the wheel."""
    gimp.share(fresh_venv, writable=True)  # where the worker's Python writes its bytecode
    home = shared / "home"
    config = home / ".config" / "GIMP" / "3.2"  # what GIMP 3.2's first start leaves
    config.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if key not in ("XDG_CONFIG_HOME", "GIMP3_DIRECTORY")}
    env.update(HOME=str(home), INVSR_RUNTIME_DIR=str(shared / "run"))
    weights = tiny_weights.noise_predictor.parent
    install = [fresh_venv / "bin" / "invsr", "gimp", "install", "--gimp-python", gimp.python_command()]
    done = run([*install, "--weights", weights, "--device", "cpu"], env=env, cwd=shared)
    plugin = config / "plug-ins" / "invsr-upscale"
    assert f"installed the plug-in in {plugin}" in done.stdout
    assert f"(pyzmq from {plugin / 'vendor' / 'zmq'}: the plug-in's vendor folder)" in done.stdout, done.stdout
    assert "Python 3.14" in done.stdout and (plugin / "vendor" / "zmq").is_dir()
    free_port(plugin / "invsr-settings.json")

    try:
        folder, result = upscale_in_gimp(gimp, shared, config)
        assert result["status"] == "success", result["error"]
        source = pixels(folder, by_name(result["before"], "photo"))
        upscaled = pixels(folder, by_name(result["after"], "photo (InvSR ×2)"))
        np.testing.assert_array_equal(upscaled, expected(pipeline, source, {"scale": 2.0}))
        worker = json.loads((shared / "run" / "worker.json").read_text())
        assert Path(worker["log_file"]).read_text().count("serving on") == 1

        doctor = gimp.run([fresh_venv / "bin" / "python", "-m", "invsr_server", "gimp", "doctor"], gimp_env(shared))
        lines = doctor.stdout.strip().splitlines()
        assert doctor.returncode == 0 and len(lines) == 4, doctor.stdout + doctor.stderr
        assert "gimp-console-3.2" in lines[0] and str(plugin) in lines[1]
        assert "Python 3.14" in lines[2] and "the plug-in's vendor folder" in lines[2]
    finally:
        stop_started_worker(shared / "run")


def free_port(settings_file: Path) -> None:
    """The worker the plug-in starts listens on InvSR's default port, which on a shared test machine another
    worker may hold: let it take a free one (the connection file says which)."""
    settings = json.loads(settings_file.read_text())
    settings["start_command"] += ["--bind", "tcp://127.0.0.1:*"]
    settings_file.write_text(json.dumps(settings))


def gimp_env(shared: Path) -> dict:
    return {
        "HOME": str(shared / "home"),
        "INVSR_RUNTIME_DIR": str(shared / "run"),
        "INVSR_CACHE": str(shared / "cache"),
        "HF_HUB_OFFLINE": "1",
    }


def upscale_in_gimp(gimp, shared: Path, config: Path, name: str = "gimp-run"):
    """Scale a layer 2x through the installed plug-in in GIMP's own configuration folder, as a user would."""
    out = shared / name
    out.mkdir()
    plan = {
        "out": str(out),
        "plugin": str(config / "plug-ins" / "invsr-upscale"),
        "connection_file": "",
        "scenarios": [scenario("rgb8", [photo_layer()], arguments={"scale": 2.0})],
    }
    (out / "plan.json").write_text(json.dumps(plan))
    env = dict(gimp_env(shared), INVSR_SCENARIOS=str(out / "plan.json"))
    done = gimp.run_batch(SCENARIOS, shared / "home", env, plugin_path=None, config=config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())["rgb8"]
    assert "crash" not in result, result["crash"]
    return out, result


def stop_started_worker(run_dir: Path) -> None:
    try:
        os.kill(json.loads((run_dir / "worker.json").read_text())["pid"], signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass


@pytest.fixture(scope="module")
def pyzmq_wheel(gimp):
    """A pyzmq wheel for GIMP 3.2's Python, downloaded once and kept beside the GIMP roots."""
    from invsr_gimp import gimp_python

    folder = ROOTS / "wheels" / "forky"
    found = sorted(folder.glob("pyzmq-*.whl"))
    if not found:
        python = gimp_python.GimpPython(tuple(gimp.python_command().split()), "GIMP 3.2's Python")
        folder.mkdir(parents=True, exist_ok=True)
        found = [gimp_python.download_pyzmq(gimp_python.probe(python, folder).target, folder)]
    return found[-1]


def test_offline_wheel_is_checked_against_gimps_python_then_vendored(gimp, shared, pyzmq_wheel, capsys):
    from invsr_server.cli.commands import main

    plugins = shared / "offline" / "plug-ins"
    command = ["gimp", "install", "--gimp-dir", str(plugins), "--gimp-python", gimp.python_command()]
    windows = shared / "pyzmq-27.3.0-cp312-abi3-win_amd64.whl"  # the right file under a Windows build's name
    shutil.copyfile(pyzmq_wheel, windows)
    assert main([*command, "--offline-wheel", str(windows)]) == 1
    error = capsys.readouterr().err
    assert "does not fit GIMP's Python (cpython 3.14 on linux-x86_64)" in error and "pip download" in error
    assert not (plugins / "invsr-upscale" / "vendor" / "zmq").exists()

    assert main([*command, "--offline-wheel", str(pyzmq_wheel)]) == 0
    vendored = plugins / "invsr-upscale" / "vendor" / "zmq"
    assert f"(pyzmq from {vendored}: the plug-in's vendor folder)" in capsys.readouterr().out


def test_a_vendored_pyzmq_for_another_python_is_named_by_the_plugin_and_doctor(gimp, shared):
    """What an installer that asked pyenv's Python 3.11 (this test's own, first on a terminal's PATH) left: a
    pyzmq for 3.11 in vendor/, in a GIMP whose Python 3.14 has no pyzmq. The plug-in does not load it, and says
    why; doctor says the same, and what to do."""
    from invsr_gimp.install import _gimp_python, copy_plugin

    config = shared / "misfit-config"
    plugin = config / "plug-ins" / "invsr-upscale"
    copy_plugin(plugin)
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for part in ("zmq", "pyzmq.libs", *(path.name for path in site.glob("pyzmq-*.dist-info"))):
        shutil.copytree(site / part, plugin / "vendor" / part)
    built = f"was built as cp{sys.version_info[0]}{sys.version_info[1]}-cp{sys.version_info[0]}{sys.version_info[1]}-"

    _, result = upscale_in_gimp(gimp, shared, config, "misfit-run")
    assert result["status"] == "execution-error" and "needs the Python module zmq" in result["error"]
    assert built in result["error"] and "which this Python (/usr/bin/python3, Python 3.14" in result["error"]

    good, said = _gimp_python(plugin, gimp.python_command())
    assert not good and "has no zmq of its own" in said and built in said, said
    assert "run `invsr gimp install` again" in said
