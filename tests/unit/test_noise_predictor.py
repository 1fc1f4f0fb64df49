"""The noise predictor's module tree matches the released weights' state dict exactly, and a variant of other
widths is described by a .json in either of two forms (ours, flat, or the reference implementation's)."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from invsr.errors import CheckpointError
from invsr.noise_predictor import NoisePredictor, NoisePredictorConfig
from invsr.pipeline import load_noise_predictor
from invsr.tiny_weights import TINY_NOISE_PREDICTOR
from invsr.weights import WeightPaths

# Every tensor name and shape of the released noise_predictor_sd_turbo_v5.pth (from the project's reference).
KEYS_FILE = Path(__file__).parents[1] / "data" / "noise-predictor-v5.keys.json"


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


@pytest.mark.parametrize(
    "logvar, expected_std",
    [(0.0, 1.0), (100.0, torch.exp(torch.tensor(10.0)).item()), (-100.0, torch.exp(torch.tensor(-15.0)).item())],
)
def test_sample_noise_is_mean_plus_clamped_std_times_normal(logvar, expected_std):
    mean = torch.full((1, 4, 2, 2), 0.5)
    moments = torch.cat([mean, torch.full_like(mean, logvar)], dim=1)
    z = torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(NoisePredictor.sample_noise(moments, z), mean + expected_std * z)


# The reference implementation's own description of the released noise predictor (configs/sample-sd-turbo.yaml,
# model_start), as JSON: the widths nested under "params", in its names.
REFERENCE_CONFIG = {
    "target": "diffusers.models.autoencoders.NoisePredictor",
    "ckpt_path": None,
    "params": {
        "in_channels": 3,
        "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D"],
        "block_out_channels": [256, 512],
        "layers_per_block": [3, 3],
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 128,
        "mid_block_add_attention": True,
        "resnet_time_scale_shift": "default",
        "temb_channels": 512,
        "attention_head_dim": 64,
        "freq_shift": 0,
        "flip_sin_to_cos": True,
        "double_z": True,
    },
}


def reference_form(config) -> dict:
    """`config` in the reference implementation's form."""
    params = dict(
        REFERENCE_CONFIG["params"],
        block_out_channels=list(config.block_out_channels),
        layers_per_block=[config.layers_per_block] * 2,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        temb_channels=config.time_embed_channels,
        latent_channels=config.latent_channels,
        sample_size=config.sample_size,
    )
    return dict(REFERENCE_CONFIG, params=params)


def test_the_reference_implementations_description_is_the_released_network():
    assert NoisePredictorConfig.from_dict(REFERENCE_CONFIG) == NoisePredictorConfig()


@pytest.fixture
def variant(tiny_weights, tmp_path):
    """A noise predictor of other widths than the released one (the tiny one), its .json to be written."""
    path = tmp_path / "noise_predictor_variant.pth"
    shutil.copy(tiny_weights.noise_predictor, path)
    return WeightPaths(tiny_weights.sd_turbo, path, "test")


@pytest.mark.parametrize("form", ["flat", "reference"])
def test_a_variant_described_in_either_form_loads(variant, form):
    """Nested under "params", the widths used to be read as if flat, and the weights then refused with 163
    'wrong shape' errors. The reference form has no time projection width: the reference makes it
    max(128, first width), so a network it made 32 wide has a projection of 128 (refused before)."""
    config = TINY_NOISE_PREDICTOR
    if form == "reference":
        config = dataclasses.replace(config, time_proj_channels=128)
        torch.manual_seed(0)
        torch.save(NoisePredictor(config).state_dict(), variant.noise_predictor)
    described = json.loads(config.to_json()) if form == "flat" else reference_form(config)
    variant.noise_predictor_config.write_text(json.dumps(described))
    model = load_noise_predictor(variant)
    assert model.config == config
    count = sum(p.numel() for p in NoisePredictor(config).parameters())
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize(
    "text, message",
    [
        ("{ not json", r"cannot read it as JSON \(Expecting property name"),
        ("[256, 512]", "expected an object of named widths, found list"),
        ('{"block_out_channel": [32, 64]}', "unknown key\\(s\\) block_out_channel"),
        ('{"model_start": {"params": {}}}', "unknown key\\(s\\) model_start"),
        ('{"params": {"block_out_channels": [32, 64], "temb": 64}}', "unknown key\\(s\\) params.temb"),
        (
            '{"params": {"in_channels": 4}}',
            "params.in_channels is 4, but this noise predictor is built as the released",
        ),
        ('{"params": {"layers_per_block": [3, 2]}}', r"one depth for both blocks, got \[3, 2\]"),
        ('{"block_out_channels": [32, 64, 128]}', "block_out_channels must be two positive whole numbers"),
        ('{"norm_num_groups": "32"}', "norm_num_groups must be a positive whole number, got '32'"),
        (
            '{"block_out_channels": [30, 60], "norm_num_groups": 8}',
            "block width 30 must be a multiple of norm_num_groups",
        ),
    ],
)
def test_a_description_that_fits_neither_form_says_which_forms_are_expected(variant, text, message):
    variant.noise_predictor_config.write_text(text)
    with pytest.raises(CheckpointError) as raised:
        load_noise_predictor(variant)
    assert str(variant.noise_predictor_config) in str(raised.value) and re.search(message, str(raised.value))
    assert "one of two forms: flat" in str(raised.value) and '"params": {' in str(raised.value)
