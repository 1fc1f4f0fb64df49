"""`invsr serve --supervise`: the worker as the child of a small parent that records how it ended.

Only a parent learns a process's exit status. A worker that the plug-in or a client starts outlives them
(its own session), so without this parent nobody could tell a worker killed for want of memory from one
that crashed or was stopped. The parent forwards the stopping signals, waits, and writes the status where
clients look (invsr.wire.exits). It imports neither PyTorch nor ZeroMQ: it costs a few MB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from invsr.wire import exits

SUPERVISOR_PID = "INVSR_SUPERVISOR_PID"  # set for the child: the worker names its supervisor in its connection file
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def supervise(worker_argv: list[str], log_file: Path) -> int:
    """Run `python -m invsr_server WORKER_ARGV...` as a child, record its end beside `log_file`, and exit
    as it did (128 + N for signal N, as a shell says)."""
    environment = {**os.environ, SUPERVISOR_PID: str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-m", "invsr_server", *worker_argv], env=environment)
    for signum in FORWARDED:
        signal.signal(signum, lambda number, frame: child.send_signal(number))
    returncode = child.wait()
    exits.write(exits.record_path(log_file), child.pid, returncode)
    return returncode if returncode >= 0 else 128 - returncode


def supervisor_pid() -> int | None:
    """The supervising parent's process id, when this worker runs under one (and that parent still lives)."""
    named = os.environ.get(SUPERVISOR_PID, "")
    return os.getppid() if named.isdigit() and int(named) == os.getppid() else None
