"""The pyzmq that `invsr gimp install` may put in the plug-in's vendor/ folder, for a GIMP whose Python has
none: the plug-in puts it on sys.path only when this Python has no zmq of its own, and only when the wheel it
came from was built for a Python like this one (its .dist-info/WHEEL file says which). A copy made for another
Python (say, the python3 that pyenv put first on PATH) would shadow a working pyzmq, or fail to load.

Standard library only: this module runs inside GIMP's Python, before zmq can be imported.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import sys
import sysconfig

RECORD = "invsr-vendored.json"  # beside zmq/: the wheel unpacked there, and the Python it was chosen for
OWN, VENDORED, ABSENT = "own", "vendored", "absent"
state = ABSENT  # what put_on_path found: OWN, VENDORED, ABSENT, or why the vendored copy does not fit


def put_on_path(vendor: str) -> str:
    """Add `vendor` to sys.path when this Python needs it and can load it; returns (and keeps in `state`) what
    was found."""
    global state
    if importlib.util.find_spec("zmq") is not None:
        state = OWN
    elif not os.path.isdir(os.path.join(vendor, "zmq")):
        state = ABSENT
    else:
        state = misfit(vendor) or VENDORED
        if state == VENDORED:
            sys.path.insert(1 if sys.path and sys.path[0] != vendor else 0, vendor)
    return state


def misfit(vendor: str) -> str | None:
    """Why the pyzmq in `vendor` cannot load in this Python, or None when it can (or nothing says otherwise)."""
    tags = wheel_tags(vendor)
    if not tags or any(fits(tag) for tag in tags):
        return None
    try:
        with open(os.path.join(vendor, RECORD)) as file:
            record = json.load(file)
    except (OSError, ValueError):
        record = {}
    python = record.get("python") or {}
    made_for = " for {} (Python {})".format(
        python.get("executable"), ".".join(str(part) for part in python.get("version", [])[:3])
    )
    version = ".".join(str(part) for part in sys.version_info[:3])
    return (
        f"the pyzmq in the plug-in's vendor folder {vendor} was built{made_for if python else ''} as "
        f"{' '.join(sorted(tags))}, which this Python ({sys.executable}, Python {version}) cannot load"
    )


def wheel_tags(vendor: str) -> set[str]:
    """The tags (interpreter-abi-platform) that the vendored wheel's WHEEL file lists."""
    tags = set()
    for path in glob.glob(os.path.join(vendor, "pyzmq-*.dist-info", "WHEEL")):
        with open(path) as file:
            tags |= {line.split(":", 1)[1].strip() for line in file if line.startswith("Tag:")}
    return tags


def fits(tag: str) -> bool:
    """Whether this Python loads a wheel tagged `tag` (PEP 425): its CPython version and ABI, and its system
    and processor."""
    try:
        interpreter, abi, platform_tag = tag.split("-")
    except ValueError:
        return False
    own = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if abi == "abi3":
        minor = interpreter[3:] if interpreter.startswith("cp3") else ""
        older = minor.isdigit() and int(minor) <= sys.version_info[1]
        abi_fits = sys.implementation.name == "cpython" and not free_threaded and older
    elif abi == "none":
        abi_fits = interpreter in ("py3", own)
    else:
        abi_fits = sys.implementation.name == "cpython" and abi == own + ("t" if free_threaded else "")
    return abi_fits and _platform_fits(platform_tag)


def _platform_fits(tag: str) -> bool:
    if tag == "any":
        return True
    arch = sysconfig.get_platform().split("-")[-1].replace(".", "_")  # x86_64, amd64, arm64, win32, universal2
    if tag.startswith(("manylinux", "musllinux", "linux")):
        return sys.platform.startswith("linux") and tag.endswith("_" + arch)
    if tag.startswith("win"):
        return sys.platform == "win32" and (tag == arch or tag.endswith("_" + arch))
    if tag.startswith("macosx"):
        return sys.platform == "darwin" and tag.endswith(("_universal2", "_" + platform.machine()))
    return False
