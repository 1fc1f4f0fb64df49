"""Colour fixes: `none` changes nothing, `wavelet` takes its low frequencies from the reference, `ycbcr`
keeps the result's luma, and the reference lines up with the result even when the input was padded."""

import numpy as np
import pytest
import torch

from invsr.color_fix import apply_color_fix, reference_for, rgb_to_ycbcr, wavelet_split
from invsr.request import UpscaleRequest


@pytest.fixture
def pair():
    """A result whose tone drifted from its reference, with fine detail of its own; nothing near 0 or 1."""
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, 16, 24, generator=generator) * 0.4 + 0.3
    reference = reference_for(lr, (64, 96))
    detail = 0.05 * (torch.rand(1, 3, 64, 96, generator=generator) - 0.5)
    sr = 0.8 * reference + 0.15 + detail
    return sr, reference


def test_none_is_identity(pair):
    sr, reference = pair
    assert torch.equal(apply_color_fix("none", sr, reference), sr)


def test_wavelet_takes_low_frequencies_from_reference_and_detail_from_result(pair):
    sr, reference = pair
    fixed = apply_color_fix("wavelet", sr, reference)
    high, low = wavelet_split(fixed)
    torch.testing.assert_close(low, wavelet_split(reference)[1], atol=0.02, rtol=0)
    torch.testing.assert_close(high, wavelet_split(sr)[0], atol=0.02, rtol=0)
    assert (low - wavelet_split(sr)[1]).abs().mean() > 0.02  # it did change the tone


def test_wavelet_split_adds_up_exactly():
    x = torch.rand(1, 3, 5, 1)  # tiny sides: replicate padding must still work
    high, low = wavelet_split(x)
    torch.testing.assert_close(high + low, x)


def test_ycbcr_keeps_the_result_luma_and_takes_reference_chroma(pair):
    sr, reference = pair
    fixed = rgb_to_ycbcr(apply_color_fix("ycbcr", sr, reference))
    torch.testing.assert_close(fixed[:, 0], rgb_to_ycbcr(sr)[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(fixed[:, 1:], rgb_to_ycbcr(reference)[:, 1:], atol=0.02, rtol=0)


def test_reference_is_built_from_the_unpadded_input(pipeline):
    # 49 x 33 is padded to 64 x 48 inside; a reference made from the padded input would be stretched
    # against the result. The result's low frequencies must follow the unpadded input's big blocks.
    rows, cols = np.indices((33, 49))
    lr = np.where(((rows // 12) + (cols // 12)) % 2 == 1, 220, 40).astype(np.uint8)
    lr = np.dstack([lr, 255 - lr, np.full_like(lr, 128)])
    result = pipeline.upscale(lr, UpscaleRequest(color_fix="wavelet")).image
    out = torch.from_numpy(result).permute(2, 0, 1)[None].float() / 255
    source = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    aligned = reference_for(source, out.shape[-2:])
    # The reference implementation's defect: the padded input stretched to the output size.
    padded = torch.nn.functional.pad(source, (0, 15, 0, 15), mode="reflect")
    misaligned = reference_for(padded, out.shape[-2:])
    error_aligned = (wavelet_split(out)[1] - wavelet_split(aligned)[1]).abs().mean()
    error_misaligned = (wavelet_split(out)[1] - wavelet_split(misaligned)[1]).abs().mean()
    assert error_misaligned > 1.5 * error_aligned  # measured: 0.092 against 0.041


@pytest.mark.parametrize("method, apart", [("ycbcr", 4 / 255), ("wavelet", 0.5 / 255)])  # measured 27.5 and 0.6 levels
def test_the_reference_overshoots_at_sharp_edges_as_the_reference_implementations_does(pipeline, method, apart):
    """The colour fix's reference is the input enlarged with antialiased bicubic, not clamped to [0, 1]
    (the reference implementation clamps only the fixed result): at a sharp edge between saturated
    colours bicubic overshoots, and clamping that would change the chroma by up to 27 levels of 255 here (ycbcr)."""
    rows, cols = np.indices((24, 32))
    image = np.zeros((24, 32, 3), np.float32)
    image[..., 0] = cols < 16  # red left, blue right, a green bar across
    image[..., 2] = cols >= 16
    image[8:12] = (0, 1, 0)
    none = pipeline.upscale(image, UpscaleRequest(color_fix="none")).image
    fixed = pipeline.upscale(image, UpscaleRequest(color_fix=method)).image
    lr = torch.from_numpy(image).permute(2, 0, 1)[None]
    sr = torch.from_numpy(none).permute(2, 0, 1)[None]
    overshooting = torch.nn.functional.interpolate(lr, size=(96, 128), mode="bicubic", antialias=True)
    want = apply_color_fix(method, sr, overshooting)[0].permute(1, 2, 0).numpy()
    clamped = apply_color_fix(method, sr, overshooting.clamp(0, 1))[0].permute(1, 2, 0).numpy()
    assert np.abs(want - clamped).max() > apart  # the case tells the two apart
    np.testing.assert_allclose(fixed, want, atol=2e-6, rtol=0)


# MATLAB's rgb2ycbcr, which the reference uses: BT.601 in studio range, from its published coefficients.
MATLAB_YCBCR = torch.tensor([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]).double()
MATLAB_OFFSET = torch.tensor([16.0, 128.0, 128.0]).double()[:, None, None]


def matlab_ycbcr(rgb):
    return (torch.einsum("ij,njhw->nihw", MATLAB_YCBCR, rgb.double()) + MATLAB_OFFSET) / 255


def matlab_rgb(ycbcr):
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(MATLAB_YCBCR), ycbcr * 255 - MATLAB_OFFSET)


def test_ycbcr_clamps_what_it_converts_as_the_reference_does_in_studio_range():
    """The reference converts to studio-range YCbCr and clamps that to [0, 1]: chroma that bicubic pushed
    beyond it is clipped there (a level at saturated edges), chroma within it is kept as it is."""
    sr = torch.full((1, 3, 2, 2), 0.5)
    colours = [[1.3, -0.1, 0.5], [0.0, 0.0, 1.25], [0.2, 0.8, 0.4], [1.0, 0.0, 1.0]]  # overshooting, or not
    reference = torch.tensor(colours).T.reshape(1, 3, 2, 2)
    converted = matlab_ycbcr(reference)
    clipped = (converted < 0) | (converted > 1)
    assert clipped[:, 1:].any() and not clipped[:, 1:].all()  # the case has chroma both clipped and kept
    luma, chroma = matlab_ycbcr(sr).clamp(0, 1)[:, :1], converted.clamp(0, 1)[:, 1:]
    want = matlab_rgb(torch.cat([luma, chroma], dim=1)).clamp(0, 1).float()
    torch.testing.assert_close(apply_color_fix("ycbcr", sr, reference), want, atol=1e-6, rtol=0)


def test_unknown_method_is_refused(pair):
    from invsr.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="unknown colour fix 'lab'"):
        apply_color_fix("lab", *pair)
