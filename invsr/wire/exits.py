"""How a local worker ended, told to the clients that saw it vanish.

A worker that a client starts runs under a small supervising parent (`invsr serve --supervise`), which
waits for it and writes its exit status beside its log: only a parent learns a process's exit status, and
a worker killed by the system (SIGKILL, most often for want of memory) or crashed cannot say so itself.
A client that finds the worker's process gone reads that record and says, in one sentence, what happened.

Standard library only: this module also runs inside GIMP's Python.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from .atomic import write_atomically

# What a signal that ended the worker most likely means, said to a person; others are "ended by signal N".
SIGNAL_CAUSES = {
    "SIGKILL": "was killed by the system (SIGKILL), most often because the computer ran out of memory",
    "SIGSEGV": "crashed (SIGSEGV, a fault in native code: a driver or a library)",
    "SIGBUS": "crashed (SIGBUS, a fault in native code: a driver or a library)",
    "SIGABRT": "crashed (SIGABRT, aborted by a library it uses)",
    "SIGILL": "crashed (SIGILL: a library built for another processor)",
    "SIGTERM": "was stopped (SIGTERM: `invsr serve --stop`, a shutdown or another program)",
    "SIGINT": "was stopped (SIGINT: Ctrl-C in its terminal)",
    "SIGHUP": "was stopped (SIGHUP: its terminal or session closed)",
}


def record_path(log_file: str | Path) -> Path:
    """Where the supervisor of the worker logging to `log_file` records its end: worker.log, worker.exit.json."""
    log_file = Path(log_file)
    return log_file.with_name(f"{log_file.stem}.exit.json")


def write(path: Path, pid: int, returncode: int) -> None:
    """Record that process `pid` ended with `returncode` (negative: killed by that signal, as subprocess says)."""
    record = {"pid": pid, "returncode": returncode, "ended": time.time()}
    write_atomically(Path(path), json.dumps(record).encode(), mode=0o600)


def read(path: Path, pid: int, wait: float = 0.0) -> int | None:
    """The return code recorded for process `pid`, waiting up to `wait` seconds for its supervisor to write
    it; None when no record of that process comes (a worker started without a supervisor)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            record = json.loads(Path(path).read_text())
            if isinstance(record, dict) and record.get("pid") == pid and isinstance(record.get("returncode"), int):
                return record["returncode"]
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def describe(returncode: int | None) -> str:
    """What happened to the worker, as the end of a sentence that starts "The InvSR worker ..."."""
    if returncode is None:
        return "stopped (how is not known: it was not started by InvSR's plug-in or client)"
    if returncode == 0:
        return "was stopped (it finished normally, asked to stop)"
    if returncode > 0:
        return f"stopped with an error (exit status {returncode})"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"was ended by signal {-returncode}"
    return SIGNAL_CAUSES.get(name, f"was ended by {name}")
