"""Which binary wheels a Python can load, from a description of that Python (not this one): the tags it
accepts, best first, and whether a wheel's file name carries one of them.

GIMP's Python is not the Python running `invsr`: it may be another version, another ABI or another
operating system's (a Windows GIMP's bundled Python is described by the same fields). The description
comes from that Python itself (gimp_python.PROBE). The rules are packaging's (pip's own): `cpython_tags`
orders interpreters and ABIs (PEP 425, the stable ABI, free-threaded builds), `mac_platforms` macOS's
versions and universal2, `parse_wheel_filename` reads a wheel's name. packaging's Linux tags read the glibc
of the Python running them, not the target's, so the manylinux tags (PEP 600) are listed here. Limited to
CPython, which GIMP embeds. (The installer runs in the user's Python, where packaging is; never in GIMP.)
"""

from __future__ import annotations

import dataclasses

from packaging.tags import Tag, cpython_tags, mac_platforms
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

OLDEST_MANYLINUX_GLIBC = 5  # manylinux1 is glibc 2.5
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}  # their glibc 2.x


@dataclasses.dataclass(frozen=True)
class PythonTarget:
    """A Python as wheels see it. `platform` is its sysconfig.get_platform() ("linux-x86_64",
    "win-amd64", "macosx-11.0-arm64"); `machine` its platform.machine(); `glibc` and `macos` the versions
    of the system it runs on, when it is Linux with glibc or macOS."""

    implementation: str  # sys.implementation.name
    version: tuple[int, int]
    platform: str
    machine: str = ""
    glibc: tuple[int, int] | None = None
    macos: tuple[int, int] | None = None
    free_threaded: bool = False  # a 3.13t-style build: loads only cpXYt wheels, never abi3

    @classmethod
    def from_probe(cls, probe: dict) -> PythonTarget:
        """From what gimp_python.PROBE printed."""
        return cls(
            implementation=probe["implementation"],
            version=tuple(probe["version"][:2]),
            platform=probe["platform"],
            machine=probe.get("machine", ""),
            glibc=_version(probe.get("glibc")),
            macos=_version(probe.get("macos")),
            free_threaded=bool(probe.get("free_threaded")),
        )

    @property
    def interpreter(self) -> str:
        return f"cp{self.version[0]}{self.version[1]}"

    def describe(self) -> str:
        build = "t (free-threaded)" if self.free_threaded else ""
        return f"{self.implementation} {self.version[0]}.{self.version[1]}{build} on {self.platform}"


def _version(text) -> tuple[int, int] | None:
    """'2.41' or '14.2.1' -> (2, 41) or (14, 2); None for empty."""
    if not text:
        return None
    parts = [int(part) for part in str(text).split(".")[:2] if part.isdigit()]
    return (parts[0], parts[1] if len(parts) > 1 else 0) if parts else None


def abi_tags(target: PythonTarget) -> list[str]:
    """ABIs, best first: the version's own, then the stable ABI (not for free-threaded builds)."""
    own = target.interpreter + ("t" if target.free_threaded else "")
    return [own] if target.free_threaded else [own, "abi3"]


def platform_tags(target: PythonTarget) -> list[str]:
    """Platforms, best (most specific, newest) first."""
    system, _, rest = target.platform.partition("-")
    if system == "win32" or target.platform == "win32":
        return ["win32"]
    if system == "win":
        return [f"win_{rest.replace('-', '_')}"]
    if system == "macosx":
        built_for, _, arch = rest.rpartition("-")
        if arch not in ("arm64", "x86_64"):  # a universal build runs as the machine's own architecture
            arch = target.machine or arch
        return _mac_platforms(target.macos or _version(built_for), arch)
    if system == "linux":
        return _linux_platforms(target.glibc, rest or target.machine)
    return [target.platform.replace("-", "_").replace(".", "_")]


def _linux_platforms(glibc: tuple[int, int] | None, arch: str) -> list[str]:
    """manylinux_2_N for every glibc 2.N this system's glibc covers, with the legacy aliases, then plain
    linux (which only a wheel built on this very system would carry)."""
    tags = []
    if glibc is not None and glibc[0] == 2:
        for minor in range(glibc[1], OLDEST_MANYLINUX_GLIBC - 1, -1):
            tags.append(f"manylinux_2_{minor}_{arch}")
            if minor in LEGACY_MANYLINUX and arch in ("x86_64", "i686") + (() if minor < 17 else ("aarch64",)):
                tags.append(f"{LEGACY_MANYLINUX[minor]}_{arch}")
    return tags + [f"linux_{arch}"]


def _mac_platforms(version: tuple[int, int] | None, arch: str) -> list[str]:
    """packaging's: a wheel built for an older macOS runs on a newer one, and a universal2 wheel (both
    architectures) may name an older version than Apple silicon has, that of its Intel half."""
    return list(mac_platforms(version or (11, 0), arch))


def supported_tags(target: PythonTarget) -> list[Tag]:
    """The tags this Python loads, best first: its own ABI, then the stable ABI of its version and every
    older 3.x since 3.2 (not for free-threaded builds), then no ABI."""
    if target.implementation != "cpython":
        return []
    return list(cpython_tags(target.version, abi_tags(target), platform_tags(target)))


def rank(filename: str, target: PythonTarget) -> int | None:
    """The wheel's place in the target's preference (0 is best), or None when the target cannot load it
    (or the name is not a wheel's)."""
    try:
        offered = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return None
    return next((index for index, tag in enumerate(supported_tags(target)) if tag in offered), None)


def best_wheel(filenames: list[str], target: PythonTarget) -> str | None:
    """The wheel the target loads best, or None when it loads none of them."""
    ranked = [(rank(name, target), name) for name in filenames]
    fitting = sorted((place, name) for place, name in ranked if place is not None)
    return fitting[0][1] if fitting else None


def pip_download_arguments(target: PythonTarget) -> list[str]:
    """`pip download` options that make pip choose among wheels for the target instead of this Python."""
    major, minor = target.version
    arguments = ["--only-binary=:all:", "--no-deps", "--implementation", "cp", "--python-version", f"{major}.{minor}"]
    for abi in abi_tags(target):
        arguments += ["--abi", abi]
    for platform in platform_tags(target):
        arguments += ["--platform", platform]
    return arguments
