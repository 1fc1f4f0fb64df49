"""InvSR's fixed prompt and its text-encoder embedding, computed once per model and cached on disk.

The prompt never changes and there is no classifier-free guidance, so the embedding is a constant of the
model. We compute it on the CPU in fp32 the first time and keep it in the cache folder (beside the
Hugging Face cache); later starts never load the 340M-parameter text encoder.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from invsr.wire.atomic import write_atomically

from .errors import CheckpointError, WeightsMissing
from .weights import missing_parts, variant_of, weight_file

PROMPT = (
    "Cinematic, high-contrast, photo-realistic, 8k, ultra HD, meticulous detailing, hyper sharpness, "
    "perfect without deformations"
)
CACHE_ENV = "INVSR_CACHE"


def cache_dir() -> Path:
    """INVSR_CACHE, else $XDG_CACHE_HOME/invsr, else ~/.cache/invsr."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "invsr"


def cache_path(sd_turbo: Path) -> Path:
    key = hashlib.sha256(f"{PROMPT}\0{Path(sd_turbo).resolve()}".encode()).hexdigest()[:24]
    return cache_dir() / f"prompt-embedding-{key}.safetensors"


def _encoder_stamp(sd_turbo: Path) -> str:
    """Size and mtime of the text encoder's weights, so that replacing them invalidates the cache."""
    found = weight_file(Path(sd_turbo) / "text_encoder", "model")
    if found is None:
        return ""
    stat = found.resolve().stat()
    return f"{found.name}:{stat.st_size}:{stat.st_mtime_ns}"


def prompt_embedding(sd_turbo: Path) -> tuple[torch.Tensor, bool]:
    """(embedding of shape (1, 77, D) in float32 on the CPU, whether it came from the cache)."""
    path, stamp = cache_path(sd_turbo), _encoder_stamp(sd_turbo)
    cached = _read_cache(path, stamp)
    if cached is not None:
        return cached, True
    embedding = encode_prompt(sd_turbo)
    _write_cache(path, embedding, stamp)
    return embedding, False


def _read_cache(path: Path, stamp: str) -> torch.Tensor | None:
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            saved_stamp = (f.metadata() or {}).get("text_encoder", "")
            embedding = f.get_tensor("prompt_embedding")
    except Exception:  # damaged cache file: recompute it
        return None
    # No stamp now means the text encoder was removed after caching: the cache is all we have, use it.
    if stamp and saved_stamp != stamp:
        return None
    return embedding if embedding.ndim == 3 and embedding.shape[0] == 1 else None


def _write_cache(path: Path, embedding: torch.Tensor, stamp: str) -> None:
    from safetensors.torch import save

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = save({"prompt_embedding": embedding.contiguous()}, metadata={"text_encoder": stamp})
        write_atomically(path, data)  # a concurrent reader sees the old file or the whole new one
    except OSError as error:
        warnings.warn(
            f"could not cache the prompt embedding in {path.parent} ({error}); it will be recomputed", stacklevel=2
        )


def encode_prompt(sd_turbo: Path) -> torch.Tensor:
    """Run SD-Turbo's CLIP text encoder on PROMPT (padded to 77 tokens), as SD 2.x pipelines do."""
    from transformers import CLIPTextModel, CLIPTokenizer

    sd_turbo = Path(sd_turbo)
    missing = [
        m for m in missing_parts(sd_turbo, with_text_encoder=True) if m.startswith(("text_encoder", "tokenizer"))
    ]
    if missing:
        raise WeightsMissing(
            f"the text encoder is needed once to compute the prompt embedding, but {', '.join(missing)} "
            f"is missing in {sd_turbo}; run `invsr weights download` to fetch it"
        )
    weights = weight_file(sd_turbo / "text_encoder", "model")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(sd_turbo / "tokenizer"))
        encoder = CLIPTextModel.from_pretrained(
            str(sd_turbo / "text_encoder"), variant=variant_of(weights), torch_dtype=torch.float32
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{sd_turbo}: cannot load the text encoder or tokenizer: {error}") from error
    ids = tokenizer(
        PROMPT, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        return encoder(ids)[0].float().contiguous()
