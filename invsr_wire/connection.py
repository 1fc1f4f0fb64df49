"""The connection file: how clients find a worker and prove they may use it.

A worker writes it at start (owner-only, mode 0600) and removes it when it stops. It holds the endpoint,
the protocol version, the per-start secret that signs every message, the worker's process id and log
file (for a local client's diagnostics), and, when CurveZMQ is on, the worker's public key.

Standard library only: this module also runs inside GIMP's Python.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

from .atomic import write_atomically

SOCKET_USER = b"invsr"  # the PLAIN handshake's user name (the password is what proves access)
DEFAULT_PORT = 47290
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"
FILE_NAME = "worker.json"


def runtime_dir() -> Path:
    """The user's own folder for run-time files: $XDG_RUNTIME_DIR/invsr, else a per-user cache folder."""
    if os.environ.get("INVSR_RUNTIME_DIR"):
        return Path(os.environ["INVSR_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "invsr"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", tempfile.gettempdir())) / "invsr" / "run"
    return Path.home() / ".cache" / "invsr" / "run"


def default_path() -> Path:
    return runtime_dir() / FILE_NAME


def default_log_path() -> Path:
    return runtime_dir() / "worker.log"


@dataclasses.dataclass(frozen=True)
class Connection:
    endpoint: str
    key: str  # hex; the HMAC-SHA256 secret
    protocol: str
    pid: int | None = None
    log_file: str | None = None
    worker_version: str | None = None
    curve_server_key: str | None = None  # Z85 public key when the worker requires CurveZMQ
    socket_auth: str | None = None  # "plain": ZeroMQ's PLAIN handshake with `socket_password` (3.0 workers)

    @property
    def key_bytes(self) -> bytes:
        return bytes.fromhex(self.key)

    @property
    def socket_password(self) -> bytes:
        return socket_password(self.key_bytes)

    @property
    def is_local(self) -> bool:
        return is_loopback(self.endpoint)


def socket_password(key: bytes) -> bytes:
    """The PLAIN handshake's password: derived from the secret, so that the secret itself never travels
    (PLAIN sends its password in the clear)."""
    return hmac.new(key, b"invsr socket password", hashlib.sha256).hexdigest().encode("ascii")


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint stays on this machine."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "[::1]", "::1")


def new_key() -> str:
    return secrets.token_hex(32)


def make_private_folder(folder: Path) -> Path:
    """Create `folder`, and each missing folder above it, readable by its owner only (0700, whatever the
    umask): the worker's run-time files name jobs and hold secrets. A folder that exists keeps its mode
    (it may be one the user chose, such as /tmp)."""
    folder = Path(folder)
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    for each in reversed(missing):
        try:
            each.mkdir(mode=0o700)
        except FileExistsError:  # made at the same moment by another process
            continue
        each.chmod(0o700)  # mkdir's mode is narrowed by the umask, never widened; say it outright
    return folder


def write(path: Path, connection: Connection) -> None:
    """Write atomically and owner-only: the secret must not be readable by other users."""
    path = Path(path)
    make_private_folder(path.parent)
    write_atomically(path, json.dumps(dataclasses.asdict(connection), indent=2).encode(), mode=0o600)


def read(path: Path) -> Connection:
    """Raises FileNotFoundError when absent and ValueError when unreadable."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not {"endpoint", "key", "protocol"} <= set(data):
        raise ValueError(f"{path}: not an InvSR worker connection file")
    known = {f.name for f in dataclasses.fields(Connection)}
    return Connection(**{k: v for k, v in data.items() if k in known})


def remove(path: Path, connection: Connection) -> None:
    """Remove the file, but only if it is still ours (a newer worker may have replaced it)."""
    try:
        if read(path).key == connection.key:
            Path(path).unlink()
    except (OSError, ValueError):
        pass
