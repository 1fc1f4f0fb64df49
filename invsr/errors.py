"""The errors the library raises on purpose. They are defined once, in invsr.wire.errors, so that an
error that crosses the wire (from a worker to its client) arrives as the same class with the same code."""

from invsr.wire.errors import (  # noqa: F401  (re-exported for the library's modules)
    Cancelled,
    CheckpointError,
    DeviceError,
    ImageFileError,
    InvalidImage,
    InvalidRequest,
    InvSRError,
    OutOfMemory,
    UsageError,
    WeightsMissing,
)
