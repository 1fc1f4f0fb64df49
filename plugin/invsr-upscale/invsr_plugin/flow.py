"""What the plug-in does, apart from touching GIMP: find the worker, send each region, check each result.

GIMP's API stays in gimp_adapter.py; this module sees layers only as opaque objects and pixels as bytes.
Each result's bands are checked as they arrive and written at once into a layer that is in no image yet, so
that the plug-in holds at most a band of result; the image is changed only after every result has arrived
and passed `check`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from invsr_wire import flatpak
from invsr_wire.contract import DEFAULT_COLOR_FIX, DEFAULT_SCALE, sample_bytes, scaled_side
from invsr_wire.errors import InvSRError
from invsr_wire.replies import Progress, Result
from invsr_wire.request import UpscaleRequest

from . import messages
from .errors import PluginError
from .sizing import duration

PARASITE = "invsr-upscale"
SETTINGS_FILE = "invsr-settings.json"  # written by `invsr gimp install`: how to start the worker


@dataclasses.dataclass(frozen=True)
class Options:
    scale: float = DEFAULT_SCALE
    steps: int = 1
    color_fix: str = DEFAULT_COLOR_FIX
    seed: int = 0
    tile: int = 0  # 0: automatic
    output: str = "scale-image"  # or "new-image", or "in-place" (scale 1: the model's detail at the same size)
    server: str = ""  # empty: the local worker

    def worker_request(self) -> UpscaleRequest:
        """What the worker is asked to do: refused here (InvalidRequest) where a setting is out of range."""
        return UpscaleRequest(
            scale=self.scale,
            steps=self.steps,
            color_fix=self.color_fix,
            seed=self.seed,
            tile="auto" if self.tile == 0 else self.tile,
        )


@dataclasses.dataclass
class Region:
    """The pixels of one layer to upscale: `x, y, width, height` in the layer's own coordinates."""

    layer: object
    layer_name: str
    x: int
    y: int
    width: int
    height: int
    channels: int
    dtype: str  # the wire's u8, u16 or f32
    encoding: str  # the Babl format name the bytes are in (the result comes back in the same)
    pixels: bytes
    selected: bool  # only part of the layer, by the selection

    def output_size(self, scale: float) -> tuple[int, int]:
        """(width, height) the worker must return: round(side * scale), as the library computes it."""
        return scaled_side(self.width, scale), scaled_side(self.height, scale)


@dataclasses.dataclass
class Upscaled:
    region: Region
    width: int
    height: int
    layer: object  # the result, written band by band into a layer not yet in any image's layer tree
    report: dict


def load_settings() -> dict:
    """The install-time settings beside the plug-in (or where INVSR_GIMP_SETTINGS points); {} when none."""
    path = Path(os.environ.get("INVSR_GIMP_SETTINGS") or Path(__file__).resolve().parent.parent / SETTINGS_FILE)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def connect(options: Options, on_status):
    """A client of the worker: the one `options.server` names, or the local one (started if needed)."""
    from invsr_wire import client  # imports zmq, which GIMP's Python may lack: the entry script checks first

    settings = load_settings()
    if options.server:
        return _remote_client(Path(options.server), settings)
    if flatpak.in_flatpak_sandbox():
        return _flatpak_client()
    command = settings.get("start_command")
    try:
        worker = client.connect(start_command=command, on_status=on_status)
        if command and worker.hello().model.state == "failed":
            # Its model failed to load: weights missing, or the settings named another folder since it started.
            # It would fail again; one started now, with the settings of now, may not.
            worker.close()
            client.stop_worker()
            worker = client.connect(start_command=command, on_status=on_status)
        return worker
    except InvSRError as error:
        raise PluginError(messages.cannot_start(error, installed=bool(settings))) from None


def _flatpak_client():
    """GIMP's flatpak sandbox cannot start a program of the computer: the user starts the worker outside,
    with its connection file in the one folder both sides see."""
    from invsr_wire import client

    path = flatpak.flatpak_connection_file()
    try:
        return client.connect(path)
    except InvSRError as error:
        raise PluginError(
            "GIMP runs as a flatpak, whose sandbox cannot start the InvSR worker. Start it on this computer, "
            "outside GIMP, and leave it running: invsr serve --connection-file "
            f'"$XDG_RUNTIME_DIR/app/{flatpak.GIMP_APP_ID}/invsr/worker.json" ({error})'
        ) from None


def _remote_client(path: Path, settings: dict):
    """A client of the worker whose connection file the Worker field names, with the client key pair
    recorded by `invsr gimp install --client-key` when that worker requires CurveZMQ."""
    from invsr_wire import client, connection, keys

    try:
        described = connection.read(path)
        pair = (
            keys.load_key_pair(Path(settings["client_key"]))
            if described.curve_server_key and settings.get("client_key")
            else None
        )
        if described.curve_server_key and pair is None:
            raise PluginError(
                f"The worker in {path} requires CurveZMQ encryption: give the plug-in this computer's key pair, "
                "made by invsr keys and allowed by the worker. In a terminal, run: "
                "invsr gimp install --client-key NAME.key_secret"
            )
        return client.Client(described, client_keys=pair)
    except (OSError, ValueError) as error:
        raise PluginError(f"Cannot use the worker's connection file {path}: {error}") from None


def upscale_regions(client, regions: list[Region], options: Options, on_progress, layers) -> list[Upscaled]:
    """Send every region to the worker and return the checked results, each written band by band into a
    layer that `layers` makes (`layers.new(region, width, height)`, `layers.write(layer, region, top, rows,
    width, pixels)`); `on_progress(fraction, text)`, with fraction None while the worker reports no count."""
    results = []
    for index, region in enumerate(regions):

        def show(progress: Progress, index=index):
            on_progress(*progress_update(progress, index, len(regions)))

        received = Received(region, options, layers)
        try:
            result = client.upscale_bands(
                region.pixels,
                region.width,
                region.height,
                region.channels,
                region.dtype,
                options.worker_request(),
                received.add,
                on_progress=show,
            )
        except InvSRError as error:
            if error.code == "invalid_image":  # its pixels (NaN or infinity, say): name the layer to fix
                corner = f" (x and y count from the selection's corner, at {region.x}, {region.y} in the layer)"
                where = corner if region.selected else ""
                raise PluginError(f"InvSR: the layer {region.layer_name!r}: {error}{where}") from None
            raise PluginError(messages.job_failed(error, bool(options.server), region.layer_name)) from None
        results.append(check(received, result))
    return results


def progress_update(progress: Progress, index: int, count: int) -> tuple[float | None, str]:
    """The bar's fraction (None: it pulses) and text for a worker's progress on region `index` of `count`."""
    label = f"layer {index + 1}/{count}: " if count > 1 else ""
    if progress.stage == "loading model":  # no count to show
        return None, f"InvSR: {label}loading the model, once after the worker starts"
    if progress.stage == "compiling":  # a worker started with --compile, on its first job of this size
        return None, f"InvSR: {label}compiling the networks (the worker's first job at this tile size: minutes)"
    total = progress.total or 1
    done = min(progress.done, total)
    return (index + done / total) / count, f"InvSR: {label}{progress_text(done, total, progress.eta)}"


def progress_text(done: int, total: int, eta: float | None) -> str:
    """The worker counts its tiles and then one step that finishes the image (total = tiles + 1)."""
    tiles = total - 1
    if done < tiles:
        return f"tile {done}/{tiles}" + (f", {duration(eta)} left" if eta is not None else "")
    if done == tiles:
        return ("1 tile done" if tiles == 1 else f"all {tiles} tiles done") + ", assembling the result"
    return "receiving the result"


class Received:
    """One region's result as its bands arrive: each checked against what was asked for (its rows within the
    result, none twice, its byte count) before it is written into the result layer, made at the first band."""

    def __init__(self, region: Region, options: Options, layers):
        self.region, self.layers = region, layers
        self.width, self.height = region.output_size(options.scale)
        self.row_bytes = self.width * region.channels * sample_bytes(region.dtype)
        self.rows = bytearray(self.height)  # 1 where the row has arrived
        self.nbytes = 0
        self.layer = None

    def add(self, band) -> None:
        got, asked = (band.width, band.channels, band.dtype), (self.width, self.region.channels, self.region.dtype)
        if got != asked:
            raise PluginError(f"InvSR: the worker returned rows of {got}, expected {asked}; nothing was changed")
        end = band.top + band.rows
        if band.top < 0 or band.rows < 1 or end > self.height:
            raise PluginError(
                f"InvSR: the worker returned rows {band.top} to {end - 1} of a result {self.height} rows high; "
                "nothing was changed"
            )
        if any(self.rows[band.top : end]):
            raise PluginError(f"InvSR: the worker returned rows {band.top} to {end - 1} twice; nothing was changed")
        nbytes = memoryview(band.pixels).nbytes
        if nbytes != band.rows * self.row_bytes:
            raise PluginError(
                f"InvSR: rows {band.top} to {end - 1} of the result hold {nbytes} bytes, "
                f"expected {band.rows * self.row_bytes}; nothing was changed"
            )
        if self.layer is None:
            self.layer = self.layers.new(self.region, self.width, self.height)
        self.layers.write(self.layer, self.region, band.top, band.rows, self.width, band.pixels)
        self.rows[band.top : end] = b"\x01" * band.rows
        self.nbytes += nbytes


def check(received: Received, result: Result) -> Upscaled:
    """Refuse a result that is not exactly what was asked for: the image must not receive it."""
    region, width, height = received.region, received.width, received.height
    got = (result.width, result.height, result.channels, result.dtype)
    if got != (width, height, region.channels, region.dtype):
        raise PluginError(
            f"InvSR: the worker returned {got}, expected {(width, height, region.channels, region.dtype)}; "
            "nothing was changed"
        )
    expected_bytes = width * height * region.channels * sample_bytes(region.dtype)
    if received.nbytes != expected_bytes:
        raise PluginError(
            f"InvSR: the result holds {received.nbytes} bytes, expected {expected_bytes}; nothing was changed"
        )
    return Upscaled(region, width, height, received.layer, result.report)


MADE_BY = re.compile(r"^(?P<name>.*) \(InvSR (?:×(?P<scale>[0-9.e+]+)|detail)\)$")  # what result_name adds


def result_name(source: str, options: Options) -> str:
    """The result layer's name: the source's, with how InvSR made it, "photo (InvSR ×2)" or "photo (InvSR
    detail)". A source that is itself a result is named from its own source, the scales multiplied, so that
    names do not stack: "photo (InvSR ×2)" enlarged 2x again is "photo (InvSR ×4)"."""
    scale = 1.0 if options.output == "in-place" else options.scale
    made = MADE_BY.match(source)
    if made:
        source, scale = made["name"], scale * float(made["scale"] or 1.0)
    return f"{source} (InvSR {'detail' if round(scale, 3) == 1 else f'×{scale:.3g}'})"  # as GIMP writes a scale


SCALED_IMAGE = re.compile(r"^(?P<name>.*) × (?P<scale>[0-9.]+)$")  # what new_image_file names


def new_image_file(source: Path, scale: float, taken: set[str]) -> Path:
    """The file a new image of the results is named by, beside its source: "photo × 4.xcf" for photo.jpg at
    ×4 (GIMP names an image by its file, and saves it there). A source that is itself such an image gives
    its own source's name, the scales multiplied ("photo × 4" at ×2 is "photo × 8"); a name already on disk
    or in `taken` (other open images' files) gets a number, "photo × 4 (2).xcf", so that Save overwrites
    nothing."""
    name = source.stem
    made = SCALED_IMAGE.match(name)
    if made:
        name, scale = made["name"], scale * float(made["scale"])
    name = f"{name} × {scale:.3g}"
    candidate, number = source.with_name(f"{name}.xcf"), 1
    while candidate.exists() or str(candidate) in taken:
        number += 1
        candidate = source.with_name(f"{name} ({number}).xcf")
    return candidate


def record(upscaled: Upscaled, options: Options) -> str:
    """How the result was made, as ASCII JSON for a parasite: enough to make it again."""
    report = upscaled.report
    made = {
        "model": "InvSR (Yue et al., CVPR 2025) on SD-Turbo",
        "weights": report.get("weights"),
        "version": report.get("version"),
        "steps": report.get("steps"),
        "timesteps": report.get("timesteps"),
        "seed": report.get("seed"),
        "color_fix": report.get("color_fix"),
        "scale": options.scale,
        "tiling": {k: report.get("tiling", {}).get(k) for k in ("tile", "overlap")},
        "device": report.get("device"),
        "dtype": report.get("dtype"),
        "source_region": [upscaled.region.x, upscaled.region.y, upscaled.region.width, upscaled.region.height],
    }
    return json.dumps(made, ensure_ascii=True, sort_keys=True)
