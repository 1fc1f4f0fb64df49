"""`--steps auto` on a real photo with known added noise and blur: noisy inputs get one step, clean
blurry ones get more, clean sharp ones one; and the noise estimate itself is accurate."""

import pytest
import torch
import torch.nn.functional as F

from invsr.noise_level import choose_steps, estimate_noise_sigma


def gaussian_blur(rgb: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=rgb.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).expand(rgb.shape[1], 1, 1, -1)
    rows = F.conv2d(F.pad(rgb, (radius, radius, 0, 0), mode="replicate"), kernel, groups=rgb.shape[1])
    return F.conv2d(
        F.pad(rows, (0, 0, radius, radius), mode="replicate"), kernel.transpose(-1, -2), groups=rgb.shape[1]
    )


def add_noise(rgb: torch.Tensor, sigma: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (rgb + sigma * torch.randn(rgb.shape, generator=generator)).clamp(0, 1)


@pytest.fixture
def image(photo):
    return torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255


def test_noise_estimate_is_accurate_on_a_smooth_image():
    ramp = torch.linspace(0.2, 0.8, 256).expand(256, 256)
    for sigma in (0.01, 0.03, 0.1):
        noisy = ramp + sigma * torch.randn(256, 256, generator=torch.Generator().manual_seed(1))
        assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.1)


def test_clean_sharp_photo_gets_one_step(image):
    choice = choose_steps(image)
    assert choice.steps == 1 and "sharp" in choice.reason


@pytest.mark.parametrize("sigma", [10 / 255, 25 / 255])
def test_noisy_photo_gets_one_step_even_when_blurry(image, sigma):
    choice = choose_steps(add_noise(gaussian_blur(image, 2.0), sigma))
    assert choice.steps == 1 and "noisy" in choice.reason
    assert choice.noise_sigma > 3 / 255


def test_clean_blurry_photo_gets_three_steps(image):
    choice = choose_steps(gaussian_blur(image, 2.0))
    assert choice.steps == 3 and "blurry" in choice.reason


def test_clean_soft_photo_gets_two_steps(image):
    assert choose_steps(gaussian_blur(image, 1.0)).steps == 2


def test_tiny_images_get_the_default():
    assert choose_steps(torch.rand(1, 3, 4, 400)).steps == 1
