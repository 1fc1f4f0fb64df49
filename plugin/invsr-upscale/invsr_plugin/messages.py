"""What the user reads when the worker cannot do a job: what happened, in plain words, then the one thing
to do. GIMP shows these in a message box: no shell quoting, no nested parentheses, no stack of causes."""

from __future__ import annotations

from invsr_wire import exits
from invsr_wire.errors import InvSRError

INSTALL = "In a terminal, in the Python environment that has InvSR, run: invsr gimp install"


def cannot_start(error: InvSRError, installed: bool) -> str:
    """No worker answers, and none could be started: why, and what to do."""
    if not installed:
        return (
            "No InvSR worker is running, and this copy of the plug-in cannot start one: it was not installed by "
            f"InvSR's installer. {INSTALL}. Then restart GIMP and upscale again."
        )
    command = error.details.get("unrunnable_command")
    if command:
        return (
            f"The plug-in cannot start the InvSR worker: {command[0]} is missing, perhaps moved or deleted. "
            f"{INSTALL}. Then upscale again."
        )
    return f"The InvSR worker could not start. {_last_words(error)}Fix what it names, then upscale again."


def job_failed(error: InvSRError, remote: bool, layer_name: str) -> str:
    """The worker took the job and failed, or stopped answering: nothing was changed."""
    if error.code == "worker_lost":
        if remote:
            return (
                "The InvSR worker named in the Worker field stopped answering; nothing was changed. Start it again "
                "on its computer, then upscale again."
            )
        if "exit" in error.details:
            return worker_died(error.details)
        reason = error.details.get("reason") or str(error)  # alive but silent: stopped, frozen or overloaded
        return f"The InvSR worker stopped answering during the upscale; nothing was changed: {reason}."
    if error.code == "weights_missing":
        return f"{weights_missing(error.details)} Nothing was changed."
    if error.code == "busy":
        return "The InvSR worker is busy with other jobs; nothing was changed. Wait a minute, then upscale again."
    if error.code == "out_of_memory":
        return (
            "The GPU ran out of memory; nothing was changed. Under Advanced, choose a smaller Piece size, then "
            "upscale again."
        )
    return f"InvSR could not upscale the layer {layer_name!r}; nothing was changed. {error}"


def weights_missing(details: dict) -> str:
    """InvSR's model files are not on this computer (or not where the worker looks): the one command that
    fetches them, and its size; never the file names, nor the random test weights a developer would use."""
    command = details.get("download") or "invsr weights download"
    size = details.get("download_size") or "about 2.6 GB"
    return (
        f"InvSR's model weights are not on this computer yet. In a terminal, run: {command} ({size}, once), "
        "then upscale again."
    )


def worker_died(details: dict) -> str:
    """The local worker vanished mid-job: what happened in one sentence (its exit status tells, as its
    supervisor recorded it), where its full log is, and what to do; never the log itself."""
    status = details.get("exit")
    what = f"The InvSR worker {exits.describe(status)} during the upscale; nothing was changed."
    if status == -9:  # SIGKILL: the kernel's out-of-memory killer, in nearly every case
        advice = "Close other programs or choose a smaller result, then upscale again."
    else:
        advice = "Upscale again: the plug-in starts a new worker."
    last = (details.get("log_tail") or "").strip().splitlines()[-1:]
    if status is not None and status > 0 and last:  # it said why before it stopped: that one line
        what += f" It said: {last[0][-300:]}"
    log_file = details.get("log_file")
    where = f" Its log: {log_file}" if log_file else ""
    return f"{what} {advice}{where}"


def _last_words(error: InvSRError) -> str:
    tail = (error.details.get("log_tail") or "").strip()
    return f"Its log ends with: {tail}\n" if tail else ""
