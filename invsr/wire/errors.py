"""Every deliberate error of InvSR, in the library, the worker and its clients: one class per kind, one base.

Each class carries a short machine-readable `code`. The worker sends the code over the wire, and the
client raises the class of that code again (`error_for`), so a caller catches the same class whether the
job ran in its own process or in a worker. `str(error)` is written for the person who has to act on it:
what went wrong and what to do. `details` holds machine-readable extras (a log's tail, a limit).
"""

from __future__ import annotations


class InvSRError(Exception):
    """Base of all deliberate errors. `code` names the kind for programs; str(error) is for people."""

    code = "internal"

    def __init__(self, message: str = "", details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


# What a request or its image can get wrong (the library's own checks, also run by the worker on arrival).


class UsageError(InvSRError):
    """The command line asks for something that cannot be done as written (exit 2)."""

    code = "usage"


class InvalidRequest(InvSRError):
    """A parameter of an upscale (steps, scale, tile...) is not acceptable."""

    code = "invalid_request"


class InvalidImage(InvSRError):
    """The pixels cannot be upscaled as given (shape, dtype, values, size)."""

    code = "invalid_image"

    @classmethod
    def non_finite(cls, count: int, x: int, y: int) -> InvalidImage:
        """The one wording for float pixels holding NaN or infinity, whether the library or the worker finds them."""
        return cls(
            f"the image holds {count} NaN or infinite value{'s' if count > 1 else ''} (the first at x {x}, y {y}), "
            "which cannot be upscaled: give those pixels finite values (paint over or replace them) and try again"
        )


class ImageFileError(InvSRError):
    """An image file is missing, unreadable, corrupt, or of a format we cannot write."""

    code = "image_file"


class TooLarge(InvSRError):
    """A frame or an image over a worker's limits."""

    code = "too_large"


# The model and the device.


class WeightsMissing(InvSRError):
    """Model files are not where we looked; the message says where and what fixes it."""

    code = "weights_missing"


class CheckpointError(InvSRError):
    """A weights file is present but unusable: corrupt, unsafe, or of the wrong layout."""

    code = "bad_checkpoint"


class DeviceError(InvSRError):
    """The requested device or dtype does not exist or is not usable here."""

    code = "device"


class OutOfMemory(InvSRError):
    """The device ran out of memory for this job."""

    code = "out_of_memory"


class Cancelled(InvSRError):
    """The job was cancelled; raised between units of work, never in the middle of one."""

    code = "cancelled"


# The conversation with a worker.


class BadMessage(InvSRError):
    """Frames or a header that do not follow the protocol."""

    code = "bad_message"


class Unauthorized(InvSRError):
    """A missing or wrong signature: the client's secret is not the worker's."""

    code = "unauthorized"


class VersionMismatch(InvSRError):
    """Another major protocol version."""

    code = "protocol_version"


class UnknownOperation(InvSRError):
    """A request type the worker does not know."""

    code = "unknown_operation"


class Busy(InvSRError):
    """The worker's job queue is full."""

    code = "busy"


class ShuttingDown(InvSRError):
    """The worker is stopping and takes no new jobs."""

    code = "shutting_down"


class UnknownJob(InvSRError):
    """A job id the worker does not know (finished, never sent, or not yours)."""

    code = "unknown_job"


class WorkerLost(InvSRError):
    """The worker stopped answering (it died, froze, or never started)."""

    code = "worker_lost"


class Internal(InvSRError):
    """An unexpected failure; the log has the details."""

    code = "internal"


ERRORS = {kind.code: kind for kind in InvSRError.__subclasses__()}  # the kinds above, by code


def error_for(code, message: str, details: dict | None = None) -> InvSRError:
    """The error of a code received from a peer (an unknown code is an `Internal` error)."""
    return ERRORS.get(code, Internal)(message, details if isinstance(details, dict) else None)
