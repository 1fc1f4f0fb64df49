"""`invsr weights tiny DIR`: a complete set of small random weights in the real files' layout.

Real weights cannot be fetched everywhere (CI, machines without internet). These let the whole loading
path and pipeline run for real: an SD-Turbo-shaped diffusers folder (UNet, VAE, CLIP text encoder,
tokenizer, scheduler, model_index.json) and a noise predictor file with the official key names at small
widths, its widths recorded beside it. They upscale nothing for real: every output made with them is
labelled so.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .noise_predictor import NoisePredictor, NoisePredictorConfig
from .weights import NOISE_PREDICTOR_FILE, SD_TURBO_FOLDER, TINY_MARKER, WeightPaths

TINY_NOISE_PREDICTOR = NoisePredictorConfig(
    block_out_channels=(32, 64),
    layers_per_block=3,
    attention_head_dim=16,
    norm_num_groups=8,
    time_proj_channels=32,
    time_embed_channels=64,
    sample_size=32,  # trained on nothing: a small size keeps short sides cheap to pad in tests
)
TEXT_WIDTH = 32
WARNING = (
    "These are RANDOM weights made by `invsr weights tiny` for tests. They exercise every part of the\n"
    "program but do NOT upscale for real: outputs made with them are not real upscales.\n"
    "Real weights: `invsr weights download` (needs internet access).\n"
)


def write_tiny_weights(folder: str | Path, seed: int = 0) -> WeightPaths:
    """Write the tiny weights into `folder` and return their paths. Deterministic for a given seed."""
    from .pipeline import quiet_library_logs

    quiet_library_logs()
    folder = Path(folder)
    sd_turbo = folder / SD_TURBO_FOLDER
    sd_turbo.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # seeds only inside: the caller's global RNG is untouched
        torch.manual_seed(seed)
        _write_unet(sd_turbo / "unet")
        _write_vae(sd_turbo / "vae")
        _write_text_encoder(sd_turbo / "text_encoder")
        predictor = NoisePredictor(TINY_NOISE_PREDICTOR)
    _write_tokenizer(sd_turbo / "tokenizer")
    _write_scheduler(sd_turbo / "scheduler")
    _write_model_index(sd_turbo)
    predictor_path = folder / NOISE_PREDICTOR_FILE
    torch.save(predictor.state_dict(), predictor_path)
    predictor_path.with_suffix(".json").write_text(TINY_NOISE_PREDICTOR.to_json())
    for marker in (folder / TINY_MARKER, sd_turbo / TINY_MARKER):
        marker.write_text(WARNING)
    return WeightPaths(sd_turbo, predictor_path, f"folder {folder}")


# SD-Turbo's own shapes (SD 2.1's: three cross-attention levels, then a plain one; linear projections),
# from the diffusers configs of stabilityai/sd-turbo. The tiny ones keep the architecture at tiny widths.
SD_TURBO_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    norm_num_groups=32,
)
SD_TURBO_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=768,
    scaling_factor=0.18215,
)
TINY_UNET = dict(
    SD_TURBO_UNET,
    sample_size=32,
    block_out_channels=(16, 16, 32, 32),
    layers_per_block=1,
    attention_head_dim=(2, 2, 4, 4),
    cross_attention_dim=TEXT_WIDTH,
    norm_num_groups=8,
)
TINY_VAE = dict(SD_TURBO_VAE, block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8, sample_size=64)


def _write_unet(path: Path) -> None:
    from diffusers import UNet2DConditionModel

    UNet2DConditionModel(**TINY_UNET).half().save_pretrained(path, variant="fp16")


def _write_vae(path: Path) -> None:
    from diffusers import AutoencoderKL

    AutoencoderKL(**TINY_VAE).half().save_pretrained(path, variant="fp16")


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins that byte-level BPE (GPT-2, CLIP) uses for the bytes 0..255."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _vocabulary() -> dict[str, int]:
    """A character-level CLIP vocabulary: every byte, alone and word-final, plus the two special tokens."""
    tokens = _byte_symbols() + [s + "</w>" for s in _byte_symbols()] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def _write_tokenizer(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(_vocabulary(), ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = dict(special, tokenizer_class="CLIPTokenizer", model_max_length=77, do_lower_case=True)
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def _write_text_encoder(path: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    vocabulary = _vocabulary()
    config = CLIPTextConfig(
        vocab_size=len(vocabulary),
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=TEXT_WIDTH,
        hidden_act="gelu",
        bos_token_id=vocabulary["<|startoftext|>"],
        eos_token_id=vocabulary["<|endoftext|>"],
        pad_token_id=vocabulary["<|endoftext|>"],
    )
    CLIPTextModel(config).half().save_pretrained(path, variant="fp16")


def _write_scheduler(path: Path) -> None:
    from diffusers import EulerDiscreteScheduler

    # SD-Turbo's scheduler settings; our sampler computes its sigmas itself (schedule.py) and only ships this
    # file so that the folder is a complete diffusers layout.
    EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
        steps_offset=1,
    ).save_pretrained(path)


def _write_model_index(sd_turbo: Path) -> None:
    import diffusers

    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (sd_turbo / "model_index.json").write_text(json.dumps(index, indent=2))
