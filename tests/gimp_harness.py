"""GIMP 3 for the plug-in's end-to-end tests: this machine's own gimp-console-3.0 (Debian 13 has it), or
a Debian trixie root file system built once by tests/gimp/build-root.sh and reused after.

In the root, GIMP runs under chroot and shares this machine's network, so the plug-in reaches a worker
started here on 127.0.0.1. The source tree, this Python and its virtual environment are bind-mounted
read-only at their own paths, so the plug-in loads from the source tree and can start a worker with
this very interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "invsr_gimp"  # the folder holding the plug-in's folder, as GIMP's plug-in path lists it
DEFAULT_ROOT = Path(os.environ.get("INVSR_GIMP_ROOT", "/var/cache/invsr-gimp/trixie"))
GIMP_CONSOLE = "gimp-console-3.0"


class GimpRunner:
    def __init__(self, root: Path | None):
        self.root = root
        self.mounted: list[Path] = []

    @classmethod
    def find_or_build(cls) -> "GimpRunner":
        if shutil.which(GIMP_CONSOLE):
            return cls(None)
        runner = cls(DEFAULT_ROOT)
        if not (runner.has_screen and (DEFAULT_ROOT / "usr" / "bin" / GIMP_CONSOLE).exists()):
            if os.geteuid() == 0:  # builds the root, or adds what an older one lacks
                subprocess.run(["bash", str(REPO / "tests" / "gimp" / "build-root.sh"), str(DEFAULT_ROOT)], check=True)
            elif not (DEFAULT_ROOT / "usr" / "bin" / GIMP_CONSOLE).exists():
                pytest.skip(f"no {GIMP_CONSOLE} here, and building a Debian trixie root with it needs root")
        return runner

    @property
    def has_screen(self) -> bool:
        """Whether a virtual screen (xvfb-run) and xdotool, to press the dialog's keys, are there."""
        tools = ("xvfb-run", "xdotool")
        if self.root is None:
            return all(shutil.which(tool) for tool in tools)
        return all((self.root / "usr" / "bin" / tool).exists() for tool in tools)

    def __enter__(self) -> "GimpRunner":
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

    def _bind(self, path: Path) -> None:
        target = self.root / path.relative_to("/")
        if target.is_mount():
            return  # left from an earlier run, still valid
        self._mount(["--bind", str(path)], target)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)

    def _mount(self, options: list[str], target: Path) -> None:
        if target.is_mount():
            return
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *options, str(target)], check=True)
        self.mounted.append(target)

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

    def run_batch(self, script: Path, home: Path, env: dict, plugin_path: Path | None = PLUGINS, timeout: float = 600, screen: bool = False) -> subprocess.CompletedProcess:
        """Run `script` in GIMP's Python batch interpreter with a throw-away configuration in `home`;
        plug-ins load from `plugin_path` (the source tree) besides GIMP's own folders; with `screen`, on
        a virtual X screen, where plug-ins can open their dialogs."""
        config = home / "gimp-config"
        config.mkdir(parents=True, exist_ok=True)
        extra = f":{self.inside(plugin_path)}" if plugin_path is not None else ""
        (config / "gimprc").write_text(f'(plug-in-path "${{gimp_dir}}/plug-ins:${{gimp_plug_in_dir}}/plug-ins{extra}")\n')
        batch = f"exec(open({self.inside(script)!r}).read())"
        command = [GIMP_CONSOLE, "-i", "-n", "-d", "-f", "--batch-interpreter=python-fu-eval", "-b", batch, "--quit"]
        command = ["xvfb-run", "-a", *command] if screen else command
        return self.run(command, dict(env, HOME=self.inside(home), GIMP3_DIRECTORY=self.inside(config)), timeout)

    def run(self, command: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run a command where GIMP lives (in the root), with only the given environment and a plain PATH."""
        variables = {"PYTHONUNBUFFERED": "1", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **env}
        if self.root is not None:
            command = ["chroot", str(self.root), "env", "-i", *[f"{k}={v}" for k, v in variables.items()], *command]
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=variables)
