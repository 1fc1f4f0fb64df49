"""The worker's replies as the client hands them on: frozen dataclasses, each made by `from_dict` from a
message's header fields (docs/PROTOCOL.md names them).

Both sides of the protocol allow extra fields: `from_dict` keeps the fields it knows and ignores the rest,
and a field a worker leaves out takes its default. Standard library only, like the rest of the wire.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import BadMessage


def _known(cls, fields: dict) -> dict:
    """The fields of a reply that `cls` names: a newer worker may send more."""
    if not isinstance(fields, dict):
        raise TypeError(f"a {cls.__name__} reply is an object of named fields, got {type(fields).__name__}")
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: value for name, value in fields.items() if name in names}


@dataclasses.dataclass(frozen=True)
class ModelState:
    """What the worker's model is doing: `state` is "not loaded", "loading", "compiling", "ready", "failed" or
    "unavailable" (with --ray ADDRESS: the cluster's head is lost; `error` says so).

    Ready: `version` (the library's), `device`, `dtype`, `weights` ({source, sd_turbo, noise_predictor,
    tiny_random}), `load_seconds`, with --compile `compile_seconds` or `compile_error`, with --ray `actors`
    (each {name, state, device, ...}). Failed, unavailable: `code` (an error code), `error` (why) and `details`."""

    state: str = "not loaded"
    version: str | None = None
    device: str | None = None
    dtype: str | None = None
    weights: dict[str, Any] = dataclasses.field(default_factory=dict)
    load_seconds: float | None = None
    compile_seconds: float | None = None
    compile_error: str | None = None
    code: str | None = None
    error: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)  # the error's (weights_missing: `download`)
    actors: tuple[dict[str, Any], ...] = ()

    @property
    def tiny_random(self) -> bool:
        """Whether the worker runs small random weights (tests): its results are no real upscale."""
        return bool(self.weights.get("tiny_random"))

    @classmethod
    def from_dict(cls, fields: dict) -> ModelState:
        known = _known(cls, fields)
        details = known.get("details") if isinstance(known.get("details"), dict) else {}
        return cls(**dict(known, actors=tuple(known.get("actors") or ()), details=details))

    def to_dict(self) -> dict:
        """As the worker sends it: the fields it gave (those left out are None here, and left out again)."""
        return {name: value for name, value in dataclasses.asdict(self).items() if value not in (None, {}, ())}


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What the worker can do: `steps` and `scale` are (least, most)."""

    operations: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    channels: tuple[int, ...] = ()
    color_fix: tuple[str, ...] = ()
    steps: tuple[int, int] | None = None
    scale: tuple[float, float] | None = None
    curve: bool = False

    @classmethod
    def from_dict(cls, fields: dict) -> Capabilities:
        known = _known(cls, fields)
        return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in known.items()})


@dataclasses.dataclass(frozen=True)
class Limits:
    """The worker's limits: work pixels (the x4 result or the output, the larger), input pixels, bytes of
    one message (a client refuses a bigger pixel frame itself: the worker would drop it without a word), and
    jobs queued. None where a worker does not say."""

    max_pixels: int | None = None
    max_input_pixels: int | None = None
    max_message_bytes: int | None = None
    queue_length: int | None = None

    @classmethod
    def from_dict(cls, fields: dict) -> Limits:
        return cls(**_known(cls, fields))


@dataclasses.dataclass(frozen=True)
class Hello:
    """The `hello` reply: who the worker is, its model's state, what it can do and its limits."""

    protocol: str
    worker_version: str
    pid: int | None = None
    model: ModelState = ModelState()
    capabilities: Capabilities = Capabilities()
    limits: Limits = Limits()

    @classmethod
    def from_dict(cls, fields: dict) -> Hello:
        known = _known(cls, fields)
        return cls(
            protocol=str(known.get("protocol", "")),
            worker_version=str(known.get("worker_version", "")),
            pid=known.get("pid"),
            model=ModelState.from_dict(known.get("model") or {}),
            capabilities=Capabilities.from_dict(known.get("capabilities") or {}),
            limits=Limits.from_dict(known.get("limits") or {}),
        )


@dataclasses.dataclass(frozen=True)
class Progress:
    """One `progress` message of a job: `stage` is "loading model", "compiling", "tiles" or "finish"; `done`
    of `total` (tiles + 1; 0 while loading or compiling); `elapsed` and `eta` in seconds (eta None while
    unknown)."""

    stage: str
    done: int = 0
    total: int = 0
    elapsed: float | None = None
    eta: float | None = None
    job: str | None = None

    @classmethod
    def from_dict(cls, fields: dict) -> Progress:
        known = _known(cls, fields)
        return cls(**dict(known, stage=str(known.get("stage", ""))))


@dataclasses.dataclass(frozen=True)
class Band:
    """One `band` of a result sent in bands: rows [top, top + rows) of the result, `width` x `channels`
    samples of `dtype` a row, in `pixels` (the received frame itself); `band` counts from 0."""

    band: int
    top: int
    rows: int
    width: int
    channels: int
    dtype: str
    pixels: memoryview = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, fields: dict, pixels) -> Band:
        known = _known(cls, fields)
        missing = [name for name in ("band", "top", "rows", "width", "channels", "dtype") if name not in known]
        if missing:
            raise BadMessage(f"the worker sent a band without {', '.join(missing)}")
        return cls(**dict(known, pixels=memoryview(pixels)))


@dataclasses.dataclass(frozen=True)
class Result:
    """An upscale's `result`: the geometry of `pixels` (the received frame itself, not a copy: results may
    be gigabytes; empty where the result came in bands), and `report`, what was done (as `invsr upscale
    --report` writes it)."""

    width: int
    height: int
    channels: int
    dtype: str
    pixels: memoryview = dataclasses.field(repr=False, compare=False)
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    job: str | None = None

    @classmethod
    def from_dict(cls, fields: dict, pixels) -> Result:
        """From the result's header fields and its one buffer."""
        known = _known(cls, fields)
        missing = [name for name in ("width", "height", "channels", "dtype") if name not in known]
        if missing:
            raise BadMessage(f"the worker sent a result without {', '.join(missing)}")
        return cls(**dict(known, pixels=memoryview(pixels), report=known.get("report") or {}))
