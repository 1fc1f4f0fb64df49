"""One upscale's parameters: `UpscaleRequest`, defined in the wire package (invsr/wire/request.py) so that
the library, the worker and every client (the plug-in, in GIMP's Python) validate the same object."""

from invsr.wire.request import UpscaleRequest

__all__ = ["UpscaleRequest"]
