"""GIMP 3 for the plug-in's end-to-end tests, in each version the tests cover: GIMP 3.0 (Debian 13, trixie)
and GIMP 3.2 (Debian 14, forky). This machine's own gimp-console-3.X where it has one, else a Debian root
file system built once by tests/gimp/build-root.sh and reused after, at $INVSR_GIMP_ROOTS/SUITE (default
/var/cache/invsr-gimp/trixie and /var/cache/invsr-gimp/forky).

In a root, GIMP runs under chroot and shares this machine's network, so the plug-in reaches a worker
started here on 127.0.0.1. The source tree, this Python and its virtual environment are bind-mounted
read-only at their own paths, so the plug-in loads from PLUGINS (installed inside the source tree's build/
by the real installer) and can start a worker with this very interpreter; `share` mounts more folders the
same way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def install_plugin_files() -> Path:
    """The plug-in as `invsr gimp install` lays it out (its files and the wire package beside them), in a
    plug-in folder of this test run's own: inside the source tree, which GIMP's root sees, under build/."""
    from invsr_gimp.install import copy_plugin

    (REPO / "build").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="test-gimp-plug-ins-", dir=REPO / "build"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy_plugin(folder / "invsr-upscale")
    return folder


PLUGINS = install_plugin_files()  # the folder holding the plug-in's folder, as GIMP's plug-in path lists it
ROOTS = Path(os.environ.get("INVSR_GIMP_ROOTS", "/var/cache/invsr-gimp"))
SUITES = {"3.0": "trixie", "3.2": "forky"}  # the Debian release that ships each GIMP version
VERSIONS = tuple(SUITES)


class GimpRunner:
    def __init__(self, version: str, root: Path | None):
        self.version = version
        self.root = root
        self.console = f"gimp-console-{version}"
        self.mounted: list[Path] = []

    @classmethod
    def find_or_build(cls, version: str) -> GimpRunner:
        console = f"gimp-console-{version}"
        if shutil.which(console):
            return cls(version, None)
        root = ROOTS / SUITES[version]
        runner = cls(version, root)
        if not (runner.has_screen and (root / "usr" / "bin" / console).exists()):
            if os.geteuid() == 0:  # builds the root, or adds what an older one lacks
                build = REPO / "tests" / "gimp" / "build-root.sh"
                subprocess.run(["bash", str(build), SUITES[version], str(root)], check=True)
            elif not (root / "usr" / "bin" / console).exists():
                pytest.skip(f"no {console} here, and building a Debian {SUITES[version]} root with it needs root")
        return runner

    @property
    def has_screen(self) -> bool:
        """Whether a virtual screen (xvfb-run) and xdotool, to press the dialog's keys, are there."""
        tools = ("xvfb-run", "xdotool")
        if self.root is None:
            return all(shutil.which(tool) for tool in tools)
        return all((self.root / "usr" / "bin" / tool).exists() for tool in tools)

    def __enter__(self) -> GimpRunner:
        if self.root is not None:
            paths = {REPO, Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
            for path in sorted(paths):
                if not any(other in path.parents for other in paths):  # covered by a mount above it
                    self._bind(path)
            self._mount(["-t", "proc", "proc"], self.root / "proc")
        return self

    def __exit__(self, *exc) -> None:
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        self.mounted.clear()

    def share(self, path: Path, writable: bool = False) -> Path:
        """Make a folder of this machine visible where GIMP runs, at the same path. Returns it."""
        if self.root is not None:
            self._bind(Path(path).resolve(), writable)
        return Path(path)

    def _bind(self, path: Path, writable: bool = False) -> None:
        """Bind `path` at its own place in the root, over what may be there: a run killed before it could
        unmount leaves its mounts, and another run may be using the same place meanwhile (each unmounts
        only its own). A mount left there of a folder since deleted (and made again) would make the mount
        fail: it goes first."""
        target = self.root / path.relative_to("/")
        if _is_mount_point(target) and not _same_folder(target, path):
            subprocess.run(["umount", "-l", str(target)], check=True)
        self._mount(["--bind", str(path)], target)
        if not writable:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)

    def _mount(self, options: list[str], target: Path) -> None:
        if target.is_mount():  # a file system of its own (proc), not a bind mount: those stack
            return
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *options, str(target)], check=True)
        self.mounted.append(target)

    @contextlib.contextmanager
    def without_zmq(self):
        """This GIMP with python3-zmq removed from its Python: the root seen through an overlay whose upper
        layer (a few MB, thrown away after) holds the removal, so the root itself stays as it is."""
        if self.root is None:
            pytest.skip("removing pyzmq from this machine's own GIMP is not for a test")
        layers = Path(tempfile.mkdtemp(prefix=f"invsr-gimp-{SUITES[self.version]}-no-zmq-", dir=ROOTS))
        merged = layers / "root"
        for name in ("upper", "work", "root"):
            (layers / name).mkdir()
        variant = GimpRunner(self.version, merged)
        try:
            options = f"lowerdir={self.root},upperdir={layers / 'upper'},workdir={layers / 'work'}"
            variant._mount(["-t", "overlay", "overlay", "-o", options], merged)
            subprocess.run(["chroot", str(merged), "dpkg", "--purge", "python3-zmq"], check=True, capture_output=True)
            with variant:
                yield variant
        finally:
            variant.__exit__()
            shutil.rmtree(layers, ignore_errors=True)

    def python_command(self) -> str | None:
        """The command that runs GIMP's Python from this machine (`invsr gimp install --gimp-python`);
        None where GIMP is this machine's own and the installer finds its Python by itself."""
        return None if self.root is None else f"chroot {self.root} /usr/bin/python3"

    def workspace(self) -> Path:
        """A folder that GIMP (inside the root) and this process both see."""
        base = self.root / "tmp" if self.root is not None else None
        return Path(tempfile.mkdtemp(prefix="invsr-gimp-test-", dir=base))

    def inside(self, path: Path) -> str:
        """`path` as GIMP sees it."""
        path = Path(path).resolve()
        if self.root is None:
            return str(path)
        return "/" + str(path.relative_to(self.root)) if self.root in path.parents else str(path)

    def run_batch(
        self,
        script: Path,
        home: Path,
        env: dict,
        plugin_path: Path | None = PLUGINS,
        timeout: float = 600,
        screen: bool = False,
        config: Path | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `script` in GIMP's Python batch interpreter with a throw-away configuration in `home`
        (or `config`); plug-ins load from `plugin_path` (the source tree) besides GIMP's own folders; with
        `screen`, on a virtual X screen, where plug-ins can open their dialogs."""
        config = self._configure(config or home / "gimp-config", plugin_path)
        command = [self.console, "-i", "-n", "-d", "-f", *self._batch(script), "--quit"]
        command = [*self._screen(), *command] if screen else command
        return self.run(command, dict(env, HOME=self.inside(home), GIMP3_DIRECTORY=self.inside(config)), timeout)

    def run_gui(
        self,
        script: Path,
        home: Path,
        env: dict,
        plugin_path: Path | None = PLUGINS,
        timeout: float = 180,
        preferences: str = "",
    ) -> subprocess.CompletedProcess:
        """Run `script` as run_batch does, in GIMP with its user interface (gimp-3.X, not gimp-console) on a
        virtual screen: what only the interface does (help, GIMP's message dialogs) happens there.
        `preferences`: more gimprc lines, as GIMP's Preferences dialog writes them."""
        no_network = "(check-updates no)\n"  # GIMP would look for a newer version online
        config = self._configure(home / "gimp-config", plugin_path, no_network + preferences)
        command = [*self._screen(), f"gimp-{self.version}", "-n", "-d", "-f", "-s", *self._batch(script), "--quit"]
        return self.run(command, dict(env, HOME=self.inside(home), GIMP3_DIRECTORY=self.inside(config)), timeout)

    def _configure(self, config: Path, plugin_path: Path | None, preferences: str = "") -> Path:
        """A throw-away GIMP configuration folder whose gimprc adds `plugin_path` to the plug-in folders."""
        config.mkdir(parents=True, exist_ok=True)
        extra = f":{self.inside(plugin_path)}" if plugin_path is not None else ""
        search = f"${{gimp_dir}}/plug-ins:${{gimp_plug_in_dir}}/plug-ins{extra}"
        (config / "gimprc").write_text(f'(plug-in-path "{search}")\n{preferences}')
        return config

    def _batch(self, script: Path) -> list[str]:
        return ["--batch-interpreter=python-fu-eval", "-b", f"exec(open({self.inside(script)!r}).read())"]

    @staticmethod
    def _screen() -> list[str]:
        display = ["-s", "-screen 0 1280x800x24"]  # xvfb-run's default, 640 x 480 in 8 bits, is too small to see
        return ["xvfb-run", "-a", *display]

    def run(self, command: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run a command where GIMP lives (in the root), with only the given environment and a plain PATH."""
        variables = {"PYTHONUNBUFFERED": "1", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **env}
        if self.root is not None:
            command = ["chroot", str(self.root), "env", "-i", *[f"{k}={v}" for k, v in variables.items()], *command]
            return run_whole(command, timeout)
        return run_whole(command, timeout, env=variables)


def run_whole(command: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """subprocess.run's capture and timeout, but a command that runs past `timeout` is killed with everything it
    started: xvfb-run's X server and GIMP (with a dialog open, say) would otherwise outlive it, stuck."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _is_mount_point(path: Path) -> bool:
    """Whether something is mounted at `path`, by the kernel's list: Path.is_mount() compares devices,
    and misses a bind mount from the same file system (all of ours)."""
    with open("/proc/self/mounts") as mounts:
        points = {line.split()[1].encode().decode("unicode_escape") for line in mounts}  # spaces come as \040
    return str(path) in points


def _same_folder(a: Path, b: Path) -> bool:
    """Whether two paths are the same folder (a bind mount shows its source's device and inode)."""
    try:
        first, second = a.stat(), b.stat()
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
