"""The connection file: how clients find a worker and prove they may use it.

A worker writes it at start (owner-only, mode 0600) and removes it when it stops. It holds the endpoint,
the protocol version, the per-start secret that signs every message, the worker's process id and log
file (for a local client's diagnostics), and, when CurveZMQ is on, the worker's public key.

A local worker listens by default on a Unix socket (ZeroMQ's ipc) in an owner-only folder beside this file,
so that other users of the machine cannot even connect to it (see `default_endpoint`).

Standard library only: this module also runs inside GIMP's Python.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from .atomic import write_atomically

SOCKET_USER = b"invsr"  # the PLAIN handshake's user name (the password is what proves access)
DEFAULT_PORT = 47290
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"  # where ZeroMQ has no ipc, and on Windows
FILE_NAME = "worker.json"
SOCKET_FOLDER = "sockets"  # beside the connection file, owner-only: the ipc sockets of the workers there
# The longest Unix socket path (sockaddr_un.sun_path, less its terminating zero): 103 bytes on macOS, 107 on Linux.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107


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
    supervisor_pid: int | None = None  # the parent that records how the worker ends (`invsr serve --supervise`)
    log_file: str | None = None
    worker_version: str | None = None
    curve_server_key: str | None = None  # Z85 public key when the worker requires CurveZMQ
    socket_auth: str | None = None  # "plain": ZeroMQ's PLAIN handshake with `socket_password` (3.0 workers)
    # Whether signatures cover the buffers' bytes (buffers_need_signing); absent: the safe reading, they do.
    signed_buffers: bool = True

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


def buffers_need_signing(endpoint: str, curve: bool) -> bool:
    """Whether a worker bound to `endpoint` must sign its messages' buffers byte for byte, not only their lengths
    (docs/PROTOCOL.md, "What the signature covers, and why"): only where the transport lets others alter frames.

    CurveZMQ authenticates and encrypts every frame; on an ipc socket or loopback TCP a frame can be sent only
    on a connection that passed the handshake (the password derived from the secret), and altered in transit
    only by the kernel's owner, who can read the secret anyway. TCP beyond this machine without CurveZMQ
    (`--insecure`) protects nothing: anyone on the path may rewrite frames, so there every buffer is signed.
    The worker decides once, at its start, and writes the answer into its connection file for its clients."""
    return not curve and not is_loopback(endpoint)


def default_endpoint(connection_file: Path, has_ipc: bool, platform: str = sys.platform) -> str:
    """Where a worker listens unless told otherwise (`--bind`): a Unix socket in an owner-only folder beside
    its connection file (`sockets/NAME.sock`), so that other users cannot connect at all, and nothing they
    send can cost the worker memory or open files. A path too long for a Unix socket goes to a folder of
    this user's own in the temporary folder instead.

    On Windows, and where ZeroMQ lacks ipc (`has_ipc`, from `zmq.has("ipc")`), loopback TCP: libzmq has
    AF_UNIX sockets on Windows 10 only in some builds (pyzmq 22's wheels had them, 24 and 25 dropped them
    for crashes, 26 brought them back), and GIMP's Python may hold another pyzmq than the worker's, so a
    worker there could be unreachable from GIMP."""
    if platform == "win32" or not has_ipc:
        return DEFAULT_ENDPOINT
    path = Path(connection_file).absolute().parent / SOCKET_FOLDER / f"{Path(connection_file).stem}.sock"
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        digest = hashlib.sha256(os.fsencode(str(path))).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"invsr-{os.getuid()}" / f"{digest}.sock"
    return f"ipc://{path}"


def make_socket_folder(folder: Path) -> Path:
    """Create the folder of an ipc socket owner-only (0700), or make an existing one so: connecting to a Unix
    socket needs search permission on its folder, so then only this user (and root) can. Refuses a folder
    that another user owns, or a symbolic link, which someone else could have put there."""
    folder = make_private_folder(folder)
    if os.name != "posix":
        return folder  # on Windows the user's own folders are private by their access lists
    info = os.stat(folder, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(
            f"{folder} is not a folder of this user's own, so other users might reach the worker's socket "
            "there: remove it, or choose another --connection-file or --bind"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        folder.chmod(0o700)
    return folder


def ipc_path(endpoint: str) -> Path | None:
    """The socket file of an ipc:// endpoint, or None for other transports."""
    return Path(endpoint[len("ipc://") :]) if endpoint.startswith("ipc://") else None


def reachable_endpoint(endpoint: str, connection_file: Path) -> str:
    """An ipc endpoint as this process can reach it. In a container or a chroot (GIMP's, in the tests) the
    worker's folder has another path than the worker wrote: the socket is then looked for at the same place
    relative to the connection file (`sockets/NAME.sock` beside it)."""
    socket_file = ipc_path(endpoint)
    if socket_file is None or os.path.exists(socket_file):
        return endpoint
    beside = Path(connection_file).parent / socket_file.parent.name / socket_file.name
    return f"ipc://{beside}" if os.path.exists(beside) else endpoint


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
    connection = Connection(**{k: v for k, v in data.items() if k in known})
    if not isinstance(connection.endpoint, str):
        raise ValueError(f"{path}: the endpoint is not text")
    return dataclasses.replace(connection, endpoint=reachable_endpoint(connection.endpoint, path))


def remove(path: Path, connection: Connection) -> None:
    """Remove the file, but only if it is still ours (a newer worker may have replaced it)."""
    try:
        if read(path).key == connection.key:
            Path(path).unlink()
    except (OSError, ValueError):
        pass
