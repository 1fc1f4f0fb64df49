"""torch.compile's artefacts kept in our cache folder, so that a machine compiles the networks once, not at every
start of a compiled worker.

PyTorch keeps what it compiles (Inductor's kernels, AOTAutograd's graphs, Triton's binaries) in its own caches
under TORCHINDUCTOR_CACHE_DIR, by default in /tmp, which a reboot or a cleaner empties. After a first compile
we save PyTorch's portable bundle of them (`torch.compiler.save_cache_artifacts`) into our cache folder
(prompt.cache_dir(): INVSR_CACHE, else $XDG_CACHE_HOME/invsr), in a file named by everything that decides
what was compiled: the versions of torch, Triton and invsr, the device (its name and compute capability, or a
CPU's architecture and vector instructions), the dtype, the memory layout, the tile and batch, and the shapes of
the networks' parameters. A later start with the same key loads it (`load_cache_artifacts`) before compiling,
so compiling finds every kernel built; any other key names another file, so nothing stale is ever loaded.
TorchDynamo still traces the networks at each start: that part is not cached.

A bundle holds compiled code that the process runs, like PyTorch's own caches: it is written owner-only, in the
user's own folder, and read only from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from pathlib import Path

import torch

from invsr.wire.atomic import write_atomically

from . import __version__
from .devices import DTYPE_NAMES
from .prompt import cache_dir

log = logging.getLogger("invsr.compile_cache")
FOLDER = "compiled"  # inside the cache folder
MAGIC = b"invsr-compiled-1\n"  # then the key as one line of JSON, then PyTorch's bundle


def compile_key(networks, device: torch.device, dtype: torch.dtype, tile: int, batch: int, channels_last: bool):
    """What decides the compiled code, as a JSON-ready dict: another value of any field compiles anew."""
    return {
        "invsr": __version__,
        "torch": torch.__version__,
        "triton": _triton_version() if device.type == "cuda" else None,
        "device": describe_for_compiling(device),
        "dtype": DTYPE_NAMES[dtype],
        "channels_last": channels_last,
        "tile": tile,
        "batch": batch,
        "networks": networks_digest(networks),
    }


def describe_for_compiling(device: torch.device) -> str:
    """The device as compiled code depends on it: a GPU's name, compute capability and CUDA version; a CPU's
    architecture and the vector instructions PyTorch picks for it."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"cuda {torch.cuda.get_device_name(device)} sm{major}{minor} cuda{torch.version.cuda}"
    if device.type == "cpu":
        return f"cpu {platform.machine()} {torch.backends.cpu.get_cpu_capability()}"
    return device.type


def networks_digest(networks) -> str:
    """The names, shapes and dtypes of the networks' parameters and buffers: the tiny test networks and the full
    ones, or another layout of the same, have other compiled code (the values do not matter)."""
    described = [
        (index, name, tuple(tensor.shape), str(tensor.dtype))
        for index, network in enumerate(networks)
        for name, tensor in (*network.named_parameters(), *network.named_buffers())
    ]
    return hashlib.sha256(repr(described).encode()).hexdigest()[:32]


def bundle_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / FOLDER / f"torch-compile-{digest}.bin"


def load(key: dict) -> bool:
    """Hand PyTorch the bundle saved for this key, if there is one; whether it did. A damaged or foreign file is
    ignored (the networks then compile as on a first start, and `save` replaces it)."""
    path = bundle_path(key)
    try:
        data = path.read_bytes()
    except OSError:
        return False
    bundle = _bundle_of(data, key)
    if bundle is None:
        log.warning("ignoring %s: not a bundle of compiled networks for this key", path)
        return False
    try:
        torch.compiler.load_cache_artifacts(bundle)
    except Exception as error:  # PyTorch's format is its own: whatever fails, compiling anew is the answer
        log.warning("ignoring %s, which PyTorch could not load (%s: %s)", path, type(error).__name__, error)
        return False
    return True


def save(key: dict) -> Path | None:
    """Write what this process has compiled so far as the bundle of this key; its path, or None when there was
    nothing to save or it could not be written (then the next start compiles again, and says nothing worse)."""
    artefacts = torch.compiler.save_cache_artifacts()
    if artefacts is None or not artefacts[0]:
        return None
    path = bundle_path(key)
    data = MAGIC + json.dumps(key, sort_keys=True).encode() + b"\n" + artefacts[0]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, mode=0o600)  # a concurrent start reads the old bundle or the whole new one
    except OSError as error:
        log.warning("could not keep the compiled networks in %s (%s); the next start compiles again", path, error)
        return None
    return path


def _bundle_of(data: bytes, key: dict) -> bytes | None:
    """PyTorch's bundle in one of our files, when the file is ours and made for exactly this key."""
    if not data.startswith(MAGIC):
        return None
    line, _, bundle = data[len(MAGIC) :].partition(b"\n")
    try:
        saved_key = json.loads(line)
    except ValueError:
        return None
    return bundle if saved_key == json.loads(json.dumps(key)) and bundle else None


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__
