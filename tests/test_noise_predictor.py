"""The noise predictor's module tree matches the released weights' state dict exactly."""

import json
from pathlib import Path

import pytest
import torch

from invsr.noise_predictor import NoisePredictor
from invsr.tiny_weights import TINY_NOISE_PREDICTOR

# Every tensor name and shape of the released noise_predictor_sd_turbo_v5.pth (from the project's reference).
KEYS_FILE = Path(__file__).parent / "data" / "noise-predictor-v5.keys.json"


def official_shapes() -> dict[str, list[int]]:
    return json.loads(KEYS_FILE.read_text())["keys"]


def test_state_dict_has_exactly_the_official_names_and_shapes():
    expected = official_shapes()
    state = NoisePredictor().state_dict()
    assert len(expected) == 164
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert sum(v.numel() for v in state.values()) == 33_837_576


def test_tiny_widths_keep_every_official_name():
    assert set(NoisePredictor(TINY_NOISE_PREDICTOR).state_dict()) == set(official_shapes())


def test_output_is_mean_and_logvar_at_half_resolution():
    model = NoisePredictor(TINY_NOISE_PREDICTOR).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 24, 40) * 2 - 1, 199)
    assert out.shape == (2, 8, 12, 20)


def test_timestep_changes_the_prediction():
    torch.manual_seed(0)
    model = NoisePredictor(TINY_NOISE_PREDICTOR).eval()
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(model(lr, 199), model(lr, 99))


@pytest.mark.parametrize("logvar, expected_std", [(0.0, 1.0), (100.0, torch.exp(torch.tensor(10.0)).item()), (-100.0, torch.exp(torch.tensor(-15.0)).item())])
def test_sample_noise_is_mean_plus_clamped_std_times_normal(logvar, expected_std):
    mean = torch.full((1, 4, 2, 2), 0.5)
    moments = torch.cat([mean, torch.full_like(mean, logvar)], dim=1)
    z = torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(NoisePredictor.sample_noise(moments, z), mean + expected_std * z)
