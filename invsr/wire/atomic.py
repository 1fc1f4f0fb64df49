"""Writing a file so that a reader sees the old file or the whole new one, never a part.

The bytes go to a temporary name beside the target, which then replaces the target in one step
(os.replace is atomic within a folder). The temporary name starts with a dot and ends in `.partial`, so
a folder listing, a resumed run or a user can tell it from a finished file.
"""

from __future__ import annotations

import os
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """The temporary name this process writes `path` under."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def is_partial(path: Path) -> bool:
    """Whether `path` is such a temporary name (of any process), not a finished file."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def write_atomically(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write `data` to `path` atomically. The file is created with `mode` (less the umask), so a private
    file (0o600) is never readable by others, not even for a moment."""
    partial = partial_path(path)
    partial.unlink(missing_ok=True)  # one left by a crash would keep its own, maybe looser, mode
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # Windows: no newline rewriting
        descriptor = os.open(partial, flags, mode)
        with os.fdopen(descriptor, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the temporary files that runs killed while writing left in `folder`: those of processes that
    no longer run (checked on POSIX only, where asking costs nothing). Returns them."""
    folder = Path(folder)
    removed = []
    if os.name != "posix" or not folder.is_dir():
        return removed
    for path in folder.glob(f".*{PARTIAL_SUFFIX}"):
        pid = path.name[: -len(PARTIAL_SUFFIX)].rpartition(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_runs(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but is another user's
        return True
    return True
