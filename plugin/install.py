"""`invsr gimp install | uninstall | doctor`: put the plug-in where GIMP 3 looks, make GIMP's own Python
load pyzmq, and check every link of the chain from GIMP to the worker.

The installed plug-in is a folder `invsr-upscale/` in GIMP's user plug-in folder: the entry file, its
own modules (the package data of invsr_gimp), a copy of the wire package invsr.wire named `invsr_wire`
there (standard library and pyzmq only), `invsr-settings.json`, which records how to start the worker
with this very Python, and, when GIMP's Python has no pyzmq of its own, `vendor/` with one that fits it
(gimp_python.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import invsr.wire
from invsr import __version__
from invsr.wire.errors import InvSRError
from invsr.wire.flatpak import flatpak_connection_file
from invsr.wire.keys import load_key_pair
from invsr.wire.request import UpscaleRequest
from invsr_gimp import PLUGIN_DIR, PLUGIN_NAME

from . import gimp_python

SETTINGS_FILE = "invsr-settings.json"
VENDOR = "vendor"  # the entry script puts it on sys.path: pyzmq for GIMP's Python, when it has none
GIMP_VERSIONS = ("3.2", "3.0")  # newest first
GIMP_BINARIES = (*(f"{name}-{v}" for v in GIMP_VERSIONS for name in ("gimp-console", "gimp")), "gimp-console", "gimp")


def gimp_config_dirs() -> list[Path]:
    """GIMP 3 user configuration folders that exist here (3.0, 3.2, ..., flatpak), newest first."""
    if os.environ.get("GIMP3_DIRECTORY"):
        return [Path(os.environ["GIMP3_DIRECTORY"])]
    bases = [_config_base(), Path.home() / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP"]
    found = [d for base in bases if base.is_dir() for d in base.glob("3.*") if d.is_dir()]
    return sorted(found, key=lambda d: d.name, reverse=True)


def plugin_dirs(gimp_dir: Path | None, gimp_python_command: str | None = None) -> list[Path]:
    """Where to install: --gimp-dir, else the plug-ins folder of every GIMP 3 configuration found, else
    (GIMP not started yet) the default one of the GIMP that --gimp-python reaches, or of the newest GIMP 3
    on PATH, or of GIMP 3.0 (created)."""
    if gimp_dir is not None:
        return [Path(gimp_dir)]
    found = [d / "plug-ins" for d in gimp_config_dirs()]
    if found:
        return found
    version = _version_of_gimp_python(gimp_python_command) or _version_on_path()
    return [_config_base() / ".".join((version or "3.0").split(".")[:2]) / "plug-ins"]


def _version_on_path() -> str | None:
    """The version of the newest GIMP 3 on PATH: by its versioned name (gimp-3.2), else as `gimp --version`
    says (GIMP's binaries may be installed as plain gimp and gimp-console)."""
    for version in GIMP_VERSIONS:
        if shutil.which(f"gimp-{version}") or shutil.which(f"gimp-console-{version}"):
            return version
    for name in ("gimp-console", "gimp"):
        said = shutil.which(name) and _run([shutil.which(name), "--version"])
        match = re.search(r"version (3\.\d+)", said or "")
        if match:
            return match.group(1)
    return None


def _version_of_gimp_python(command: str | None) -> str | None:
    """The version of the libgimp that the Python named by --gimp-python (or INVSR_GIMP_PYTHON) imports: a GIMP
    in a container, a chroot or /opt, which PATH does not reach."""
    if not (command or os.environ.get(gimp_python.PYTHON_ENVIRONMENT_VARIABLE)):
        return None
    try:
        return gimp_python.probe(gimp_python.find(Path("."), command), Path(os.devnull)).gimp_version
    except InvSRError:
        return None


def _config_base() -> Path:
    """Where GIMP keeps its versions' configuration folders: on Linux $XDG_CONFIG_HOME, else ~/.config (GLib's
    rule); on Windows %APPDATA%; on macOS ~/Library/Application Support."""
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "GIMP"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "GIMP"


def start_command(weights: Path | None = None, device: str = "auto", dtype: str = "auto") -> list[str]:
    command = [sys.executable, "-m", "invsr_server", "serve"]
    if weights is not None:
        command += ["--weights", str(Path(weights).resolve())]
    for flag, value in (("--device", device), ("--dtype", dtype)):
        if value != "auto":
            command += [flag, value]
    return command


@dataclasses.dataclass(frozen=True)
class Installed:
    folder: Path
    pyzmq: str  # what GIMP's Python loads, or why that could not be checked
    flatpak: bool  # GIMP's sandbox cannot start the worker: the user starts it


def install(
    gimp_dir: Path | None,
    weights: Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    client_key: Path | None = None,
    gimp_python_command: str | None = None,
    offline_wheel: Path | None = None,
) -> list[Installed]:
    """`client_key`: this computer's .key_secret, for a remote worker that requires CurveZMQ;
    `gimp_python_command`: the command that runs GIMP's Python, when it is not found by itself;
    `offline_wheel`: a pyzmq wheel for GIMP's Python, for a machine without internet."""
    if not (PLUGIN_DIR / f"{PLUGIN_NAME}.py").is_file():
        raise InvSRError(f"the plug-in's files are missing from {PLUGIN_DIR}: reinstall invsr-gimp with pip")
    command = start_command(weights, device, dtype)
    settings = {"start_command": command, "python": sys.executable, "version": __version__}
    if client_key is not None:
        settings["client_key"] = str(_checked_key(client_key))
    installed = []
    for folder in plugin_dirs(gimp_dir, gimp_python_command):
        target = folder / PLUGIN_NAME
        copy_plugin(target)
        (target / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
        pyzmq = _provide_pyzmq(target, gimp_python_command, offline_wheel)
        installed.append(Installed(target, pyzmq, gimp_python.is_flatpak_folder(folder)))
    return installed


def _provide_pyzmq(target: Path, gimp_python_command: str | None, offline_wheel: Path | None) -> str:
    python = gimp_python.find(target.parent, gimp_python_command)
    if python is None:
        return (
            "GIMP's Python was not found, so whether it loads pyzmq is not known: install GIMP and run "
            "`invsr gimp install` again, or name GIMP's Python with --gimp-python COMMAND"
        )
    try:
        probe = gimp_python.vendor_pyzmq(python, target / VENDOR, offline_wheel)
    except InvSRError as error:
        raise InvSRError(
            f"the plug-in is installed in {target}, but GIMP's Python cannot import zmq: {error}"
        ) from None
    unused = f"; {probe.vendor_misfit}: unused" if probe.vendor_misfit else ""
    origin = probe.zmq_origin(target / VENDOR)
    return f"GIMP's Python ({probe.summary()}) imports zmq {probe.zmq['version']} ({origin}){unused}"


def _checked_key(path: Path) -> Path:
    try:
        load_key_pair(path)
    except ValueError as error:
        raise InvSRError(f"--client-key: {error}") from None
    except OSError as error:
        raise InvSRError(f"--client-key: {error}; give the NAME.key_secret file made by `invsr keys`") from None
    return Path(path).resolve()


def _plugin_files() -> dict[str, Path]:
    """Each file of the installed plug-in (relative path) and its source in the installed packages."""
    files = {f"{PLUGIN_NAME}.py": PLUGIN_DIR / f"{PLUGIN_NAME}.py"}
    files |= {f"invsr_plugin/{module.name}": module for module in sorted((PLUGIN_DIR / "invsr_plugin").glob("*.py"))}
    files |= {str(page.relative_to(PLUGIN_DIR)): page for page in sorted((PLUGIN_DIR / "help").glob("*/*"))}
    wire = Path(invsr.wire.__file__).parent
    return files | {f"invsr_wire/{module.name}": module for module in sorted(wire.glob("*.py"))}


def copy_plugin(target: Path) -> None:
    """Replace the plug-in's own files in `target` (an `invsr-upscale` folder); keep what the user put there
    (the `vendor/` folder with pyzmq). The plug-in's settings and pyzmq are install()'s to provide."""
    if target.is_symlink():  # a developer's link to a source tree: replaced by a copy, the tree untouched
        target.unlink()
    for ours in (f"{PLUGIN_NAME}.py", "invsr_plugin", "invsr_wire", "help", "invsr_server"):  # invsr_server: before 0.2
        _remove(target / ours)
    for relative, source in _plugin_files().items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / relative)
    (target / f"{PLUGIN_NAME}.py").chmod(0o755)  # GIMP skips plug-ins that are not executable, silently


def _outdated_files(target: Path) -> list[str]:
    """The installed plug-in's files that differ from this invsr's (say, after an update)."""

    def differs(relative: str, source: Path) -> bool:
        try:
            return (target / relative).read_bytes() != source.read_bytes()
        except OSError:
            return True

    return [relative for relative, source in _plugin_files().items() if differs(relative, source)]


def uninstall(gimp_dir: Path | None) -> list[Path]:
    folders = [Path(gimp_dir)] if gimp_dir is not None else [d / "plug-ins" for d in gimp_config_dirs()]
    removed = []
    for folder in folders:
        target = folder / PLUGIN_NAME
        if (target / f"{PLUGIN_NAME}.py").exists():
            _remove(target)
            removed.append(target)
    return removed


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


# --- doctor --------------------------------------------------------------------------------------------


def doctor(gimp_dir: Path | None, gimp_python_command: str | None = None) -> bool:
    """Check each link and print it; True only when every link holds."""
    checks = [_gimp_found, _plugin_installed, _gimp_pythons, _workers]
    state = {"gimp_dir": gimp_dir, "gimp_python": gimp_python_command, "installed": []}
    ok = True
    for check in checks:
        for good, text in check(state):
            print(f"[{'ok' if good else 'FAIL':^4}] {text}")
            ok &= good
    return ok


def _gimp_found(state) -> list[tuple[bool, str]]:
    reached = _version_of_gimp_python(state["gimp_python"])
    if reached:
        python = state["gimp_python"] or os.environ.get(gimp_python.PYTHON_ENVIRONMENT_VARIABLE)
        return [(True, f"GIMP {reached} found: the Python `{python}` imports its libgimp")]
    for name in GIMP_BINARIES:
        path = shutil.which(name)
        if path:
            version = _run([path, "--version"])
            if version and " 3." in version:
                return [(True, f"GIMP 3 found: {path} ({version.strip().splitlines()[-1]})")]
    if shutil.which("flatpak") and _run(["flatpak", "info", "org.gimp.GIMP"]):
        return [(True, "GIMP found as the flatpak org.gimp.GIMP (its Python is inside the flatpak)")]
    bundled = gimp_python.bundled_pythons()
    if bundled:
        return [(True, f"GIMP 3 found: the installation of {bundled[0].parent.parent}")]
    return [(False, "GIMP 3 not found on PATH (Debian 13: sudo apt install gimp; elsewhere see gimp.org)")]


def _plugin_installed(state) -> list[tuple[bool, str]]:
    targets = [d / PLUGIN_NAME / f"{PLUGIN_NAME}.py" for d in plugin_dirs(state["gimp_dir"], state["gimp_python"])]
    found = [t for t in targets if t.is_file()]
    if not found:
        folders = ", ".join(str(t.parent.parent) for t in targets)
        return [(False, f"plug-in not installed in {folders}: run `invsr gimp install`")]
    state["installed"] = [t.parent for t in found]
    not_executable = [t for t in found if not os.access(t, os.X_OK)]
    if not_executable:
        return [(False, f"{not_executable[0]} is not executable, so GIMP ignores it: run `invsr gimp install` again")]
    outdated = [(t.parent, _outdated_files(t.parent)) for t in found]
    outdated = [(folder, files) for folder, files in outdated if files]
    if outdated:
        folder, files = outdated[0]
        differ = f"{', '.join(files)} differ"
        return [(False, f"the plug-in in {folder} is not this invsr's ({differ}): run `invsr gimp install` again")]
    try:
        state["settings"] = json.loads((found[0].parent / SETTINGS_FILE).read_text())
    except (OSError, ValueError) as error:
        return [(False, f"the plug-in's settings cannot be read ({error}): run `invsr gimp install` again")]
    return [(True, f"plug-in installed and up to date: {', '.join(str(t.parent) for t in found)}")]


def _gimp_pythons(state) -> list[tuple[bool, str]]:
    """For each installed plug-in, the Python that GIMP runs it with: gi for GIMP 3, and which pyzmq."""
    targets = state["installed"] or [d / PLUGIN_NAME for d in plugin_dirs(state["gimp_dir"], state["gimp_python"])]
    return [_gimp_python(target, state["gimp_python"]) for target in targets]


def _gimp_python(target: Path, command: str | None) -> tuple[bool, str]:
    python = gimp_python.find(target.parent, command)
    if python is None:
        return False, f"GIMP's Python for {target} was not found: name it with --gimp-python COMMAND"
    try:
        probe = gimp_python.probe(python, target / VENDOR)
    except InvSRError as error:
        return False, f"GIMP's Python: {error}"
    if "gimp_error" in probe.facts:
        return False, (
            f"GIMP's Python ({probe.summary()}) cannot import gi with Gimp 3.0 ({probe.facts['gimp_error']}): "
            "on Debian/Ubuntu sudo apt install python3-gi gir1.2-gimp-3.0"
        )
    if probe.zmq is None and probe.vendor_misfit:
        return False, (
            f"GIMP's Python ({probe.summary()}) has no zmq of its own, and {probe.vendor_misfit} (an installer "
            "asked another Python, say the python3 first on a terminal's PATH): run `invsr gimp install` again, "
            f"which puts a pyzmq for GIMP's Python into {target / VENDOR}"
        )
    if probe.zmq is None:
        return False, (
            f"GIMP's Python ({probe.summary()}) cannot import zmq ({probe.facts['zmq_error']}): run "
            f"`invsr gimp install` again, which puts a pyzmq for it into {target / VENDOR}"
        )
    zmq = f"zmq {probe.zmq['version']} ({probe.zmq_origin(target / VENDOR)})"
    unused = f"; {probe.vendor_misfit}, and leaves it unused" if probe.vendor_misfit else ""
    return True, f"GIMP's Python ({probe.summary()}) imports gi (Gimp 3.0) and {zmq}{unused}"


def _workers(state) -> list[tuple[bool, str]]:
    """The worker the plug-in starts (a GIMP outside flatpak), and the one a flatpak GIMP's plug-in finds."""
    flatpak = [target for target in state["installed"] if gimp_python.is_flatpak_folder(target.parent)]
    checks = [_flatpak_worker()] if flatpak else []
    if len(flatpak) < len(state["installed"]) or not state["installed"]:
        checks.insert(0, _local_worker(state))
    return checks


def _local_worker(state) -> tuple[bool, str]:
    from invsr.wire.client import connect

    command = (state.get("settings") or {}).get("start_command") or start_command()
    try:
        with connect(start_command=command) as client:
            return True, _round_trip(client)
    except InvSRError as error:
        moved = "unrunnable_command" in error.details  # the recorded Python is gone (a moved or deleted environment)
        again = "; run `invsr gimp install` again from the Python environment that has invsr" if moved else ""
        return False, f"the worker: {error}{again}"


def _flatpak_worker() -> tuple[bool, str]:
    """GIMP's sandbox cannot start a program of this computer: the user starts the worker, which writes its
    connection file where the sandbox sees it."""
    from invsr.wire.client import connect

    path = flatpak_connection_file()
    try:
        with connect(path) as client:
            return True, "for GIMP's flatpak: " + _round_trip(client)
    except InvSRError as error:
        return False, (
            f"GIMP's flatpak cannot start the worker from its sandbox, and none answers ({error}): start it on "
            f"this computer and leave it running: invsr serve --connection-file {path}"
        )


def _round_trip(client) -> str:
    result = client.upscale(bytes(8 * 8 * 3), 8, 8, 3, "u8", UpscaleRequest(scale=2))
    model = client.hello().model
    tiny = " (random tiny test weights: not real upscales)" if model.tiny_random else ""
    size = f"{result.width}x{result.height}"
    return f"the worker answers, its weights load and a tiny job round-trips ({size}) on {model.device}{tiny}"


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
