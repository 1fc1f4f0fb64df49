"""GIMP as a flatpak: where the worker, on the host, and the plug-in, in GIMP's sandbox, meet.

The sandbox cannot start a program of the host, so the user starts the worker outside it, and the plug-in
inside must find the worker's connection file. Flatpak shares one folder per app between both sides: the
host's $XDG_RUNTIME_DIR/app/APP_ID is mounted in the sandbox at /run/user/UID/app/APP_ID, and the sandbox's
XDG_RUNTIME_DIR is /run/user/UID. So the same rule, applied on either side, names the same folder.

Standard library only: this module also runs inside GIMP's Python.
"""

from __future__ import annotations

import os
from pathlib import Path

from .connection import FILE_NAME

GIMP_APP_ID = "org.gimp.GIMP"


def in_flatpak_sandbox() -> bool:
    """Whether this process runs inside a flatpak (flatpak sets FLATPAK_ID and writes /.flatpak-info)."""
    return bool(os.environ.get("FLATPAK_ID")) or os.path.exists("/.flatpak-info")


def flatpak_shared_dir(app_id: str | None = None) -> Path:
    """The folder for InvSR's run-time files that the host and the app's sandbox both see: on the host
    $XDG_RUNTIME_DIR/app/APP_ID/invsr (flatpak's own rule: /run/user/UID when XDG_RUNTIME_DIR is unset),
    in the sandbox the same path under the sandbox's XDG_RUNTIME_DIR. `app_id`: the app's, by default
    the sandbox's own (FLATPAK_ID), else GIMP's."""
    app_id = app_id or os.environ.get("FLATPAK_ID") or GIMP_APP_ID
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime) / "app" / app_id / "invsr"


def flatpak_connection_file(app_id: str | None = None) -> Path:
    """Where a worker for the flatpak writes its connection file (`invsr serve --connection-file THIS`)."""
    return flatpak_shared_dir(app_id) / FILE_NAME
