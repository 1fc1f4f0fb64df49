"""The InvSR noise predictor: a time-aware, VAE-encoder-shaped network that maps the low-resolution
image to the noise that inverts it into SD-Turbo's diffusion trajectory (Yue et al., CVPR 2025, Sec. 3.2).

Contract: `forward(lr, timestep)` takes `lr` of shape (N, 3, h, w) in [-1, 1] with h and w even, and the
start timestep as an index (t - 1, so 199 for t = 200), a Python int or a tensor of shape (N,). It
returns (N, 8, h/2, w/2): the mean and log-variance of a Gaussian over SD's 4 latent channels, at the
latent resolution of the x4 output. `sample_noise` draws from it.

The module tree is built so that its state dict carries exactly the names and shapes of the released
`noise_predictor_sd_turbo_v5.pth` (every key under `encoder.`); the blocks are stock diffusers blocks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from .errors import CheckpointError

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


@dataclasses.dataclass(frozen=True)
class NoisePredictorConfig:
    """Widths of the network. The defaults are those of the released weights (33,837,576 parameters).

    A noise predictor of other widths (a fine-tuned variant) is described by a `.json` beside its weights,
    in one of two forms (`from_json_file`): this class's fields, flat (what `invsr weights tiny` writes), or
    the reference implementation's model configuration, its arguments under "params" in its own names.
    """

    block_out_channels: tuple[int, int] = (256, 512)
    layers_per_block: int = 3
    attention_head_dim: int = 64
    norm_num_groups: int = 32
    time_proj_channels: int = 256
    time_embed_channels: int = 512
    latent_channels: int = 4
    sample_size: int = 128  # the input side it was trained on: the tile engine pads shorter sides to it

    def __post_init__(self):
        widths = self.block_out_channels
        if not (isinstance(widths, tuple) and len(widths) == 2 and all(_is_count(w) for w in widths)):
            raise ValueError(f"block_out_channels must be two positive whole numbers, got {widths!r}")
        for field in dataclasses.fields(self)[1:]:
            if not _is_count(getattr(self, field.name)):
                raise ValueError(f"{field.name} must be a positive whole number, got {getattr(self, field.name)!r}")
        for width in widths:
            if width % self.norm_num_groups or width % self.attention_head_dim:
                raise ValueError(
                    f"block width {width} must be a multiple of norm_num_groups ({self.norm_num_groups}) and of "
                    f"attention_head_dim ({self.attention_head_dim})"
                )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json_file(cls, path: Path) -> NoisePredictorConfig:
        """The widths a `.json` describes, in either form (class docstring); a CheckpointError naming the
        file and the expected forms for anything else."""
        path = Path(path)
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path}: cannot read it as JSON ({error}). {EXPECTED_FORMS}") from error
        try:
            return cls.from_dict(fields)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}. {EXPECTED_FORMS}") from error

    @classmethod
    def from_dict(cls, fields) -> NoisePredictorConfig:
        """From either form; a ValueError that says what does not fit."""
        if not isinstance(fields, dict):
            raise ValueError(f"expected an object of named widths, found {type(fields).__name__}")
        if "params" in fields:
            return cls._from_reference(fields)
        known = {f.name for f in dataclasses.fields(cls)}
        _refuse_unknown(fields, known, "")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    @classmethod
    def _from_reference(cls, fields: dict) -> NoisePredictorConfig:
        """The reference implementation's `model_start` form: {"target": ..., "params": {...}}."""
        _refuse_unknown(fields, {"params", "target", "ckpt_path"}, "")
        params = fields["params"]
        if not isinstance(params, dict):
            raise ValueError(f'"params" must be an object of named widths, found {type(params).__name__}')
        _refuse_unknown(params, set(_REFERENCE_WIDTHS) | set(_REFERENCE_ARCHITECTURE) | _REFERENCE_IGNORED, "params.")
        for name, required in _REFERENCE_ARCHITECTURE.items():
            if name in params and params[name] != required:
                raise ValueError(
                    f"params.{name} is {params[name]!r}, but this noise predictor is built as the released one, with "
                    f"{required!r}: another architecture cannot be loaded"
                )
        values = {ours: params[theirs] for theirs, ours in _REFERENCE_WIDTHS.items() if theirs in params}
        if isinstance(values.get("block_out_channels"), list):
            values["block_out_channels"] = tuple(values["block_out_channels"])
            # The reference sizes the time projection max(128, first width): the released 256 either way, but a
            # network it made narrower than 128 has a projection of 128 channels.
            values.setdefault("time_proj_channels", max(128, values["block_out_channels"][0]))
        depths = values.get("layers_per_block")
        if isinstance(depths, list):
            if len(set(depths)) != 1 or len(depths) != 2:
                raise ValueError(f"params.layers_per_block must be one depth for both blocks, got {depths!r}")
            values["layers_per_block"] = depths[0]
        return cls(**values)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _refuse_unknown(fields: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(where + k for k in unknown)}")


# The reference implementation's names for the widths (configs/sample-sd-turbo.yaml, model_start.params)...
_REFERENCE_WIDTHS = {
    "block_out_channels": "block_out_channels",
    "layers_per_block": "layers_per_block",  # a list there, one depth per block
    "attention_head_dim": "attention_head_dim",
    "norm_num_groups": "norm_num_groups",
    "temb_channels": "time_embed_channels",
    "latent_channels": "latent_channels",
    "sample_size": "sample_size",
}
# ...the arguments that would change the architecture, with the released one's values...
_REFERENCE_ARCHITECTURE = {
    "in_channels": 3,
    "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"],
    "act_fn": "silu",
    "mid_block_add_attention": True,
    "resnet_time_scale_shift": "default",
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "double_z": True,
}
# ...and those that make no weights of the encoder that is run.
_REFERENCE_IGNORED = {"up_block_types"}

EXPECTED_FORMS = (
    "A noise predictor's .json must hold its widths in one of two forms: flat, in this program's names, "
    '{"block_out_channels": [256, 512], "layers_per_block": 3, "attention_head_dim": 64, "norm_num_groups": 32, '
    '"time_proj_channels": 256, "time_embed_channels": 512, "latent_channels": 4, "sample_size": 128} (any of '
    'them, the rest as released); or the reference implementation\'s model configuration, {"target": "...", '
    '"params": {"block_out_channels": [256, 512], "layers_per_block": [3, 3], "temb_channels": 512, ...}}. '
    "Without a .json the released widths are used"
)


def _attention(channels: int, config: NoisePredictorConfig) -> Attention:
    """Spatial self-attention with its own GroupNorm and a residual, as in SD's VAE blocks."""
    return Attention(
        channels,
        heads=channels // config.attention_head_dim,
        dim_head=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        eps=1e-6,
        bias=True,
        upcast_softmax=True,
        residual_connection=True,
        _from_deprecated_attn_block=True,
    )


def _resnet(in_channels: int, out_channels: int, config: NoisePredictorConfig) -> ResnetBlock2D:
    return ResnetBlock2D(
        in_channels=in_channels,
        out_channels=out_channels,
        temb_channels=config.time_embed_channels,
        groups=config.norm_num_groups,
        eps=1e-6,
    )


class _AttnDownBlock(nn.Module):
    """`layers` x (ResNet with time embedding, then self-attention), optionally a stride-2 downsampler."""

    def __init__(self, in_channels, out_channels, config: NoisePredictorConfig, downsample: bool):
        super().__init__()
        widths = [in_channels] + [out_channels] * config.layers_per_block
        self.resnets = nn.ModuleList(_resnet(a, b, config) for a, b in zip(widths, widths[1:]))
        self.attentions = nn.ModuleList(_attention(out_channels, config) for _ in widths[1:])
        # padding=0 makes diffusers pad (0, 1, 0, 1) asymmetrically, as the released weights expect;
        # name="op" registers the conv once (the default name adds a `Conv2d_0` alias to the state dict).
        self.downsamplers = nn.ModuleList(
            [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=0, name="op")]
            if downsample
            else []
        )

    def forward(self, x, temb):
        for resnet, attention in zip(self.resnets, self.attentions):
            x = attention(resnet(x, temb))
        for downsampler in self.downsamplers:
            x = downsampler(x)
        return x


class _MidBlock(nn.Module):
    """ResNet, self-attention, ResNet at the narrowest resolution."""

    def __init__(self, channels, config: NoisePredictorConfig):
        super().__init__()
        self.resnets = nn.ModuleList([_resnet(channels, channels, config), _resnet(channels, channels, config)])
        self.attentions = nn.ModuleList([_attention(channels, config)])

    def forward(self, x, temb):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x), temb)


class _TimeAwareEncoder(nn.Module):
    def __init__(self, config: NoisePredictorConfig):
        super().__init__()
        first, second = config.block_out_channels
        self.time_proj = Timesteps(config.time_proj_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(config.time_proj_channels, config.time_embed_channels)
        self.conv_in = nn.Conv2d(3, first, kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            [
                _AttnDownBlock(first, first, config, downsample=True),
                _AttnDownBlock(first, second, config, downsample=False),
            ]
        )
        self.mid_block = _MidBlock(second, config)
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, second, eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(second, 2 * config.latent_channels, kernel_size=3, padding=1)

    def forward(self, x, timestep):
        t = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(x.shape[0])
        # The sinusoidal projection is float32; the MLP runs in the weights' dtype.
        temb = self.time_embedding(self.time_proj(t).to(self.conv_in.weight.dtype))
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x, temb)
        x = self.mid_block(x, temb)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


class NoisePredictor(nn.Module):
    """See the module docstring for the contract."""

    def __init__(self, config: NoisePredictorConfig = NoisePredictorConfig()):
        super().__init__()
        self.config = config
        self.encoder = _TimeAwareEncoder(config)

    def forward(self, lr: torch.Tensor, timestep) -> torch.Tensor:
        return self.encoder(lr, timestep)

    @staticmethod
    def sample_noise(moments: torch.Tensor, standard_normal: torch.Tensor) -> torch.Tensor:
        """mean + std * z for the Gaussian whose (mean, log-variance) `forward` returned.

        `standard_normal` is drawn by the caller so that one draw can serve a whole image cut into tiles.
        """
        mean, logvar = moments.float().chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))
        return mean + std * standard_normal.to(mean)
