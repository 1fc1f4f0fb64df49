"""GIMP's own Python, which runs the plug-in: finding it, asking it what it is and which pyzmq it loads, and
putting a pyzmq that fits it into the plug-in's vendor/ folder (which the plug-in puts on its sys.path).

Which Python runs GIMP's plug-ins:
- a distribution's GIMP (Debian, Ubuntu, Fedora): the system's python3, the one the plug-in's first line
  (`#!/usr/bin/env python3`) finds on the desktop's PATH;
- the flatpak org.gimp.GIMP: the python3 inside the flatpak (`flatpak run --command=python3 org.gimp.GIMP`);
- Windows and macOS: the Python bundled in GIMP's installation folder.
`--gimp-python COMMAND` (or INVSR_GIMP_PYTHON) names it instead: any command that runs it, such as a GIMP in
/opt, a container or a chroot. That Python must see the plug-in's folder at the same path as this one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from invsr.wire.errors import InvSRError
from invsr.wire.flatpak import GIMP_APP_ID

from .wheel_tags import PythonTarget, pip_download_arguments, rank, supported_tags

PYTHON_ENVIRONMENT_VARIABLE = "INVSR_GIMP_PYTHON"
FLATPAK_PYTHON = ("flatpak", "run", "--command=python3", GIMP_APP_ID)
DISTRIBUTION = "invsr-gimp"  # our own, whose declared pyzmq range the vendored copy follows
PYZMQ_PARTS = ("zmq", "pyzmq.libs", "pyzmq-*.dist-info")  # what a pyzmq wheel unpacks (its libzmq beside)

# Run by GIMP's Python (any 3.x, standard library only): what it is, and what `import zmq` gives it with the
# plug-in's vendor folder (argv[1]) first on its path, as the plug-in's entry script sets it up.
PROBE = r"""
import json, os, platform, sys, sysconfig
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
try:
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
except (AttributeError, ValueError, OSError, IndexError):
    glibc = ""
found = {
    "executable": sys.executable, "implementation": sys.implementation.name, "version": list(sys.version_info[:3]),
    "platform": sysconfig.get_platform(), "machine": platform.machine(), "glibc": glibc,
    "macos": platform.mac_ver()[0], "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
}
try:
    import zmq
    found["zmq"] = {"version": getattr(zmq, "__version__", "(version unknown)"), "file": os.path.dirname(zmq.__file__)}
except Exception as error:
    found["zmq_error"] = "%s: %s" % (type(error).__name__, error)
try:
    import gi
    gi.require_version("Gimp", "3.0")
    from gi.repository import Gimp
    found["gimp"] = True
except Exception as error:
    found["gimp_error"] = "%s: %s" % (type(error).__name__, error)
print("INVSR-PROBE " + json.dumps(found))
"""


@dataclasses.dataclass(frozen=True)
class GimpPython:
    command: tuple[str, ...]  # runs that Python; PROBE and its arguments follow `-c`
    description: str  # for messages: which Python this is and why


@dataclasses.dataclass(frozen=True)
class Probe:
    """What GIMP's Python said of itself."""

    python: GimpPython
    facts: dict

    @property
    def target(self) -> PythonTarget:
        return PythonTarget.from_probe(self.facts)

    @property
    def zmq(self) -> dict | None:
        return self.facts.get("zmq")

    def zmq_origin(self, vendor: Path) -> str:
        """Where its zmq comes from, in words."""
        folder = Path(self.zmq["file"])
        own = "the plug-in's vendor folder" if vendor.resolve() in folder.resolve().parents else "GIMP's Python's own"
        return f"pyzmq from {folder}: {own}"

    def summary(self) -> str:
        version = ".".join(str(part) for part in self.facts["version"])
        return f"{self.facts['executable']}, Python {version}"


def find(plugin_folder: Path, override: str | None = None) -> GimpPython | None:
    """The Python that runs the plug-in installed in `plugin_folder`, or None when none is found."""
    override = override or os.environ.get(PYTHON_ENVIRONMENT_VARIABLE)
    if override:  # a path to the interpreter (which may hold spaces), or a command line
        command = [override] if Path(override).is_file() else shlex.split(override, posix=os.name != "nt")
        return GimpPython(tuple(command), f"the Python that `{override}` runs")
    if is_flatpak_folder(plugin_folder):
        return GimpPython(FLATPAK_PYTHON, "the flatpak's Python") if shutil.which("flatpak") else None
    if sys.platform in ("win32", "darwin"):
        bundled = bundled_pythons()
        return GimpPython((str(bundled[0]),), f"the Python bundled with GIMP ({bundled[0]})") if bundled else None
    python = shutil.which("python3", path=path_without_environments())
    return GimpPython((python,), f"the system's python3 ({python})") if python else None


def is_flatpak_folder(folder: Path) -> bool:
    flatpak_config = Path.home() / ".var" / "app" / GIMP_APP_ID
    return flatpak_config in Path(folder).absolute().parents


def path_without_environments() -> str:
    """PATH without the active virtual or conda environment, whose python3 GIMP does not run."""
    active = {os.environ.get("VIRTUAL_ENV"), os.environ.get("CONDA_PREFIX")}
    if sys.prefix != sys.base_prefix:
        active.add(sys.prefix)
    ignored = {str(Path(prefix) / folder) for prefix in active if prefix for folder in ("bin", "Scripts")}
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if entry.rstrip("/\\") not in ignored)


def bundled_pythons() -> list[Path]:
    """Python interpreters bundled with GIMP 3 installations on Windows and macOS, newest GIMP first.
    Windows: GIMP's bin folder holds python.exe (GIMP's interpreter file names pythonw.exe, the same
    interpreter without a console). macOS: inside GIMP.app."""
    if sys.platform == "win32":  # installed for this user, or for everyone
        local = os.environ.get("LOCALAPPDATA")
        roots = [Path(local) / "Programs"] if local else []
        roots += [Path(os.environ[name]) for name in ("ProgramFiles", "ProgramW6432") if os.environ.get(name)]
        found = [p for root in roots for p in sorted(root.glob("GIMP 3*/bin/python.exe"), reverse=True)]
    elif sys.platform == "darwin":
        apps = [Path("/Applications"), Path.home() / "Applications"]
        bundles = [app for folder in apps for app in sorted(folder.glob("GIMP*.app"), reverse=True)]
        patterns = ("Contents/MacOS/python3*", "Contents/Resources/bin/python3*")
        found = [p for app in bundles for pattern in patterns for p in sorted(app.glob(pattern))]
    else:
        found = []
    return [path for path in found if path.is_file() and not path.name.endswith("-config")]


def probe(python: GimpPython, vendor: Path) -> Probe:
    """Run PROBE in GIMP's Python, with the plug-in's vendor folder first on its path."""
    command = [*python.command, "-c", PROBE, str(vendor)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InvSRError(f"cannot run {python.description}: {error}") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("INVSR-PROBE ")]
    if done.returncode != 0 or not lines:
        said = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise InvSRError(f"{python.description} did not answer (exit status {done.returncode}): {' '.join(said)}")
    return Probe(python, json.loads(lines[-1][len("INVSR-PROBE ") :]))


def pyzmq_requirement() -> str:
    """pyzmq with the version range we declare for ourselves (setup.cfg), the range we test."""
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        declared = []
    found = [line.split(";")[0].strip() for line in declared if line.lower().startswith("pyzmq")]
    return found[0] if found else "pyzmq"


def pip_download_command(target: PythonTarget, folder: str = "DIR") -> list[str]:
    """The `pip download` that fetches a pyzmq wheel for `target` (shown to users without internet)."""
    return ["pip", "download", *pip_download_arguments(target), "-d", folder, pyzmq_requirement()]


def download_pyzmq(target: PythonTarget, folder: Path) -> Path:
    """A pyzmq wheel for `target`, fetched by pip (run by this Python) into `folder`."""
    command = [sys.executable, "-m", *pip_download_command(target, str(folder))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        said = " ".join(line for line in done.stderr.strip().splitlines()[-3:])
        raise InvSRError(
            f"pip could not download pyzmq for GIMP's Python ({target.describe()}): {said}. Without internet, "
            f"download it elsewhere with `{shlex.join(pip_download_command(target))}` and give the wheel to "
            "`invsr gimp install --offline-wheel FILE`"
        )
    return wheels[0]


def check_fits(wheel: Path, target: PythonTarget) -> None:
    """Refuse a wheel that GIMP's Python cannot load, saying which one it needs."""
    if not wheel.is_file():
        raise InvSRError(f"--offline-wheel: {wheel} is not a file")
    if not wheel.name.startswith("pyzmq-"):
        raise InvSRError(f"--offline-wheel: {wheel.name} is not a pyzmq wheel")
    if rank(wheel.name, target) is None:
        wanted = str(supported_tags(target)[0]) if supported_tags(target) else "a CPython build"
        raise InvSRError(
            f"--offline-wheel: {wheel.name} does not fit GIMP's Python ({target.describe()}), which needs a wheel "
            f"tagged like {wanted}; download one with `{shlex.join(pip_download_command(target))}`"
        )


def unpack(wheel: Path, vendor: Path) -> None:
    """Replace the vendored pyzmq (and only it) with the wheel's contents."""
    vendor.mkdir(parents=True, exist_ok=True)
    for pattern in PYZMQ_PARTS:
        for old in vendor.glob(pattern):
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(vendor)  # a wheel is a zip of its files as they lie in site-packages


def vendor_pyzmq(python: GimpPython, vendor: Path, offline_wheel: Path | None = None) -> Probe:
    """Make GIMP's Python load pyzmq: nothing when it already does (its own, or one vendored before),
    else the wheel given or downloaded for it, unpacked into `vendor`. Returns what it loads afterwards."""
    before = probe(python, vendor)
    if before.zmq is not None:
        return before
    target = before.target
    with tempfile.TemporaryDirectory(prefix="invsr-pyzmq-") as folder:
        if offline_wheel is not None:
            wheel = Path(offline_wheel)
            check_fits(wheel, target)
        else:
            wheel = download_pyzmq(target, Path(folder))
        unpack(wheel, vendor)
    after = probe(python, vendor)
    if after.zmq is None:
        error = after.facts["zmq_error"]
        raise InvSRError(f"GIMP's Python still cannot import zmq after {wheel.name} was put in {vendor}: {error}")
    return after
