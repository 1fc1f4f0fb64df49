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
from torch import nn
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


@dataclasses.dataclass(frozen=True)
class NoisePredictorConfig:
    """Widths of the network. The defaults are those of the released weights (33,837,576 parameters)."""

    block_out_channels: tuple[int, int] = (256, 512)
    layers_per_block: int = 3
    attention_head_dim: int = 64
    norm_num_groups: int = 32
    time_proj_channels: int = 256
    time_embed_channels: int = 512
    latent_channels: int = 4

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json_file(cls, path: Path) -> "NoisePredictorConfig":
        fields = json.loads(Path(path).read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k in known}
        return cls(**values)


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
            [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=0, name="op")] if downsample else []
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
            [_AttnDownBlock(first, first, config, downsample=True), _AttnDownBlock(first, second, config, downsample=False)]
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
