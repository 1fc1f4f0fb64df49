"""`invsr weights check`: load every part on its own and say, part by part, what is there and what is wrong."""

from __future__ import annotations

import sys

from .errors import InvSRError
from .weights import TINY_MARKER, WeightPaths, search


def _line(status: str, text: str) -> None:
    print(f"[{status:^7}] {text}", file=sys.stdout)


def check_weights(weights_dir=None, noise_predictor=None, device: str = "auto", dtype: str = "auto") -> bool:
    """Print one line per part; True only when every part loads and they fit together."""
    from .devices import DTYPE_NAMES, describe, resolve_device, resolve_dtype
    from .pipeline import quiet_library_logs

    quiet_library_logs()

    found = search(weights_dir, noise_predictor)
    print(f"looking in {found.where}")
    ok = True
    try:
        torch_device = resolve_device(device)
        _line("ok", f"device {describe(torch_device)}, dtype {DTYPE_NAMES[resolve_dtype(dtype, torch_device)]}")
    except InvSRError as error:
        _line("error", str(error))
        ok = False
    if found.sd_turbo is None:
        _line("missing", "SD-Turbo (run `invsr weights download`)")
        return False
    paths = WeightPaths(found.sd_turbo, found.noise_predictor or found.sd_turbo / "missing", found.where)
    if paths.is_tiny:
        _line("warning", f"random tiny test weights ({TINY_MARKER} present): they do not upscale for real")
    predictor = _check_noise_predictor(paths, found.noise_predictor)
    parts = {name: _check_part(name, paths) for name in ("unet", "vae")}
    embedding = _check_prompt(paths)
    ok &= predictor is not None and all(part is not None for part in parts.values()) and embedding is not None
    if ok:
        ok &= _check_together(predictor, parts, embedding, paths)
    print("all parts load" if ok else "some parts are missing or broken: see above")
    return ok


def _check_noise_predictor(paths: WeightPaths, predictor):
    from .pipeline import load_noise_predictor

    if predictor is None or not predictor.is_file():
        _line("missing", f"noise predictor {predictor or '(no noise_predictor*.pth or .safetensors)'}")
        return None
    try:
        model = load_noise_predictor(paths)
    except InvSRError as error:
        _line("error", f"noise predictor: {error}")
        return None
    count = sum(p.numel() for p in model.parameters())
    _line("ok", f"noise predictor {predictor} ({count:,} parameters)")
    return model


def _check_part(name: str, paths: WeightPaths):
    import torch

    from .pipeline import load_sd_turbo_part
    from .weights import missing_parts

    missing = [m for m in missing_parts(paths.sd_turbo) if m.startswith(name + "/")]
    if missing:
        _line("missing", f"SD-Turbo {name}: {', '.join(missing)} in {paths.sd_turbo}")
        return None
    try:
        model = load_sd_turbo_part(
            "UNet2DConditionModel" if name == "unet" else "AutoencoderKL", paths, name, torch.float32
        )
    except InvSRError as error:
        _line("error", f"SD-Turbo {name}: {error}")
        return None
    _line("ok", f"SD-Turbo {name} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return model


def _check_prompt(paths: WeightPaths):
    from .prompt import cache_path, prompt_embedding

    try:
        embedding, cached = prompt_embedding(paths.sd_turbo)
    except InvSRError as error:
        _line("error", f"prompt embedding: {error}")
        return None
    how = "cached" if cached else "computed with the text encoder and cached"
    _line("ok", f"prompt embedding {tuple(embedding.shape)}, {how} at {cache_path(paths.sd_turbo)}")
    return embedding


def _check_together(predictor, parts: dict, embedding, paths: WeightPaths) -> bool:
    from .pipeline import check_compatible
    from .sampling import Models

    try:
        check_compatible(Models(predictor, parts["unet"], parts["vae"], embedding), paths)
    except InvSRError as error:
        _line("error", str(error))
        return False
    _line("ok", "the parts fit together")
    return True
