"""GIMP's own Python, which runs the plug-in: finding it, asking it what it is and which pyzmq it loads, and
putting a pyzmq that fits it into the plug-in's vendor/ folder (which the plug-in puts on its sys.path).

Which Python runs GIMP's plug-ins:
- the program that an interpreter file of GIMP's maps `python3` to (`python3=/usr/bin/python3` in a `*.interp`
  file of GIMP's `interpreters` folders): GIMP runs the plug-in's first line (`#!/usr/bin/env python3`) with it;
- else, a distribution's GIMP (Debian, Ubuntu, Fedora): the system's python3, the one the plug-in's first line
  finds on the desktop's PATH: the first python3 on PATH whose gi imports GIMP 3 (a pyenv, conda or venv
  python3 first on a terminal's PATH lacks it, and is not the desktop's);
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

from invsr.wire import vendored
from invsr.wire.errors import InvSRError
from invsr.wire.flatpak import GIMP_APP_ID

from .wheel_tags import PythonTarget, pip_download_arguments, rank, supported_tags

PYTHON_ENVIRONMENT_VARIABLE = "INVSR_GIMP_PYTHON"
FLATPAK_PYTHON = ("flatpak", "run", "--command=python3", GIMP_APP_ID)
DISTRIBUTION = "invsr-gimp"  # our own, whose declared pyzmq range the vendored copy follows
PYZMQ_PARTS = ("zmq", "pyzmq.libs", "pyzmq-*.dist-info", vendored.RECORD)  # a wheel's files (libzmq beside)
GIMP_NAMES = ("gimp-3.2", "gimp-console-3.2", "gimp-3.0", "gimp-console-3.0", "gimp", "gimp-console")

# Run by GIMP's Python (any 3.x, standard library only): what it is, and what `import zmq` gives it with the
# plug-in's vendor folder (argv[1]) on its path as the plug-in's entry script puts it there (invsr_wire.vendored,
# from the plug-in's folder: only when it has no zmq of its own, and only a copy built for it).
PROBE = r"""
import json, os, platform, sys, sysconfig
found = {}
if len(sys.argv) > 1:
    sys.path.insert(0, os.path.dirname(sys.argv[1]))
    try:
        from invsr_wire import vendored
        found["vendor"] = vendored.put_on_path(sys.argv[1])
        found["vendor_misfit"] = vendored.misfit(sys.argv[1])  # also when unused: zmq of its own comes first
    except ImportError:  # no plug-in there (yet)
        sys.path.insert(0, sys.argv[1])
try:
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
except (AttributeError, ValueError, OSError, IndexError):
    glibc = ""
found.update({
    "executable": sys.executable, "implementation": sys.implementation.name, "version": list(sys.version_info[:3]),
    "platform": sysconfig.get_platform(), "machine": platform.machine(), "glibc": glibc,
    "macos": platform.mac_ver()[0], "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
})
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
    found["gimp_version"] = [Gimp.MAJOR_VERSION, Gimp.MINOR_VERSION, Gimp.MICRO_VERSION]
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

    @property
    def gimp_version(self) -> str | None:
        """The version of the libgimp this Python imports ("3.2.6"), when it imports one."""
        version = self.facts.get("gimp_version")
        return ".".join(str(part) for part in version) if version else None

    @property
    def vendor_misfit(self) -> str | None:
        """Why the plug-in's vendored pyzmq is not for this Python, when it is not."""
        return self.facts.get("vendor_misfit")

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
    mapped = interpreter_program(interpreter_files(Path(plugin_folder).parent))
    if mapped is not None:
        program, file = mapped
        return GimpPython((program,), f"the Python that GIMP's interpreter file {file} names ({program})")
    return python3_with_gimp()


def interpreter_files(config_dir: Path) -> list[Path]:
    """GIMP's interpreter files (`*.interp`), in the order GIMP reads them: the user's (in GIMP's configuration
    folder), then those in the lib folder of each GIMP 3 installed (`PREFIX/lib/.../gimp/3.0/interpreters`;
    GIMP 3.2 keeps the 3.0 folder)."""
    folders = [Path(config_dir) / "interpreters"]
    prefixes = [Path(found).resolve().parent.parent for name in GIMP_NAMES if (found := shutil.which(name))]
    for prefix in dict.fromkeys([*prefixes, Path("/usr"), Path("/usr/local")]):
        for pattern in ("lib/gimp/3.0/interpreters", "lib/*/gimp/3.0/interpreters", "lib64/gimp/3.0/interpreters"):
            folders += sorted(prefix.glob(pattern))
    return [file for folder in folders if folder.is_dir() for file in sorted(folder.glob("*.interp"))]


def interpreter_program(files: list[Path], name: str = "python3") -> tuple[str, Path] | None:
    """The program GIMP runs for `name`, the interpreter the plug-in's first line asks for (`#!/usr/bin/env
    python3`), and the file that says so: the first `name=PROGRAM` line whose program is executable (GIMP
    ignores the others), as GIMP's interpreter database reads them."""
    for file in files:
        try:
            lines = file.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            key, equals, program = line.partition("=")
            if equals and key == name and (key[:1].isalnum() or key[:1] == "/") and os.access(program, os.X_OK):
                return program, file
    return None


def python3_with_gimp() -> GimpPython | None:
    """The python3 that `/usr/bin/env python3` finds on GIMP's PATH: the first on this PATH (without the active
    virtual or conda environment) whose gi imports GIMP 3. A python3 before it that lacks gi (pyenv's, a
    venv's or conda's put first on PATH in a terminal) cannot run GIMP's plug-ins, so GIMP, started from the
    desktop, does not run them with it."""
    folders = [*path_without_environments().split(os.pathsep), "/usr/bin"]
    candidates = [found for folder in folders if folder and (found := shutil.which("python3", path=folder))]
    candidates = list(dict.fromkeys(candidates))
    for index, python in enumerate(candidates):
        if _imports_gimp(python):
            skipped = f"; {', '.join(candidates[:index])} before it on PATH cannot import GIMP's gi" if index else ""
            return GimpPython((python,), f"the first python3 on PATH that imports GIMP 3 ({python}{skipped})")
    return GimpPython((candidates[0],), f"the system's python3 ({candidates[0]})") if candidates else None


def _imports_gimp(python: str) -> bool:
    check = "import gi; gi.require_version('Gimp', '3.0'); from gi.repository import Gimp"
    try:
        return subprocess.run([python, "-c", check], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


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
        record = {"wheel": wheel.name, "python": {k: before.facts[k] for k in ("executable", "version", "platform")}}
        (vendor / vendored.RECORD).write_text(json.dumps(record, indent=2))
    after = probe(python, vendor)
    if after.zmq is None:
        error = after.facts["zmq_error"]
        raise InvSRError(f"GIMP's Python still cannot import zmq after {wheel.name} was put in {vendor}: {error}")
    return after
