"""The dialog's Worker line: which worker an upscale will use, and what it is doing, in one sentence.

It asks the worker `hello` and never starts one: a check that started a worker would load a model on
every dialog open. No Gtk here, so that it is tested against real workers; the dialog runs `line` in a
background thread (it waits for the network) and shows what it returns.
"""

from __future__ import annotations

from pathlib import Path

from invsr_wire.replies import Hello, ModelState

from . import messages

CHECK_TIMEOUT = 3.0  # seconds a worker may take to answer `hello` before the line says it does not answer
CHECKING = "Worker: checking..."
NO_FILE_CHOSEN = "Worker: choose the worker's connection file under Advanced; until then, the local worker"
NO_ZMQ = "Worker: GIMP's Python lacks pyzmq, so no worker can be reached. In a terminal, run: invsr gimp install"


def line(server: str, settings: dict, timeout: float = CHECK_TIMEOUT) -> str:
    """The line for the Worker field's value: `server`, a connection file, or empty for the local worker.
    `settings`: the install-time settings (flow.load_settings), which say whether the plug-in can start
    the local worker and which CurveZMQ key pair it has."""
    try:
        import zmq  # noqa: F401  (GIMP's Python may lack it: the procedure explains at the upscale)
    except ImportError:
        return NO_ZMQ
    if server:
        return _remote_line(Path(server), settings, timeout)
    return _local_line(settings, timeout)


def _local_line(settings: dict, timeout: float) -> str:
    from invsr_wire import connection, flatpak
    from invsr_wire.errors import InvSRError, VersionMismatch

    sandboxed = flatpak.in_flatpak_sandbox()
    path = flatpak.flatpak_connection_file() if sandboxed else connection.default_path()
    try:
        hello = _hello(connection.read(path), None, timeout)
    except VersionMismatch:
        return (
            "Worker: local, another version of InvSR is running. In a terminal, run: invsr serve --stop. "
            "The next upscale then starts this version's worker"
        )
    except (OSError, ValueError, InvSRError):  # no file, a stale one, or a worker that does not answer
        return _local_not_running(sandboxed, bool(settings.get("start_command")))
    return "Worker: local, " + model_words(hello.model)


def _local_not_running(sandboxed: bool, startable: bool) -> str:
    if sandboxed:
        from invsr_wire.flatpak import GIMP_APP_ID

        return (
            "Worker: local, not running, and GIMP's flatpak cannot start it. In a terminal outside GIMP, run: "
            f'invsr serve --connection-file "$XDG_RUNTIME_DIR/app/{GIMP_APP_ID}/invsr/worker.json"'
        )
    if startable:
        return "Worker: local, not running: it will be started when you upscale"
    return (
        "Worker: local, not running, and this copy of the plug-in cannot start one. In a terminal, run: "
        "invsr gimp install"
    )


def _remote_line(path: Path, settings: dict, timeout: float) -> str:
    from invsr_wire import connection, keys
    from invsr_wire.errors import InvSRError, Unauthorized, VersionMismatch

    try:
        described = connection.read(path)
    except FileNotFoundError:
        return f"Worker: the file {path} is not there: choose the connection file the worker wrote"
    except (OSError, ValueError):
        return f"Worker: {path.name} is not a worker's connection file: choose the one invsr serve wrote"
    where = f"{path.name} at {described.endpoint}"
    key_file = settings.get("client_key")
    if described.curve_server_key and not key_file:
        return (
            f"Worker: {where} requires CurveZMQ encryption. In a terminal, run: "
            "invsr gimp install --client-key NAME.key_secret"
        )
    try:
        pair = keys.load_key_pair(Path(key_file)) if described.curve_server_key else None
    except (OSError, ValueError) as error:
        return f"Worker: the plug-in's client key cannot be read ({error}). Run invsr gimp install --client-key again"
    try:
        hello = _hello(described, pair, timeout)
    except VersionMismatch:
        return f"Worker: {where} runs another version of InvSR: give both computers the same version"
    except Unauthorized:
        return f"Worker: {where} refuses this computer: ask whoever runs it to allow this computer's key"
    except (ValueError, InvSRError):
        return f"Worker: the file {path.name} names no worker that answers: start it on its computer"
    return f"Worker: {where}, " + model_words(hello.model)


def _hello(described, client_keys, timeout: float) -> Hello:
    """The worker's `hello`, on a socket of this thread's own, closed before returning."""
    from invsr_wire import client

    with client.Client(described, timeout=timeout, client_keys=client_keys) as worker:
        return worker.hello()


def model_words(model: ModelState) -> str:
    """What a running worker's model is doing (hello's `model`), in the user's words."""
    state = model.state
    on = f" on {model.device}" if model.device else ""
    if state == "ready":
        tiny = model.tiny_random
        return f"running{on}, ready" + (", on small random weights: not a real upscale" if tiny else "")
    if state == "not loaded":
        return "running, the model loads on the first upscale"
    if state == "loading":
        return "running, loading the model"
    if state == "compiling":
        return f"running{on}, compiling the networks once after its start (minutes)"
    if state == "failed" and model.code == "weights_missing":
        return "running, but " + messages.weights_missing(model.details)
    if state == "failed":
        reason = model.error or "no reason given"
        return f"running, but its model failed to load: {reason}. Fix what it names; the next upscale tries again"
    if state == "unavailable":  # its Ray cluster's head is lost: the error names it and what to do
        return f"running, but it cannot compute now: {model.error or 'no reason given'}"
    return f"running, its model is {state}"
