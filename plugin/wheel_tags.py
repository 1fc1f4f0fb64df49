"""Which binary wheels a Python can load, from a description of that Python (not this one): the tags it
accepts, best first, and whether a wheel's file name carries one of them.

GIMP's Python is not the Python running `invsr`: it may be another version, another ABI or another
operating system's (a Windows GIMP's bundled Python is described by the same fields). The description
comes from that Python itself (gimp_python.PROBE); the rules are those of the wheel tags (PEP 425, the
manylinux tags of PEP 600, macOS's versions and universal2), limited to CPython, which GIMP embeds.
"""

from __future__ import annotations

import dataclasses

OLDEST_MANYLINUX_GLIBC = 5  # manylinux1 is glibc 2.5
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}  # their glibc 2.x
OLDEST_ABI3 = 2  # the stable ABI began with CPython 3.2


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
    """macOS 11 and later number their yearly releases by the major version; a wheel built for an older
    macOS runs on a newer one. Apple silicon (arm64) exists from macOS 11, but a universal2 wheel (both
    architectures) may name an older version, that of its Intel half."""
    version = version or (11, 0)
    formats = [arch, "universal2"] if arch in ("arm64", "x86_64") else [arch]
    releases = [(major, 0) for major in range(version[0], 10, -1)] if version[0] >= 11 else []
    tens = range(version[1] if version[0] == 10 else 16, 3, -1)
    tags = [f"macosx_{major}_{minor}_{form}" for major, minor in releases for form in formats]
    older = formats if arch == "x86_64" else ["universal2"]
    return tags + [f"macosx_10_{minor}_{form}" for minor in tens for form in older]


def supported_tags(target: PythonTarget) -> list[tuple[str, str, str]]:
    """(interpreter, abi, platform) triples this Python loads, best first: its own ABI, then the stable
    ABI of its version and every older 3.x since 3.2."""
    if target.implementation != "cpython":
        return []
    platforms = platform_tags(target)
    major, minor = target.version
    tags = [(target.interpreter, abi, platform) for abi in abi_tags(target) for platform in platforms]
    if "abi3" in abi_tags(target):
        older = [f"cp{major}{m}" for m in range(minor - 1, OLDEST_ABI3 - 1, -1)]
        tags += [(interpreter, "abi3", platform) for interpreter in older for platform in platforms]
    return tags


def wheel_tags(filename: str) -> set[tuple[str, str, str]]:
    """The tag triples a wheel's file name carries (each part may hold several, joined by dots)."""
    if not filename.endswith(".whl"):
        return set()
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return set()
    interpreters, abis, platforms = parts[-3:]
    return {(i, a, p) for i in interpreters.split(".") for a in abis.split(".") for p in platforms.split(".")}


def rank(filename: str, target: PythonTarget) -> int | None:
    """The wheel's place in the target's preference (0 is best), or None when the target cannot load it."""
    offered = wheel_tags(filename)
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
