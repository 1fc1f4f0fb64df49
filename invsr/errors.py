"""Every error the library raises on purpose, one class per kind under one base.

Each carries a short machine-readable `code` (the worker sends it over the wire) and a message written
for the person who has to act on it: what went wrong and what to do.
"""


class InvSRError(Exception):
    """Base of all deliberate errors. `code` names the kind for programs; str(error) is for people."""

    code = "internal"


class UsageError(InvSRError):
    """The command line asks for something that cannot be done as written (the `invsr` command exits 2)."""

    code = "usage"


class InvalidRequest(InvSRError):
    """A parameter of an upscale (steps, timesteps, colour fix, seed, scale, ...) is not acceptable."""

    code = "invalid_request"


class InvalidImage(InvSRError):
    """The input pixels cannot be upscaled as given (shape, dtype, values, size)."""

    code = "invalid_image"


class ImageFileError(InvSRError):
    """An image file is missing, unreadable, corrupt, or of a format we cannot write."""

    code = "image_file"


class WeightsMissing(InvSRError):
    """Model files are not where we looked; the message names what, where, and the command that fixes it."""

    code = "weights_missing"


class CheckpointError(InvSRError):
    """A weights file is present but unusable: corrupt, truncated, unsafe, or of the wrong layout."""

    code = "bad_checkpoint"


class DeviceError(InvSRError):
    """The requested device or dtype does not exist or is not usable on this machine."""

    code = "device"


class OutOfMemory(InvSRError):
    """The device ran out of memory for this job."""

    code = "out_of_memory"


class Cancelled(InvSRError):
    """The caller asked to stop; raised between units of work, never in the middle of one."""

    code = "cancelled"
