"""Ends a local Ray's processes when the process that started it dies without stopping it (SIGKILL, a crash).

A Ray started with `ray.init` ties its head processes to the process that started it, but the agents its
raylet starts outlive that process by a minute or more. `watch()` starts this module beside the calling
process: twice a second it notes that process's descendants, and once the process is gone it kills those
of them still running (the same processes: their start times are checked), with their own children.
Linux only (it reads /proc); elsewhere `watch` does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

EVERY_S = 0.5


def watch() -> subprocess.Popen | None:
    """Start the reaper for this process (None where there is no /proc)."""
    if not os.path.exists("/proc/self/stat"):
        return None
    command = [sys.executable, "-m", "invsr_server.cluster.reaper", str(os.getpid())]
    quiet = subprocess.DEVNULL
    return subprocess.Popen(command, stdin=quiet, stdout=quiet, stderr=quiet, start_new_session=True)


def processes() -> dict[int, tuple[int, int]]:
    """Every process: (its parent, its start time in clock ticks)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                table[int(entry)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(pid: int, table: dict[int, tuple[int, int]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def main(argv: list[str]) -> int:
    parent, me = int(argv[0]), os.getpid()
    known: dict[int, int] = {}  # the parent's descendants: their start times
    while os.getppid() == parent:
        table = processes()
        known = {pid: table[pid][1] for pid in descendants(parent, table) - {me}}
        time.sleep(EVERY_S)
    table = processes()
    doomed = {pid for pid, started in known.items() if pid in table and table[pid][1] == started}
    for pid in list(doomed):
        doomed |= descendants(pid, table) - {me}
    for pid in doomed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
