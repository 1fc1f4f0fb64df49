"""Choosing where and in what precision to run: 'auto' means CUDA, then Apple's MPS, then the CPU.

Nothing else in the library names a backend; everything asks this module or the tensors it made.
"""

from __future__ import annotations

import contextlib
import sys

import torch

try:
    import resource
except ImportError:  # Windows has no getrusage; host peak memory is then not reported
    resource = None

from .errors import DeviceError
from .image_io import available_memory

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """'auto', 'cpu', 'mps', 'cuda' or 'cuda:N' -> a usable torch.device, or a DeviceError saying why not."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        return _check_cuda(device)
    if device.type == "mps" and not _mps_available():
        raise DeviceError("device 'mps' asked for, but this PyTorch has no working MPS backend (Apple GPUs only)")
    if device.type not in ("cpu", "mps"):
        raise DeviceError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def _check_cuda(device: torch.device) -> torch.device:
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {str(device)!r} asked for, but no CUDA GPU is usable here "
            f"(this PyTorch {'has no CUDA support' if torch.version.cuda is None else 'found no GPU'}); "
            "use --device cpu, or install a CUDA build of PyTorch"
        )
    count = torch.cuda.device_count()
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= count:
        raise DeviceError(f"device cuda:{index} asked for, but only {count} CUDA device(s) exist (0 to {count - 1})")
    return torch.device("cuda", index)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' picks bf16 (or fp16 where bf16 is unsupported) on a GPU and fp32 on the CPU."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    if name not in DTYPES:
        raise DeviceError(f"unknown dtype {name!r}: use auto, fp16, bf16 or fp32")
    return DTYPES[name]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings of a stage are that stage's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """Peak bytes: device memory allocated by PyTorch (GPU only) and the process's peak resident size."""
    host = None
    if resource is not None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        host = rss if sys.platform == "darwin" else rss * 1024  # macOS reports bytes, Linux kilobytes
    device_peak = None
    if device.type == "cuda":
        device_peak = torch.cuda.max_memory_allocated(device)
    elif device.type == "mps":
        device_peak = torch.mps.driver_allocated_memory()
    return {"device_bytes": device_peak, "host_peak_rss_bytes": host}


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give us, or None where that cannot be known."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "mps":
        return max(0, torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return available_memory()


def release_cached_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error, so a smaller retry can use them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


@contextlib.contextmanager
def cpu_threads(count: int):
    """Run the block with `count` PyTorch CPU threads, and give the caller's count back after, even on an
    error. CPU kernels split their sums by thread, so results compared byte for byte need the same count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


# Out-of-memory failures that reach Python as a plain RuntimeError, not torch.OutOfMemoryError: MPS in
# some PyTorch versions, and cuBLAS/cuDNN failing to allocate their workspaces on a full GPU.
_OUT_OF_MEMORY_TEXTS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether a failure means the device had too little memory (so smaller batches or tiles may work)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _OUT_OF_MEMORY_TEXTS)
