"""Where the model files are: a folder given by the user, or the local Hugging Face cache; and fetching them.

Two sources, in this order:
1. `--weights DIR` or `INVSR_WEIGHTS`: DIR holds `sd-turbo/` (diffusers layout) and the noise predictor file.
2. The Hugging Face cache: `stabilityai/sd-turbo` and `OAOA/InvSR`. Looking there makes no network call.

Nothing here loads a model; `pipeline.py` does that with the paths found here.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import WeightsMissing

SD_TURBO_REPO = "stabilityai/sd-turbo"
INVSR_REPO = "OAOA/InvSR"
NOISE_PREDICTOR_FILE = "noise_predictor_sd_turbo_v5.pth"
SD_TURBO_FOLDER = "sd-turbo"
TINY_MARKER = "TINY-RANDOM-WEIGHTS.txt"
WEIGHTS_ENV = "INVSR_WEIGHTS"
DOWNLOAD_SIZE = "about 2.6 GB"  # SD-Turbo's parts in fp16 where published, and the noise predictor

# The parts of SD-Turbo we run, each as (config, weight file stem). The text encoder and tokenizer are
# needed only until the prompt embedding is cached (prompt.py).
_DIFFUSERS_PARTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model"}
_TEXT_PARTS = {"text_encoder": "model"}
# What a download fetches: the half-precision files (half the bytes; the reference runs in fp16 anyway)
# and every config, never the repository's 5 GB single-file checkpoint.
DOWNLOAD_PATTERNS = [
    "model_index.json",
    "scheduler/*",
    "tokenizer/*",
    "*/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "text_encoder/model.fp16.safetensors",
]


@dataclasses.dataclass(frozen=True)
class WeightPaths:
    sd_turbo: Path
    noise_predictor: Path
    source: str  # for people: where these were found

    @property
    def noise_predictor_config(self) -> Path:
        """Widths of a non-standard noise predictor (the tiny weights), recorded beside the file."""
        return self.noise_predictor.with_suffix(".json")

    @property
    def is_tiny(self) -> bool:
        return any((folder / TINY_MARKER).exists() for folder in (self.noise_predictor.parent, self.sd_turbo))


def weight_file(part_dir: Path, stem: str) -> Path | None:
    """The part's weights, preferring the fp16 variant a download brings; None if neither is there."""
    for name in (f"{stem}.fp16.safetensors", f"{stem}.safetensors", f"{stem}.fp16.bin", f"{stem}.bin"):
        if (part_dir / name).is_file():
            return part_dir / name
    return None


def variant_of(path: Path) -> str | None:
    return "fp16" if ".fp16." in path.name else None


def missing_parts(sd_turbo: Path, with_text_encoder: bool = False) -> list[str]:
    """What of an SD-Turbo folder is absent, as short descriptions; empty when all is there."""
    parts = dict(_DIFFUSERS_PARTS, **(_TEXT_PARTS if with_text_encoder else {}))
    missing = []
    for part, stem in parts.items():
        if not (sd_turbo / part / "config.json").is_file():
            missing.append(f"{part}/config.json")
        if weight_file(sd_turbo / part, stem) is None:
            missing.append(f"{part}/{stem}[.fp16].safetensors")
    if with_text_encoder and not (sd_turbo / "tokenizer" / "vocab.json").is_file():
        missing.append("tokenizer/vocab.json")
    return missing


@dataclasses.dataclass(frozen=True)
class Search:
    """Where the weights should be and what was found there (None where nothing was)."""

    where: str  # for people: "the folder X" or "the Hugging Face cache X"
    folder: Path | None  # the --weights folder, None for the Hugging Face cache
    sd_turbo: Path | None
    noise_predictor: Path | None

    def missing(self) -> list[str]:
        sd_turbo = f"{SD_TURBO_FOLDER}/" if self.folder else f"{SD_TURBO_REPO}: "
        missing = [sd_turbo + m for m in missing_parts(self.sd_turbo)] if self.sd_turbo else [SD_TURBO_REPO]
        if self.noise_predictor is None or not self.noise_predictor.is_file():
            missing.append(str(self.noise_predictor or f"{NOISE_PREDICTOR_FILE} (or .safetensors)"))
        return missing


def search(weights_dir: str | Path | None = None, noise_predictor: str | Path | None = None) -> Search:
    """Look for the weights (see the module docstring) without loading or fetching anything."""
    weights_dir = weights_dir or os.environ.get(WEIGHTS_ENV) or None
    chosen = Path(noise_predictor).expanduser() if noise_predictor else None
    if weights_dir:
        folder = Path(weights_dir).expanduser()
        return Search(f"the folder {folder}", folder, folder / SD_TURBO_FOLDER, chosen or _find_noise_predictor(folder))
    from huggingface_hub import constants, try_to_load_from_cache

    cache = constants.HF_HUB_CACHE
    config = try_to_load_from_cache(SD_TURBO_REPO, "unet/config.json", cache_dir=cache)
    predictor = chosen or try_to_load_from_cache(INVSR_REPO, NOISE_PREDICTOR_FILE, cache_dir=cache)
    return Search(
        f"the Hugging Face cache {cache}",
        None,
        Path(config).parent.parent if isinstance(config, str) else None,
        Path(predictor) if isinstance(predictor, (str, Path)) else None,
    )


def locate(weights_dir: str | Path | None = None, noise_predictor: str | Path | None = None) -> WeightPaths:
    """The weights' paths, or WeightsMissing saying what is missing, where we looked, and how to fix it."""
    found = search(weights_dir, noise_predictor)
    missing = found.missing()
    if missing:
        download = f"invsr weights download {found.folder}" if found.folder else "invsr weights download"
        # the one command that fixes it, for a person who should not read file names (the plug-in's messages)
        raise WeightsMissing(_missing_message(missing, found), {"download": download, "download_size": DOWNLOAD_SIZE})
    return WeightPaths(found.sd_turbo, found.noise_predictor, found.where)


def _find_noise_predictor(folder: Path) -> Path | None:
    stem = Path(NOISE_PREDICTOR_FILE).stem
    for name in (f"{stem}.safetensors", NOISE_PREDICTOR_FILE):
        if (folder / name).is_file():
            return folder / name
    others = sorted(folder.glob("noise_predictor*.pth")) + sorted(folder.glob("noise_predictor*.safetensors"))
    return others[0] if len(others) == 1 else None


def _missing_message(missing: list[str], found: Search) -> str:
    target = f" {found.folder}" if found.folder else ""
    elsewhere = "" if found.folder else f" (or give --weights DIR, or set {WEIGHTS_ENV})"
    return (
        f"InvSR weights not found: missing {', '.join(missing)}; looked in {found.where}{elsewhere}. "
        f"To fix: run `invsr weights download{target}` on a machine with internet access ({DOWNLOAD_SIZE}), "
        f"or `invsr weights tiny {found.folder or 'DIR'}` for random test weights that run but do not upscale for real."
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look whether the Hugging Face hub answers, so that offline use fails in seconds, not minutes."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # cannot test through a proxy cheaply; let the download try
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def download(weights_dir: str | Path | None = None) -> WeightPaths:
    """Fetch SD-Turbo's parts and the noise predictor (with huggingface_hub's progress bars)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    folder = Path(weights_dir).expanduser() if weights_dir else None
    sd_local = folder / SD_TURBO_FOLDER if folder else None
    sd_turbo = Path(snapshot_download(SD_TURBO_REPO, allow_patterns=DOWNLOAD_PATTERNS, local_dir=sd_local))
    parts = dict(_DIFFUSERS_PARTS, **_TEXT_PARTS)
    full_precision = [
        f"{part}/{stem}.safetensors" for part, stem in parts.items() if not weight_file(sd_turbo / part, stem)
    ]
    if full_precision:  # no fp16 variant published for these parts
        snapshot_download(SD_TURBO_REPO, allow_patterns=full_precision, local_dir=sd_local)
    hf_hub_download(INVSR_REPO, NOISE_PREDICTOR_FILE, local_dir=folder)
    return locate(folder)
