"""Reading weights files: every accepted wrapping loads strictly; every damaged or unsafe file is refused
with a message that names the problem."""

import os

import pytest
import torch
from safetensors.torch import save_file
from test_noise_predictor import official_shapes

from invsr.checkpoint import load_strict, read_state_dict
from invsr.errors import CheckpointError
from invsr.noise_predictor import NoisePredictor


@pytest.fixture(scope="module")
def full_state():
    """A full-size state dict with the official names and shapes (distinct values per tensor)."""
    generator = torch.Generator().manual_seed(0)
    return {name: torch.randn(shape, generator=generator) for name, shape in official_shapes().items()}


@pytest.fixture(scope="module")
def model():
    return NoisePredictor()


WRAPPINGS = {
    "plain": lambda s: s,
    "state_dict": lambda s: {"state_dict": s},
    "module": lambda s: {f"module.{k}": v for k, v in s.items()},
    "orig_mod": lambda s: {f"_orig_mod.{k}": v for k, v in s.items()},
    "state_dict+module+orig_mod": lambda s: {"state_dict": {f"module._orig_mod.{k}": v for k, v in s.items()}},
}


@pytest.mark.parametrize("wrapping", WRAPPINGS)
def test_pth_loads_strictly_in_every_accepted_wrapping(tmp_path, full_state, model, wrapping):
    path = tmp_path / "np.pth"
    torch.save(WRAPPINGS[wrapping](full_state), path)
    load_strict(model, read_state_dict(path), path)
    name = "encoder.mid_block.attentions.0.to_q.weight"
    torch.testing.assert_close(model.state_dict()[name], full_state[name])


@pytest.mark.parametrize("wrapping", ["plain", "module"])
def test_safetensors_loads_strictly(tmp_path, full_state, model, wrapping):
    path = tmp_path / "np.safetensors"
    save_file(WRAPPINGS[wrapping](full_state), str(path))
    load_strict(model, read_state_dict(path), path)
    torch.testing.assert_close(model.state_dict()["encoder.conv_out.bias"], full_state["encoder.conv_out.bias"])


def test_missing_tensor_is_named(full_state, model):
    state = dict(full_state)
    del state["encoder.down_blocks.1.resnets.0.conv_shortcut.weight"]
    with pytest.raises(
        CheckpointError, match=r"1 tensor\(s\) missing: encoder\.down_blocks\.1\.resnets\.0\.conv_shortcut\.weight"
    ):
        load_strict(model, state, "np.pth")


def test_unexpected_tensor_is_named(full_state, model):
    state = dict(full_state, **{"encoder.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected: encoder\.extra\.weight"):
        load_strict(model, state, "np.pth")


def test_misshaped_tensor_is_named_with_both_shapes(full_state, model):
    state = dict(full_state, **{"encoder.conv_in.weight": torch.zeros(256, 4, 3, 3)})
    with pytest.raises(
        CheckpointError,
        match=r"wrong shape: encoder\.conv_in\.weight \(file \(256, 4, 3, 3\), model \(256, 3, 3, 3\)\)",
    ):
        load_strict(model, state, "np.pth")


def test_failed_load_leaves_the_model_unchanged(full_state, model):
    before = model.encoder.conv_out.bias.clone()
    state = {k: v + 1 for k, v in full_state.items() if k != "encoder.conv_in.bias"}
    with pytest.raises(CheckpointError):
        load_strict(model, state, "np.pth")
    torch.testing.assert_close(model.encoder.conv_out.bias, before)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_is_refused(tmp_path, full_state, suffix):
    path = tmp_path / f"np{suffix}"
    small = {k: v for k, v in list(full_state.items())[:10]}
    torch.save(small, path) if suffix == ".pth" else save_file(small, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(path)


def test_pickle_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"encoder.conv_in.bias": torch.zeros(256), "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused.*could run code"):
        read_state_dict(path)
    assert not marker.exists()


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "np.pth"
    torch.save({"encoder.conv_in.bias": [1, 2, 3]}, path)
    with pytest.raises(CheckpointError, match="'encoder.conv_in.bias' is a list, not a tensor"):
        read_state_dict(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "absent.pth")
