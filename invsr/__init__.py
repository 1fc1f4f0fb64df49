"""InvSR super-resolution (Yue et al., CVPR 2025) on SD-Turbo: library, command line and worker core.

    from invsr import InvSRPipeline, UpscaleRequest, locate_weights
    pipeline = InvSRPipeline.load(locate_weights())
    result = pipeline.upscale(pixels, UpscaleRequest(seed=1))

`import invsr` is cheap: the names below load their modules (and PyTorch) on first use.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "InvSRPipeline": "pipeline",
    "UpscaleResult": "pipeline",
    "UpscaleRequest": "request",
    "Progress": "progress",
    "locate_weights": ("weights", "locate"),
    "WeightPaths": "weights",
    "InvSRError": "errors",
    "available_memory": "image_io",  # the host memory a new allocation can have: what a result may take
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'invsr' has no attribute {name!r}")
    import importlib

    module, attribute = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
    return getattr(importlib.import_module(f".{module}", __name__), attribute)


__all__ = list(_EXPORTS)
