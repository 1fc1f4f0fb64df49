"""The worker seen through the pipeline's interface, for `invsr upscale --server`.

Arrays go to the worker as raw frames in their own precision and come back the same way, so the result
is byte for byte the one the worker's pipeline made (the same as in-process on the same device).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .errors import InvSRError
from .pipeline import UpscaleResult, check_work_size
from .progress import Progress

_WIRE_DTYPES = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16", np.dtype(np.float32): "f32"}
_NUMPY_DTYPES = {wire: dtype for dtype, wire in _WIRE_DTYPES.items()}


class RemoteError(InvSRError):
    """A worker's error, carried into the library's error type with the worker's code."""

    def __init__(self, error):
        super().__init__(str(error))
        self.code = error.code


class RemotePipeline:
    def __init__(self, client):
        from invsr_server.protocol import RemoteError as ProtocolError

        self.client = client
        try:
            self.hello = client.hello()
        except ProtocolError as error:
            raise RemoteError(error) from None
        self.load_report = {"worker": client.connection.endpoint}
        self.max_pixels: int | None = None  # this side's own limit (--max-pixels), besides the worker's

    def describe(self) -> dict:
        return {"worker": self.client.connection.endpoint, "worker_version": self.hello.get("worker_version"), "model": self.hello.get("model")}

    def upscale(self, image: np.ndarray, request, progress=None) -> UpscaleResult:
        from invsr_server.protocol import RemoteError as ProtocolError

        array = np.ascontiguousarray(image if image.ndim == 3 else image[:, :, None])
        if array.dtype not in _WIRE_DTYPES:
            raise InvSRError(f"pixels of dtype {array.dtype} cannot be sent; use uint8, uint16 or float32")
        if self.max_pixels is not None:
            check_work_size(*array.shape[:2], request.output_size(*array.shape[:2]), self.max_pixels)

        def on_progress(fields):
            if progress is not None and fields.get("total"):
                progress(Progress(fields["stage"], fields["done"], fields["total"], fields.get("elapsed") or 0.0))

        try:
            header, buffer = self.client.upscale(
                memoryview(array).cast("B"), array.shape[1], array.shape[0], array.shape[2], _WIRE_DTYPES[array.dtype],
                request.to_dict(), on_progress=on_progress,
            )
        except ProtocolError as error:
            raise RemoteError(error) from None
        shape = (header["height"], header["width"], header["channels"])
        out = np.frombuffer(buffer, dtype=_NUMPY_DTYPES[header["dtype"]]).reshape(shape)
        return UpscaleResult(out[:, :, 0] if image.ndim == 2 else out, header["report"])


def connect_to_worker(server: str, args) -> RemotePipeline:
    """`--server` with no value: the local worker, started when none answers; else a connection file or
    an endpoint whose connection file is in the runtime folder."""
    from invsr_server import client as worker_client
    from invsr_server import connection
    from invsr_server.keys import load_key_pair
    from invsr_server.protocol import RemoteError as ProtocolError

    options = {"client_keys": load_key_pair(args.client_key)} if getattr(args, "client_key", None) else {}
    try:
        if server == "":
            command = [sys.executable, "-m", "invsr", "serve", *_serve_options(args)]
            client = worker_client.connect(start_command=command, on_status=lambda text: print(f"invsr: {text}", file=sys.stderr), **options)
        else:
            client = worker_client.Client(connection.read(_connection_file_for(server)), **options)
    except ProtocolError as error:
        raise RemoteError(error) from None
    except (OSError, ValueError) as error:
        raise InvSRError(f"cannot use the worker's connection file: {error}") from None
    pipeline = RemotePipeline(client)
    if getattr(args, "max_pixels", None) is not None:
        pipeline.max_pixels = int(args.max_pixels * 1e6)
    return pipeline


def _connection_file_for(server: str) -> Path:
    from invsr_server import connection

    if "://" not in server:
        return Path(server)
    for path in sorted(connection.runtime_dir().glob("*.json")):
        try:
            if connection.read(path).endpoint == server:
                return path
        except (OSError, ValueError):
            continue
    raise InvSRError(f"no connection file for {server} in {connection.runtime_dir()}: give the worker's connection file instead (it holds the secret)")


def _serve_options(args) -> list[str]:
    options = []
    named = (("--weights", args.weights), ("--noise-predictor", args.noise_predictor), ("--device", args.device), ("--dtype", args.dtype), ("--max-pixels", getattr(args, "max_pixels", None)))
    for flag, value in named:
        if value not in (None, "auto"):
            options += [flag, str(value)]
    return options + (["--compile"] if getattr(args, "compile", False) else [])
