"""`invsr gimp install | uninstall | doctor`: put the plug-in where GIMP 3 looks, and check every link of
the chain from GIMP to the worker.

The installed plug-in is a folder `invsr-upscale/` in GIMP's user plug-in folder: the entry file, its
own modules, a copy of the wire package invsr_wire (standard library and pyzmq only), and `invsr-settings.json`,
which records how to start the worker with this very Python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import invsr_wire
from invsr import __version__
from invsr_gimp import PLUGIN_DIR, PLUGIN_NAME
from invsr_wire.errors import InvSRError
from invsr_wire.keys import load_key_pair

SETTINGS_FILE = "invsr-settings.json"
GIMP_PYTHON_CHECK = "import sys, gi, zmq; gi.require_version('Gimp', '3.0'); from gi.repository import Gimp; print(sys.executable, zmq.__version__)"


def gimp_config_dirs() -> list[Path]:
    """GIMP 3 user configuration folders that exist here (3.0, 3.2, ..., flatpak), newest first."""
    if os.environ.get("GIMP3_DIRECTORY"):
        return [Path(os.environ["GIMP3_DIRECTORY"])]
    home = Path.home()
    bases = [_config_home() / "GIMP", home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP"]
    if sys.platform == "darwin":
        bases.insert(0, home / "Library" / "Application Support" / "GIMP")
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        bases.insert(0, Path(os.environ["APPDATA"]) / "GIMP")
    found = [d for base in bases if base.is_dir() for d in base.glob("3.*") if d.is_dir()]
    return sorted(found, key=lambda d: d.name, reverse=True)


def plugin_dirs(gimp_dir: Path | None) -> list[Path]:
    """Where to install: --gimp-dir, else the plug-ins folder of every GIMP 3 configuration found, else
    GIMP 3.0's default (created)."""
    if gimp_dir is not None:
        return [Path(gimp_dir)]
    found = [d / "plug-ins" for d in gimp_config_dirs()]
    default = _config_home() / "GIMP" / "3.0" / "plug-ins"
    return found or [default]


def _config_home() -> Path:
    """Where GIMP keeps its configuration on Linux: $XDG_CONFIG_HOME, else ~/.config (GLib's rule)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def start_command(weights: Path | None = None, device: str = "auto", dtype: str = "auto") -> list[str]:
    command = [sys.executable, "-m", "invsr_cli", "serve"]
    if weights is not None:
        command += ["--weights", str(Path(weights).resolve())]
    for flag, value in (("--device", device), ("--dtype", dtype)):
        if value != "auto":
            command += [flag, value]
    return command


def install(gimp_dir: Path | None, weights: Path | None = None, device: str = "auto", dtype: str = "auto", client_key: Path | None = None) -> list[Path]:
    """`client_key`: this computer's .key_secret, for a remote worker that requires CurveZMQ."""
    if not (PLUGIN_DIR / f"{PLUGIN_NAME}.py").is_file():
        raise InvSRError(f"the plug-in's files are missing from {PLUGIN_DIR}: reinstall invsr-gimp with pip")
    settings = {"start_command": start_command(weights, device, dtype), "python": sys.executable, "version": __version__}
    if client_key is not None:
        settings["client_key"] = str(_checked_key(client_key))
    installed = []
    for folder in plugin_dirs(gimp_dir):
        target = folder / PLUGIN_NAME
        _copy_plugin(target)
        (target / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
        installed.append(target)
    return installed


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
    wire = Path(invsr_wire.__file__).parent
    return files | {f"invsr_wire/{module.name}": module for module in sorted(wire.glob("*.py"))}


def _copy_plugin(target: Path) -> None:
    """Replace the plug-in's own files; keep what the user put there (the `vendor/` folder with pyzmq)."""
    if target.is_symlink():  # a developer's link to a source tree: replaced by a copy, the tree untouched
        target.unlink()
    for ours in (f"{PLUGIN_NAME}.py", "invsr_plugin", "invsr_wire", "invsr_server"):  # invsr_server: before 0.2
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


def doctor(gimp_dir: Path | None) -> bool:
    """Check each link and print it; True only when every link holds."""
    checks = [_gimp_found, _plugin_installed, _gimp_python, _worker_round_trip]
    state = {"gimp_dir": gimp_dir}
    ok = True
    for check in checks:
        good, text = check(state)
        print(f"[{'ok' if good else 'FAIL':^4}] {text}")
        ok &= good
    return ok


def _gimp_found(state) -> tuple[bool, str]:
    for name in ("gimp-console-3.0", "gimp-3.0", "gimp-console", "gimp"):
        path = shutil.which(name)
        if path:
            version = _run([path, "--version"])
            if version and " 3." in version:
                return True, f"GIMP 3 found: {path} ({version.strip().splitlines()[-1]})"
    if shutil.which("flatpak") and _run(["flatpak", "info", "org.gimp.GIMP"]):
        state["flatpak"] = True
        return True, "GIMP found as the flatpak org.gimp.GIMP (its Python is inside the flatpak)"
    return False, "GIMP 3 not found on PATH (Debian 13: sudo apt install gimp; elsewhere see gimp.org)"


def _plugin_installed(state) -> tuple[bool, str]:
    targets = [d / PLUGIN_NAME / f"{PLUGIN_NAME}.py" for d in plugin_dirs(state["gimp_dir"])]
    found = [t for t in targets if t.is_file()]
    if not found:
        return False, f"plug-in not installed in {', '.join(str(t.parent.parent) for t in targets)}: run `invsr gimp install`"
    not_executable = [t for t in found if not os.access(t, os.X_OK)]
    if not_executable:
        return False, f"{not_executable[0]} is not executable, so GIMP ignores it: run `invsr gimp install` again"
    outdated = [(t.parent, _outdated_files(t.parent)) for t in found]
    outdated = [(folder, files) for folder, files in outdated if files]
    if outdated:
        folder, files = outdated[0]
        return False, f"the plug-in in {folder} is not this invsr's ({', '.join(files)} differ): run `invsr gimp install` again"
    try:
        state["settings"] = json.loads((found[0].parent / SETTINGS_FILE).read_text())
    except (OSError, ValueError) as error:
        return False, f"the plug-in's settings cannot be read ({error}): run `invsr gimp install` again"
    return True, f"plug-in installed and up to date: {', '.join(str(t.parent) for t in found)}"


def _gimp_python(state) -> tuple[bool, str]:
    if state.get("flatpak"):
        command = ["flatpak", "run", "--command=python3", "org.gimp.GIMP", "-c", GIMP_PYTHON_CHECK]
    else:  # what the plug-in's first line runs when GIMP is started from the desktop, not from this shell
        command = ["/usr/bin/env", f"PATH={_path_without_environments()}", "python3", "-c", GIMP_PYTHON_CHECK]
    output = _run(command)
    if output:
        python, version = output.split()
        return True, f"GIMP's Python ({python}) imports gi (Gimp 3.0) and zmq {version}"
    return False, "GIMP's Python cannot import gi with Gimp 3.0, or zmq: on Debian/Ubuntu sudo apt install python3-gi gir1.2-gimp-3.0 python3-zmq; see the README for flatpak, Windows and macOS"


def _path_without_environments() -> str:
    """PATH without the active virtual or conda environment, whose python3 GIMP does not run."""
    active = {os.environ.get("VIRTUAL_ENV"), os.environ.get("CONDA_PREFIX")}
    if sys.prefix != sys.base_prefix:
        active.add(sys.prefix)
    ignored = {str(Path(prefix) / folder) for prefix in active if prefix for folder in ("bin", "Scripts")}
    return os.pathsep.join(entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry.rstrip("/\\") not in ignored)


def _worker_round_trip(state) -> tuple[bool, str]:
    from invsr_wire.client import connect

    command = (state.get("settings") or {}).get("start_command") or start_command()
    try:
        with connect(start_command=command) as client:
            header, _ = client.upscale(bytes(8 * 8 * 3), 8, 8, 3, "u8", {"scale": 2})
            model = client.hello()["model"]
    except InvSRError as error:
        moved = "unrunnable_command" in error.details  # the recorded Python is gone (a moved or deleted environment)
        return False, f"the worker: {error}" + ("; run `invsr gimp install` again from the Python environment that has invsr" if moved else "")
    tiny = " (random tiny test weights: not real upscales)" if model.get("weights", {}).get("tiny_random") else ""
    return True, f"the worker answers, its weights load and a tiny job round-trips ({header['width']}x{header['height']}) on {model.get('device')}{tiny}"


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
