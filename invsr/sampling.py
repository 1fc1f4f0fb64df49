"""InvSR's sampler: diffusion inversion by a predicted noise map, then a few Euler steps of SD-Turbo.

Yue et al., "Arbitrary-steps Image Super-resolution via Diffusion Inversion", CVPR 2025, Sec. 3; the
numbered steps below are those of docs/METHOD.md, "Inference". Everything runs on whole tensors of one image
or tile; padding, tiling and colour are the callers' business.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
import torch.nn.functional as F

from .noise_predictor import NoisePredictor
from .schedule import sigmas


@dataclasses.dataclass
class Models:
    """The networks of one loaded model, on one device in one dtype."""

    noise_predictor: NoisePredictor
    unet: torch.nn.Module  # diffusers UNet2DConditionModel
    vae: torch.nn.Module  # diffusers AutoencoderKL
    prompt_embedding: torch.Tensor  # (1, 77, D)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def lr_multiple(self) -> int:
        """Input sides must be multiples of this: x4 output / 8 (VAE) / 2 ** (UNet downsamplings)."""
        return 2 * 2 ** (len(self.unet.config.down_block_types) - 1)


@dataclasses.dataclass
class Noise:
    """The two standard-normal draws of one image, at its latent size (N, 4, h/2, w/2) for an LR of (h, w).

    Drawn by the caller so that one draw can be cropped for each tile of an image.
    """

    predictor: torch.Tensor  # samples the noise predictor's Gaussian
    encoder: torch.Tensor  # samples the VAE encoder's latent Gaussian

    @classmethod
    def draw(cls, lr_shape, channels: int, seed: int) -> Noise:
        """Both draws for an input of `lr_shape` (N, 3, h, w), from a CPU generator seeded with `seed`:
        the same numbers on every device, and no global random state touched."""
        generator = torch.Generator().manual_seed(seed)
        shape = (lr_shape[0], channels, lr_shape[-2] // 2, lr_shape[-1] // 2)
        predictor = torch.randn(shape, generator=generator)
        return cls(predictor=predictor, encoder=torch.randn(shape, generator=generator))

    def cut(self, box) -> Noise:
        """The rectangle `box` (a tiles.grid.Box, in latent rows and columns) of both draws: views."""
        return Noise(box.of(self.predictor), box.of(self.encoder))


def _no_stage(name: str):
    return contextlib.nullcontext()


def _timestep(t: int, device: torch.device) -> torch.Tensor:
    """A timestep as the networks take it. A tensor, not a Python int: torch.compile treats an int as a
    constant and would compile the networks again for every new timestep (every step, every --steps)."""
    return torch.tensor(t, dtype=torch.int64, device=device)


@torch.inference_mode()
def sample(models: Models, lr: torch.Tensor, timesteps: tuple[int, ...], noise: Noise, stage=_no_stage) -> torch.Tensor:
    """x4 super-resolution of `lr` (N, 3, h, w) in [0, 1], h and w multiples of `models.lr_multiple`.

    Returns (N, 3, 4h, 4w) in [0, 1], float32. `stage(name)` is a context manager around each stage
    (for timing and progress); `timesteps` are validated already (schedule.resolve_timesteps).
    """
    dtype = models.unet.dtype
    sigma = sigmas(timesteps)  # sigma(t - 1) for each t, then 0 (step 3)
    start = timesteps[0] - 1

    with stage("vae_encode"):  # steps 1 and 4: z0 is a sample of the VAE latent of the bicubic x4 image
        up = F.interpolate(lr.float(), scale_factor=4, mode="bicubic", align_corners=False) * 2 - 1
        latent = models.vae.encode(up.to(dtype)).latent_dist
        z0 = (latent.mean.float() + latent.std.float() * noise.encoder.to(lr.device)) * models.scaling_factor

    with stage("noise_predictor"):  # step 5: the inversion noise, then x = z0 + sigma_0 * noise
        moments = models.noise_predictor((lr * 2 - 1).to(dtype), _timestep(start, lr.device))
        x = z0 + sigma[0] * NoisePredictor.sample_noise(moments, noise.predictor.to(lr.device))

    prompt = models.prompt_embedding.to(lr.device, dtype).expand(lr.shape[0], -1, -1)
    for i, t in enumerate(timesteps):  # step 6: Euler steps with epsilon prediction
        with stage("unet"):
            model_input = (x / math.sqrt(sigma[i] ** 2 + 1)).to(dtype)
            eps = models.unet(
                model_input, _timestep(t - 1, lr.device), encoder_hidden_states=prompt, return_dict=False
            )[0].float()
            denoised = x - sigma[i] * eps
            x = denoised + sigma[i + 1] * eps

    with stage("vae_decode"):  # step 7
        image = models.vae.decode((x / models.scaling_factor).to(dtype), return_dict=False)[0]
        return (image.float() / 2 + 0.5).clamp(0, 1)
