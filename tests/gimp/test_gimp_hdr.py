"""High dynamic range in a real headless GIMP: a linear-light float layer with highlights of 1.5 and 4.0
and an out-of-gamut -0.1 is upscaled, not refused, and the result layer holds them; NaN is refused with
a message that names the layer. Built on test_gimp_plugin.py's harness (tests/gimp/scenarios.py runs the
scenarios inside GIMP)."""

import struct
import sys

import numpy as np
import pytest
from test_gimp_plugin import (  # noqa: F401 (the fixtures: GIMP, a worker, a shared folder)
    by_name,
    expected,
    gimp,
    photo_layer,
    pixels,
    run_gimp,
    same_image,
    scenario,
    worker,
    workspace,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the GIMP harness uses a Linux chroot or Debian's GIMP")
SIZE = (24, 20)
LINEAR = {"canvas": SIZE, "precision": "float-linear", "arguments": {"scale": 2.0}}
BLOCKS = {1.5: np.s_[2:9, 2:9], 4.0: np.s_[2:9, 13:21], -0.1: np.s_[12:18, 2:9]}  # rows, columns


def encoded(linear: np.ndarray) -> np.ndarray:
    """The sRGB curve as babl extends it beyond [0, 1] (the power law above 1, the straight part below 0)."""
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.abs(linear) ** (1 / 2.4) - 0.055)


def decoded(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((np.abs(values) + 0.055) / 1.055) ** 2.4)


def hdr_layer() -> np.ndarray:
    """Linear light: 0.5 with blocks of 1.5, 4.0 and -0.1."""
    linear = np.full((SIZE[1], SIZE[0], 3), 0.5, np.float32)
    for value, block in BLOCKS.items():
        linear[block] = value
    return linear


def layer_bytes(linear: np.ndarray) -> list[int]:
    """Raw floats for scenarios.py, which writes them through the sRGB curve ("R'G'B' float")."""
    return list(struct.pack(f"={linear.size}f", *encoded(linear.astype(np.float64)).ravel()))


@pytest.fixture(scope="module")
def hdr_run(gimp, workspace, worker):
    nan = hdr_layer()
    nan[10, 11] = np.nan
    cases = [
        scenario("hdr", [photo_layer(size=SIZE, sample="float", pixels=layer_bytes(hdr_layer()))], **LINEAR),
        scenario("nan", [photo_layer("sky", size=SIZE, sample="float", pixels=layer_bytes(nan))], **LINEAR),
    ]
    env = {"INVSR_RUNTIME_DIR": gimp.inside(workspace / "run")}
    env["INVSR_GIMP_SETTINGS"] = gimp.inside(workspace / "absent.json")
    return run_gimp(gimp, workspace, "hdr", cases, env)


def test_linear_float_highlights_and_negatives_survive_the_upscale(hdr_run, pipeline):
    folder, results = hdr_run
    result = results["hdr"]
    assert result["status"] == "success", result["error"]
    source, upscaled = by_name(result["before"], "photo"), by_name(result["after"], "photo (InvSR ×2)")
    sent = pixels(folder, source)  # what the plug-in sends: the perceptual encoding, in float
    np.testing.assert_allclose(decoded(sent.astype(np.float64)), hdr_layer(), atol=2e-4)  # it holds 1.5, 4.0, -0.1
    got = pixels(folder, upscaled)
    np.testing.assert_allclose(got, expected(pipeline, sent, {"scale": 2.0}), atol=2e-5)  # the library's, unclipped
    clipped = expected(pipeline, np.clip(sent, 0, 1), {"scale": 2.0})  # what clipping alone would have given
    inner = {value: tuple(slice(2 * s.start + 3, 2 * s.stop - 3) for s in block) for value, block in BLOCKS.items()}
    for value, block in inner.items():  # inside each block: the model's result plus all that lay beyond [0, 1]
        beyond = float(encoded(np.float64(value)) - np.clip(encoded(np.float64(value)), 0, 1))
        np.testing.assert_allclose(got[block] - clipped[block], beyond, atol=1e-4)
    linear = decoded(got.astype(np.float64))  # the layer's own values (the random test model moves them a little)
    assert np.median(linear[inner[4.0]]) > 2.5 and linear.max() > 3.5 and np.median(linear[inner[-0.1]]) < -0.05


def test_nan_is_refused_naming_the_layer_and_saying_what_to_do(hdr_run):
    folder, results = hdr_run
    result = results["nan"]
    assert result["status"] == "execution-error"
    assert "the layer 'sky'" in result["error"] and "NaN or infinite" in result["error"], result["error"]
    assert "(the first at x 11, y 10)" in result["error"] and "give those pixels finite values" in result["error"]
    assert same_image(folder, result["before"], result["after"])
