"""Reading a weights file safely and loading it strictly, with errors that name the offending tensor.

A `.pth` is read with `torch.load(weights_only=True)`: its pickle may only rebuild tensors and plain
containers, so a file that tries to run code is refused instead of obeyed. `.safetensors` carries no
code at all.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

# Prefixes that training wrappers add to every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 5  # how many offending names a message lists before "and N more"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.pth` or `.safetensors` file, unwrapped from `state_dict` and prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        raw = _read_safetensors(path)
    else:
        raw = _read_pth(path)
    return _unwrap(raw, path)


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own untyped errors for every kind of damage
        raise CheckpointError(
            f"{path}: not a readable .safetensors file ({error}); it may be truncated: download it again"
        ) from error


def _read_pth(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: the file holds Python objects other than tensors, and loading them could "
            f"run code. Use the official weights file, or convert it to .safetensors. ({_blocked_global(error)})"
        ) from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointError(
            f"{path}: not a readable PyTorch weights file ({_first_line(error)}); "
            "it may be truncated or damaged: download it again"
        ) from error


def _unwrap(raw, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dictionary of tensors, found {type(raw).__name__}")
    state = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[_strip_prefixes(str(key))] = value
    return state


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: Path | str) -> None:
    """Copy `state` into `module`, refusing any missing, unexpected or mis-shaped tensor by name."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = [
        _listing("missing", missing),
        _listing("unexpected", unexpected),
        _listing("of the wrong shape", misshaped),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointError(f"{source}: does not match the {type(module).__name__} layout: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _listing(what: str, names: list[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{len(names)} tensor(s) {what}: {shown}{more}"


def _blocked_global(error: pickle.UnpicklingError) -> str:
    """The line of torch's long message that names what the pickle tried to load."""
    lines = str(error).splitlines()
    return next((line.strip() for line in lines if "GLOBAL" in line), _first_line(error))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
