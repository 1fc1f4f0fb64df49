"""The worker seen through the pipeline's interface, for `invsr upscale --server`.

Arrays go to the worker as raw frames in their own precision and come back the same way, so the result
is byte for byte the one the worker's pipeline made (the same as in-process on the same device). The
worker's errors arrive as the library's own classes (invsr.wire.errors), so callers handle both alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from invsr import Progress, UpscaleResult
from invsr.wire import client as worker_client
from invsr.wire import connection
from invsr.wire.contract import PIXEL_DTYPES, WIRE_DTYPES, check_work_size
from invsr.wire.errors import InvalidImage, InvSRError
from invsr.wire.keys import load_key_pair
from invsr.wire.replies import Progress as WorkerProgress


class RemotePipeline:
    def __init__(self, client: worker_client.Client):
        self.client = client
        self.hello = client.hello()
        self.load_report = {"worker": client.connection.endpoint}
        self.max_pixels: int | None = None  # this side's own limit (--max-pixels), besides the worker's

    def describe(self) -> dict:
        return {
            "worker": self.client.connection.endpoint,
            "worker_version": self.hello.worker_version,
            "model": self.hello.model.to_dict(),
        }

    def upscale(self, image: np.ndarray, request, progress=None, on_band=None) -> UpscaleResult:
        """As InvSRPipeline.upscale; with `on_band`, the worker's bands go there as they arrive, and the
        result's image is None (this side never holds the whole result)."""
        array = np.ascontiguousarray(image if image.ndim == 3 else image[:, :, None])
        if str(array.dtype) not in WIRE_DTYPES:
            raise InvalidImage(f"pixels of dtype {array.dtype} cannot be sent; use uint8, uint16 or float32")
        if self.max_pixels is not None:
            check_work_size(*array.shape[:2], request.output_size(*array.shape[:2]), self.max_pixels)

        def on_progress(reported: WorkerProgress):
            if progress is not None and reported.total:
                progress(Progress(reported.stage, reported.done, reported.total, reported.elapsed or 0.0))

        height, width, channels = array.shape
        pixels, wire_dtype = memoryview(array).cast("B"), WIRE_DTYPES[str(array.dtype)]
        if on_band is not None:

            def hand_on(band) -> None:
                shape = (band.rows, band.width, band.channels)
                rows = np.frombuffer(band.pixels, dtype=PIXEL_DTYPES[band.dtype][0]).reshape(shape)
                on_band(band.top, rows[:, :, 0] if image.ndim == 2 else rows)

            result = self.client.upscale_bands(
                pixels, width, height, channels, wire_dtype, request, hand_on, on_progress=on_progress
            )
            return UpscaleResult(None, result.report)
        result = self.client.upscale(pixels, width, height, channels, wire_dtype, request, on_progress=on_progress)
        shape = (result.height, result.width, result.channels)
        out = np.frombuffer(result.pixels, dtype=PIXEL_DTYPES[result.dtype][0]).reshape(shape)
        return UpscaleResult(out[:, :, 0] if image.ndim == 2 else out, result.report)


def connect_to_worker(server: str, args) -> RemotePipeline:
    """`--server` with no value: the local worker, started when none answers; else a connection file or
    an endpoint whose connection file is in the runtime folder."""
    options = {"client_keys": load_key_pair(args.client_key)} if getattr(args, "client_key", None) else {}
    try:
        if server == "":
            command = [sys.executable, "-m", "invsr_server", "serve", *_serve_options(args)]
            client = worker_client.connect(start_command=command, on_status=_say, **options)
        else:
            client = worker_client.Client(connection.read(_connection_file_for(server)), **options)
    except (OSError, ValueError) as error:
        raise InvSRError(f"cannot use the worker's connection file: {error}") from None
    pipeline = RemotePipeline(client)
    if getattr(args, "max_pixels", None) is not None:
        pipeline.max_pixels = int(args.max_pixels * 1e6)
    return pipeline


def _say(text: str) -> None:
    print(f"invsr: {text}", file=sys.stderr)


def _connection_file_for(server: str) -> Path:
    if "://" not in server:
        return Path(server)
    for path in sorted(connection.runtime_dir().glob("*.json")):
        try:
            if connection.read(path).endpoint == server:
                return path
        except (OSError, ValueError):
            continue
    raise InvSRError(
        f"no connection file for {server} in {connection.runtime_dir()}: "
        "give the worker's connection file instead (it holds the secret)"
    )


def _serve_options(args) -> list[str]:
    options = []
    named = (
        ("--weights", args.weights),
        ("--noise-predictor", args.noise_predictor),
        ("--device", args.device),
        ("--dtype", args.dtype),
        ("--max-pixels", getattr(args, "max_pixels", None)),
    )
    for flag, value in named:
        if value not in (None, "auto"):
            options += [flag, str(value)]
    return options + (["--compile"] if getattr(args, "compile", False) else [])
