"""The dialog's preview: which part of the layer it shows, and the worker upscaling it in the background.

The worker upscales a crop at least one tile wide, so the model sees the context it sees in the real run
(it works in tiles of the Tile setting, 128 input pixels when automatic), and the dialog shows the centre
of the result, at most DISPLAY pixels square, at 100 %: one pixel of the result per pixel of the screen.

Standard library and flow only, no Gtk: `PreviewJobs` runs the jobs on its own thread (a ZeroMQ socket
belongs to one thread) and hands each outcome to `post`, which the dialog sets to GLib.idle_add so that
the outcome reaches GTK on GTK's thread.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time

from invsr_wire.contract import DEFAULT_TILE, scaled_side
from invsr_wire.errors import Cancelled, InvSRError
from invsr_wire.replies import Progress, Result

from .errors import PluginError
from .flow import Options

DISPLAY = 256  # the largest side shown, in screen pixels
MOVE_STEP = 16  # input pixels an arrow key moves the preview's area (a tile multiple)


@dataclasses.dataclass(frozen=True)
class Area:
    """A rectangle in the layer's own pixel coordinates."""

    x: int
    y: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2


@dataclasses.dataclass(frozen=True)
class Crop:
    """What one preview upscales and shows: `sent` (the pixels the worker gets, in the layer), and `shown`,
    the part of the worker's result that the dialog shows, in the result's pixels."""

    sent: Area
    scale: float
    shown: Area

    @property
    def shown_source(self) -> Area:
        """The part of the layer that `shown` enlarges (for the plain enlargement beside it)."""
        x, y = self.shown.x / self.scale, self.shown.y / self.scale
        width, height = self.shown.width / self.scale, self.shown.height / self.scale
        return Area(self.sent.x + round(x), self.sent.y + round(y), max(1, round(width)), max(1, round(height)))


def crop_at(region: Area, centre: tuple[float, float], scale: float, tile: int) -> Crop:
    """The preview around `centre` (layer coordinates), kept inside `region` (the layer, or the selection
    in it): at least a tile, and enough input for DISPLAY pixels of result, on each side that has it."""
    side = max(tile or DEFAULT_TILE, math.ceil(DISPLAY / scale))
    width, height = min(side, region.width), min(side, region.height)
    x = _clamp(round(centre[0] - width / 2), region.x, region.x + region.width - width)
    y = _clamp(round(centre[1] - height / 2), region.y, region.y + region.height - height)
    sent = Area(x, y, width, height)
    out_width, out_height = scaled_side(width, scale), scaled_side(height, scale)
    shown_width, shown_height = min(DISPLAY, out_width), min(DISPLAY, out_height)
    shown = Area((out_width - shown_width) // 2, (out_height - shown_height) // 2, shown_width, shown_height)
    return Crop(sent, scale, shown)


def moved(region: Area, centre: tuple[float, float], dx: int, dy: int) -> tuple[float, float]:
    """`centre` moved by (dx, dy) input pixels, kept inside `region`."""
    x = min(max(centre[0] + dx, region.x), region.x + region.width)
    y = min(max(centre[1] + dy, region.y), region.y + region.height)
    return x, y


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


@dataclasses.dataclass(frozen=True)
class Request:
    """One preview to make: the crop, its pixels as the layer gave them, and the dialog's settings."""

    crop: Crop
    pixels: bytes
    channels: int  # 3 or 4, 8 bits each, in sRGB: what the screen shows
    options: Options


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the dialog shows for a request: the result's pixels (the shown part), or a text only."""

    request: Request
    text: str
    pixels: bytes | None = None  # rows of request.crop.shown, request.channels per pixel
    busy: bool = False  # work goes on (the text says which)
    report: dict | None = None  # the worker's report of a preview made: its timing is the pace of a run


class PreviewJobs:
    """Runs the latest preview request on a thread of its own; a newer request cancels the one running."""

    def __init__(self, post, connect, on_outcome):
        """`post(fn, *args)` calls fn on the dialog's thread; `connect(options, on_status)` gives a client of
        the worker (flow.connect); `on_outcome(Outcome)` shows an outcome, called on the dialog's thread."""
        self.post, self.connect, self.on_outcome = post, connect, on_outcome
        self.wanted: Request | None = None  # the next to make, taken by the thread
        self.latest: Request | None = None  # the last asked for: the only one whose outcomes are shown
        self.closing = False
        self.changed = threading.Condition()
        self.client, self.server = None, None  # the worker's client, for the Worker setting `server`
        self.thread = threading.Thread(target=self._run, name="invsr-preview", daemon=True)
        self.thread.start()

    def ask(self, request: Request) -> None:
        with self.changed:
            self.wanted = self.latest = request
            self.changed.notify()

    def close(self) -> None:
        """Stop: a job running is cancelled at the client's next heartbeat; nothing more is shown."""
        with self.changed:
            self.closing = True
            self.changed.notify()

    def _run(self) -> None:
        try:
            while (request := self._next()) is not None:
                self._serve(request)
        finally:
            self._disconnect()

    def _next(self) -> Request | None:
        with self.changed:
            while self.wanted is None and not self.closing:
                self.changed.wait()
            request, self.wanted = self.wanted, None
            return None if self.closing else request

    def _serve(self, request: Request) -> None:
        started = time.monotonic()
        try:
            client = self._client_for(request)
            result = client.upscale(
                request.pixels,
                request.crop.sent.width,
                request.crop.sent.height,
                request.channels,
                "u8",
                request.options.worker_request(),
                on_progress=lambda progress: self._tell(request, progress_text(progress), busy=True),
                should_cancel=self._superseded,
            )
            pixels = shown_pixels(request, result)
        except Cancelled:
            return
        except (InvSRError, PluginError) as error:
            self._disconnect()  # the next preview reaches (or starts) the worker afresh
            self._tell(request, failure_text(error))
            return
        except Exception as error:  # a bug: said in the dialog, not a thread dead behind "upscaling..."
            self._disconnect()
            self._tell(request, f"Preview failed: {type(error).__name__}: {error}")
            return
        self._tell(request, done_text(request.crop, time.monotonic() - started), pixels, report=result.report)

    def _client_for(self, request: Request):
        """The client of the worker the request's Worker setting names: kept while that stays the same."""
        if self.client is not None and self.server == request.options.server:
            return self.client
        self._disconnect()
        self._tell(request, "Preview: reaching the worker...", busy=True)
        self.client = self.connect(request.options, lambda _: self._tell(request, STARTING, busy=True))
        self.server = request.options.server
        return self.client

    def _disconnect(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = self.server = None

    def _superseded(self) -> bool:
        with self.changed:
            return self.closing or self.wanted is not None

    def _tell(self, request: Request, text: str, pixels: bytes | None = None, busy: bool = False, report=None) -> None:
        if not self._superseded():
            self.post(self._deliver, Outcome(request, text, pixels, busy, report))

    def _deliver(self, outcome: Outcome) -> bool:
        """On the dialog's thread: show the outcome unless the dialog closed or asked again meanwhile."""
        with self.changed:
            current = outcome.request is self.latest and not self.closing
        if current:
            self.on_outcome(outcome)
        return False  # as a GLib idle callback: once


STARTING = "Preview: starting the worker (the first time after a restart: up to a minute)..."


def shown_pixels(request: Request, result: Result) -> bytes:
    """The rows of `crop.shown` out of the worker's result (result width x height x channels, u8)."""
    shown, channels = request.crop.shown, request.channels
    expected = (
        scaled_side(request.crop.sent.width, request.crop.scale),
        scaled_side(request.crop.sent.height, request.crop.scale),
    )
    data = result.pixels.cast("B")
    size = (result.width, result.height, result.channels)
    if size != (*expected, channels) or data.nbytes != expected[0] * expected[1] * channels:
        raise PluginError(f"Preview: the worker returned a result of another size than {expected}; try again")
    row = expected[0] * channels
    return b"".join(
        data[(shown.y + y) * row + shown.x * channels : (shown.y + y) * row + (shown.x + shown.width) * channels]
        for y in range(shown.height)
    )


def progress_text(progress: Progress) -> str:
    if progress.stage == "loading model":
        return "Preview: the worker is loading the model (once, after it starts)..."
    if progress.stage == "compiling":
        return "Preview: the worker is compiling the networks for this tile size (minutes, once)..."
    return "Preview: upscaling..."


def done_text(crop: Crop, seconds: float) -> str:
    source = crop.shown_source
    return (
        f"Preview of {source.width} × {source.height} pixels at {source.x}, {source.y} of the layer, "
        f"at {crop.scale:.3g}× and 100 %, made in {seconds:.1f} s"
    )


def failure_text(error: Exception) -> str:
    if isinstance(error, PluginError):
        return str(error)
    if error.code == "worker_lost":
        return f"Preview: the worker stopped answering ({error}). Change a setting to try again."
    return f"Preview: {error}"
