"""What a run will make and cost, before it starts: the scale for the target the user gave (a scale, a
width, a height or a long edge in pixels), the output size, the tiles the worker will cut and the time
they take at the pace the worker last showed.

Standard library only. The tile count follows the library's tiling (invsr/tiles: grid.plan_axis and the
driver's padding); tests/test_gimp_dialog_sizing.py checks that it does.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from invsr_wire.contract import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    MAX_SCALE,
    MAX_TILE,
    MIN_SCALE,
    MODEL_SCALE,
    TILE_MULTIPLE,
)

from .errors import PluginError

SIZE_BY = ("scale", "width", "height", "long-edge")
# The tile sizes offered: multiples of TILE_MULTIPLE, each about 1.5x the last, up to the largest allowed.
TILE_SIZES = tuple(size for size in (64, 96, 128, 192, 256, 384, 512, 768, 1024) if size <= MAX_TILE)
TRAINING_SIDE = DEFAULT_TILE  # shorter sides are padded to the noise predictor's training size (or the tile)
LARGE_PIXELS = 100_000_000  # a result over this, or over LARGE_SECONDS of estimate, is asked about first
LARGE_SECONDS = 600.0
# Before any upscale or preview has timed this computer, a job of more tiles than this is asked about too: its
# time may be a minute on a fast GPU or hours on a CPU (an 8-megapixel photo is about 600 tiles).
UNTIMED_TILES = 100
NO_BREAK = "\u00a0"  # a space a line is never wrapped at
PACE_FILE = "invsr-pace.json"  # in GIMP's folder: the worker's last measured seconds per pixel of tile


@dataclasses.dataclass(frozen=True)
class Box:
    """A region to upscale, in image coordinates."""

    x: int
    y: int
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class Job:
    """The sizes a run works on: the image's, and each region's (each layer, or the selection in it)."""

    image_width: int
    image_height: int
    regions: tuple[Box, ...]
    pixel_bytes: int = 4  # the deepest layer's bytes per pixel (channels x bytes per component)

    def reference(self, output: str) -> tuple[int, int]:
        """The (width, height) a target in pixels refers to: the image's when the image is scaled, else
        the regions' bounding box (what a new image holds)."""
        if output == "scale-image":
            return self.image_width, self.image_height
        left, top = min(b.x for b in self.regions), min(b.y for b in self.regions)
        right = max(b.x + b.width for b in self.regions)
        bottom = max(b.y + b.height for b in self.regions)
        return right - left, bottom - top

    def scale(self, output: str, size_by: str, scale: float, pixels: int) -> float:
        """The enlargement that gives what the user asked for; 1 when the output keeps the size."""
        if output == "in-place":
            return 1.0
        if size_by == "scale":
            return scale
        width, height = self.reference(output)
        what, side = {"width": ("width", width), "height": ("height", height)}.get(
            size_by, ("long edge", max(width, height))
        )
        enlargement = pixels / side
        if not MIN_SCALE <= enlargement <= MAX_SCALE:
            raise PluginError(
                f"A {what} of {pixels:,} pixels is {enlargement:.3g} times the {side:,} pixels there are, and InvSR "
                f"enlarges 1 to 16 times. Give a {what} from {math.ceil(side * MIN_SCALE):,} to "
                f"{math.floor(side * MAX_SCALE):,} pixels."
            )
        return enlargement

    def estimate(self, output: str, scale: float, tile: int, pace: float | None) -> Estimate:
        """The result's size, the tiles and the time they take at `pace` seconds per pixel of tile."""
        width, height = self.reference(output)
        plans = [tile_plan(box.width, box.height, tile or DEFAULT_TILE) for box in self.regions]
        area = sum(a for _, a in plans)
        seconds = None if pace is None else area * pace
        tiles = sum(n for n, _ in plans)
        return Estimate(round(width * scale), round(height * scale), tiles, seconds, scale, self.pixel_bytes)


@dataclasses.dataclass(frozen=True)
class Estimate:
    width: int
    height: int
    tiles: int
    seconds: float | None  # None: the worker's pace is not known yet
    scale: float = MODEL_SCALE
    pixel_bytes: int = 4  # per pixel of the result, at the layers' depth (RGBA 8-bit: 4)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def is_large(self) -> bool:
        if self.seconds is None and self.tiles > UNTIMED_TILES:
            return True
        return self.width * self.height > LARGE_PIXELS or (self.seconds or 0) > LARGE_SECONDS

    @property
    def memory_bytes(self) -> int:
        """What the result takes in GIMP's memory (or its swap, or an XCF file): its pixels at the layers' depth."""
        return self.width * self.height * self.pixel_bytes

    def question(self) -> str:
        """Why the job is asked about, for the question before it: its size, time, and what it needs."""
        return cost_question(self.tiles, self.seconds, self.memory_bytes)

    def work_text(self) -> str:
        """The work alone, e.g. "48 tiles, about 2 min"."""
        return work_text(self.tiles, self.seconds)

    def size_text(self) -> str:
        """The result's size, e.g. "3,200 × 2,400 pixels (7.68 megapixels)"."""
        size = f"{self.width:,} × {self.height:,} pixels"
        return f"{size} ({megapixels(self.megapixels)})" if self.megapixels >= 0.1 else size

    def text(self) -> str:
        """As the dialog shows it, e.g. "3,200 × 2,400 pixels (7.68 megapixels), 48 tiles, about 2 min"."""
        beyond = f"; beyond ×{MODEL_SCALE}, InvSR's result is enlarged by plain resampling" if self.beyond_model else ""
        return f"{self.size_text()}, {tiles_text(self.tiles)}, {time_text(self.seconds)}{beyond}"

    @property
    def beyond_model(self) -> bool:
        """Whether the result is larger than the model makes: its ×4, enlarged further without new detail."""
        return self.scale > MODEL_SCALE + 1e-9


@dataclasses.dataclass(frozen=True)
class BatchEstimate:
    """What a run over several images makes and costs: each image's Estimate, summed. It answers what the
    dialog, the question before a large job and the progress bar ask of an Estimate."""

    estimates: tuple[Estimate, ...]

    @property
    def tiles(self) -> int:
        return sum(estimate.tiles for estimate in self.estimates)

    @property
    def seconds(self) -> float | None:
        times = [estimate.seconds for estimate in self.estimates]
        return None if None in times else sum(times)

    @property
    def memory_bytes(self) -> int:
        return sum(estimate.memory_bytes for estimate in self.estimates)

    def is_large(self) -> bool:
        """One image that is large on its own, or all of them together: too many tiles, or too long."""
        if any(estimate.is_large() for estimate in self.estimates):
            return True
        return self.tiles > UNTIMED_TILES if self.seconds is None else self.seconds > LARGE_SECONDS

    def question(self) -> str:
        return cost_question(self.tiles, self.seconds, self.memory_bytes)

    def work_text(self) -> str:
        return work_text(self.tiles, self.seconds)

    def text(self) -> str:
        """E.g. "3 images, 48 tiles, about 2 min; the largest 6,400 × 4,800 pixels (30.7 megapixels)"."""
        largest = max(self.estimates, key=lambda estimate: estimate.width * estimate.height)
        images = images_text(len(self.estimates))
        return f"{images}, {tiles_text(self.tiles)}, {time_text(self.seconds)}; the largest {largest.size_text()}"


def cost_question(tiles: int, seconds: float | None, memory_bytes: int) -> str:
    """What the question before a large job says of its time and of the memory its results take."""
    time = (
        f"Its time is not known yet (no preview or upscale has run on this computer): {work_text(tiles, None)} "
        "take about a minute on a fast GPU, hours on a CPU."
        if seconds is None
        else f"It takes {duration(seconds)} at the pace the worker last showed."
    )
    return f"{time} The result needs {byte_size(memory_bytes)} of memory in GIMP, and as much disk to save it."


def images_text(count: int) -> str:
    return "1 image" if count == 1 else f"{count:,} images"


def tiles_text(count: int) -> str:
    return "1 tile" if count == 1 else f"{count:,} tiles"


def time_text(seconds: float | None) -> str:
    return "time known after a preview or the first upscale" if seconds is None else duration(seconds)


def work_text(tiles: int, seconds: float | None) -> str:
    """The work alone, e.g. "48 tiles, about 2 min"."""
    return tiles_text(tiles) if seconds is None else f"{tiles_text(tiles)}, {duration(seconds)}"


def megapixels(count: float) -> str:
    """As people write it: "0.3 megapixels", "7.68 megapixels", "6,140 megapixels" (never 6.14e+03)."""
    return f"{count:.3g} megapixels" if count < 100 else f"{count:,.0f} megapixels"


def byte_size(count: int) -> str:
    """Bytes as people read them: "61 MB", "2.3 GB", "11 GB"."""
    if count < 1e9:
        return f"{max(1, round(count / 1e6))} MB"
    return f"{count / 1e9:.2g} GB" if count < 10e9 else f"{count / 1e9:,.0f} GB"


def duration(seconds: float) -> str:
    """A time to wait, as a person says it: "about 40 s", "about 8 min", "about 1 h 20 min". The spaces
    inside do not break, so that a wrapped line never leaves "about 3" above "h 11 min"."""
    if seconds < 60:
        text = f"about {max(1, round(seconds))} s"
    elif (minutes := round(seconds / 60)) < 60:
        text = f"about {minutes} min"
    else:
        text = f"about {minutes // 60} h {minutes % 60} min" if minutes % 60 else f"about {minutes // 60} h"
    return text.replace(" ", NO_BREAK)


def tile_plan(width: int, height: int, tile: int) -> tuple[int, int]:
    """(tiles, pixels the networks process) for an input of this size, as the library tiles it."""
    overlap = min(DEFAULT_OVERLAP, (tile - TILE_MULTIPLE) // 2)
    rows, cols = (_axis(_padded(side, tile), tile, overlap) for side in (height, width))
    return len(rows) * len(cols), sum(rows) * sum(cols)


def _padded(side: int, tile: int) -> int:
    side = max(side, min(TRAINING_SIDE, tile))
    return -(-side // TILE_MULTIPLE) * TILE_MULTIPLE


def _axis(length: int, tile: int, overlap: int) -> list[int]:
    """The tiles' sizes along one axis: full tiles at a stride of tile - overlap, then one just large
    enough to reach the end."""
    overlap += overlap % 2
    if length <= tile:
        return [length]
    count = math.ceil((length - overlap) / (tile - overlap))
    covered = (count - 2) * (tile - overlap) + tile  # the end of the last full tile
    rest = length - covered
    last = min(tile, -(-(rest + overlap) // TILE_MULTIPLE) * TILE_MULTIPLE)
    return [tile] * (count - 1) + [last]


def read_pace(folder: Path) -> float | None:
    """The worker's last measured seconds per pixel of tile, or None before the first upscale."""
    try:
        pace = float(json.loads((folder / PACE_FILE).read_text())["seconds_per_pixel"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pace if math.isfinite(pace) and pace > 0 else None


def write_pace(folder: Path, reports: list[dict]) -> None:
    """Remember the pace of the jobs just done (their networks' seconds per pixel of tile processed)."""
    seconds = pixels = 0.0
    for report in reports:
        width, height = report.get("input_size") or (0, 0)
        seconds += sum((report.get("seconds") or {}).values())
        pixels += width * height * (report.get("tiling") or {}).get("work_ratio", 1.0)
    if seconds > 0 and pixels > 0:
        try:
            (folder / PACE_FILE).write_text(json.dumps({"seconds_per_pixel": seconds / pixels}))
        except OSError:
            pass  # only the next estimate is lost
