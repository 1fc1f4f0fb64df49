"""Any scale and any shape, exactly the size asked for; alpha without halos; gray, 16-bit and float
in and out as such; and limits that refuse a job before any work."""

import numpy as np
import pytest
import torch
from sample_images import hdr_image

from invsr.errors import InvalidImage, InvalidRequest
from invsr.pixels import Colour, Pixels
from invsr.request import UpscaleRequest


@pytest.mark.parametrize("scale", [1, 1.5, 2, 3, 4, 6.25, 16])
def test_output_is_exactly_round_of_side_times_scale(pipeline, photo, scale):
    image = photo[:13, :21].copy()
    result = pipeline.upscale(image, UpscaleRequest(scale=scale))
    assert result.image.shape == (round(13 * scale), round(21 * scale), 3)
    assert result.report["output_size"] == [round(21 * scale), round(13 * scale)]


def test_exact_width_and_height(pipeline, small_photo):
    assert pipeline.upscale(small_photo, UpscaleRequest(width=123, height=77)).image.shape == (77, 123, 3)
    assert pipeline.upscale(small_photo, UpscaleRequest(width=100)).image.shape == (60, 100, 3)  # 24 * 100 / 40
    assert pipeline.upscale(small_photo, UpscaleRequest(height=48)).image.shape == (48, 80, 3)


def test_sizes_beyond_the_range_are_refused(pipeline, small_photo):
    with pytest.raises(InvalidRequest, match="InvSR enlarges from 1x to 16x"):
        pipeline.upscale(small_photo, UpscaleRequest(width=20))
    with pytest.raises(InvalidRequest, match="InvSR enlarges from 1x to 16x"):
        pipeline.upscale(small_photo, UpscaleRequest(width=700))


def test_scale_below_four_is_the_x4_result_reduced(pipeline, small_photo):
    x4 = pipeline.upscale(small_photo, UpscaleRequest(scale=4)).image.astype(np.float32)
    x2 = pipeline.upscale(small_photo, UpscaleRequest(scale=2)).image.astype(np.float32)
    reduced = x4.reshape(48, 2, 80, 2, 3).mean(axis=(1, 3))
    assert np.abs(x2 - reduced).mean() < 4  # antialiased bicubic, not a box, so close rather than equal


# 1 x 1200: a tile row of 11 tiles padded from one pixel (wider costs only time: tiles are independent)
@pytest.mark.parametrize("height, width", [(1, 1), (1, 1200), (1200, 1), (2, 3), (17, 1)])
def test_tiny_and_extreme_shapes(pipeline, height, width):
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    assert pipeline.upscale(image, UpscaleRequest(scale=1)).image.shape == (height, width, 3)


def test_one_pixel_image_at_sixteen_times(pipeline):
    assert pipeline.upscale(np.full((1, 1, 3), 128, np.uint8), UpscaleRequest(scale=16)).image.shape == (16, 16, 3)


def halo_test_image(hidden_color):
    """An opaque red disc on a fully transparent background whose hidden colour is `hidden_color`."""
    rows, cols = np.indices((48, 48))
    inside = (rows - 24) ** 2 + (cols - 24) ** 2 < 15**2
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., :3] = hidden_color
    rgba[inside] = (200, 30, 30, 255)
    return rgba, inside


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
@pytest.mark.parametrize("height, width", [(1, 1), (1, 5), (6, 1), (2, 2), (7, 9)])
def test_the_colour_kept_in_the_inputs_type_gives_the_float_colour_of_the_whole(dtype, channels, height, width):
    """8- and 16-bit colour is held for the job in its own type (3 bytes a pixel for 8-bit RGB, not 12) and
    made float tile by tile: any rows and columns give the values, and the memory layout (which the networks'
    rounding follows), of the input made float32 whole and divided by its maximum."""
    rng = np.random.default_rng(height * width)
    shape = (height, width) if channels is None else (height, width, channels)
    maximum = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[dtype]
    array = (rng.integers(0, maximum + 1, shape) if dtype != np.float32 else rng.random(shape)).astype(dtype)
    values = torch.from_numpy(array.astype(np.float32)) / float(maximum)
    values = (values[..., None] if channels is None else values).permute(2, 0, 1)[None]
    whole = (values[:, :1].expand(-1, 3, -1, -1) if values.shape[1] <= 2 else values[:, :3]).contiguous()
    colour = Pixels.from_array(array).colour
    rows, cols = torch.tensor([height - 1, 0, 0]), torch.tensor([0, width - 1, width // 2])
    taken = colour.take(rows, cols)
    assert torch.equal(taken, whole[..., rows, :][..., cols]) and colour.layout == Colour.of(whole).layout
    assert torch.equal(colour.float(), whole)
    if dtype != np.float32:
        colour_channels = 1 if (channels or 1) <= 2 else 3
        assert colour.values.untyped_storage().nbytes() == height * width * colour_channels * array.itemsize


def test_hidden_colour_under_transparent_pixels_leaves_no_halo(pipeline):
    with_green, inside = halo_test_image((0, 255, 0))
    with_black, _ = halo_test_image((0, 0, 0))
    green = pipeline.upscale(with_green).image
    black = pipeline.upscale(with_black).image
    visible = green[..., 3] > 0
    # What is under invisible pixels must not matter for what is visible...
    np.testing.assert_array_equal(green[visible], black[visible])
    # ...although, left in place, it would bleed into the visible edge (this is what the fill prevents).
    raw_green = pipeline.upscale(with_green[..., :3].copy()).image
    raw_black = pipeline.upscale(with_black[..., :3].copy()).image
    edge = visible & (green[..., 3] < 255)
    assert np.abs(raw_green[edge].astype(int) - raw_black[edge]).mean() > 20


def test_fill_gives_transparent_pixels_the_nearest_visible_colour():
    import torch

    from invsr.pixels import fill_transparent

    rgba, inside = halo_test_image((0, 255, 0))
    values = torch.from_numpy(rgba).permute(2, 0, 1)[None].float() / 255
    filled = fill_transparent(values[:, :3], values[:, 3:])
    torch.testing.assert_close(filled[0, :, 0, 0], torch.tensor([200, 30, 30]) / 255)  # far corner: the disc's red
    assert torch.equal(filled[..., torch.from_numpy(inside)], values[:, :3][..., torch.from_numpy(inside)])


def test_opaque_stays_opaque_and_transparent_stays_transparent(pipeline):
    rgba, inside = halo_test_image((0, 255, 0))
    alpha = pipeline.upscale(rgba).image[..., 3]
    core = np.kron(inside, np.ones((4, 4), bool))
    rows, cols = np.indices(alpha.shape)
    far_inside = (rows - 96) ** 2 + (cols - 96) ** 2 < 50**2
    far_outside = (rows - 96) ** 2 + (cols - 96) ** 2 > 70**2
    assert (alpha[far_inside] == 255).all() and (alpha[far_outside] == 0).all()
    assert core.sum() > 0
    opaque = np.dstack([rgba[..., :3], np.full((48, 48), 255, np.uint8)])
    assert (pipeline.upscale(opaque, UpscaleRequest(scale=3)).image[..., 3] == 255).all()


@pytest.mark.parametrize("dtype, maximum", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0)])
def test_gray_and_gray_alpha_in_and_out_at_every_precision(pipeline, small_photo, dtype, maximum):
    gray = (small_photo[..., 0].astype(np.float64) / 255 * maximum).astype(dtype)
    gray_alpha = np.dstack([gray, np.full_like(gray, maximum)])
    out = pipeline.upscale(gray).image
    assert out.shape == (96, 160) and out.dtype == dtype
    out = pipeline.upscale(gray_alpha).image
    assert out.shape == (96, 160, 2) and out.dtype == dtype and (out[..., 1] == maximum).all()


def test_float_precision_is_not_quantised(pipeline):
    ramp = np.linspace(0.2, 0.8, 64 * 64, dtype=np.float32).reshape(64, 64)
    out = pipeline.upscale(np.dstack([ramp] * 3), UpscaleRequest(color_fix="none")).image
    assert len(np.unique(out)) > 10 * 256  # far more levels than 8 bits could hold


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((8, 8, 3), np.inf, np.float32), "NaN or infinite"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
        (np.zeros((8, 8, 6), np.uint8), "1 to 4 channels"),
        (np.zeros((8, 0), np.uint8), "empty"),
    ],
)
def test_bad_input_is_refused_before_any_work(pipeline, image, message):
    seen = []
    with pytest.raises(InvalidImage, match=message):
        pipeline.upscale(image, progress=seen.append)
    assert seen == []


def test_pixel_limit_refuses_before_any_work(pipeline, small_photo):
    seen, saved = [], pipeline.max_pixels
    pipeline.max_pixels = 100_000
    try:
        with pytest.raises(InvalidImage, match="needs 0.246 megapixels of work .* over the limit of 0.1;"):
            pipeline.upscale(small_photo, UpscaleRequest(scale=16), progress=seen.append)
        assert seen == []
        assert pipeline.upscale(small_photo, UpscaleRequest(scale=2)).image.shape == (48, 80, 3)
    finally:
        pipeline.max_pixels = saved


def resampled_excess(image, size):
    """What lies outside [0, 1], resampled by torch's own antialiased bicubic (resample.py's filter)."""
    import torch
    import torch.nn.functional as F

    excess = torch.from_numpy(image - np.clip(image, 0, 1)).permute(2, 0, 1)[None].double()
    resampled = F.interpolate(excess, size=size, mode="bicubic", antialias=True, align_corners=False)
    return resampled[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("scale", [2, 2.5])
def test_values_outside_zero_to_one_survive_and_the_rest_gets_the_models_detail(pipeline, scale):
    """The model sees the image clipped to [0, 1]; the excess is resampled on its own and added back."""
    image = hdr_image()
    request = UpscaleRequest(scale=scale)
    out = pipeline.upscale(image, request).image
    clipped = pipeline.upscale(np.clip(image, 0, 1), request).image
    assert out.dtype == np.float32 and out.shape == clipped.shape
    np.testing.assert_allclose(out - clipped, resampled_excess(image, out.shape[:2]), atol=2e-5)
    far = (slice(round(34 * scale), None), slice(round(34 * scale), None))  # beyond the filter's reach of any block
    np.testing.assert_array_equal(out[far], clipped[far])  # in range: exactly the model's result
    s = lambda v: round(v * scale)  # noqa: E731
    for (top, left), beyond in (((8, 24), 3.0), ((8, 8), 0.5), ((24, 8), -0.1)):  # inside each block: all of it
        block = np.s_[s(top) : s(top + 2), s(left) : s(left + 2)]
        assert np.abs(out[block] - clipped[block] - beyond).max() < 1e-5
    assert out.max() > 3.9 and (out[s(24) : s(26), s(8) : s(10)] < 0).any()


def test_gray_float_beyond_one_and_float_alpha(pipeline):
    gray = hdr_image(1)[..., 0]
    out = pipeline.upscale(gray, UpscaleRequest(scale=2)).image
    assert out.shape == (64, 80) and out.max() > 3.9 and out.min() < 0
    with_alpha = np.dstack([gray, np.full_like(gray, 1.25)])  # alpha beyond 1 means opaque: it is clipped
    out = pipeline.upscale(with_alpha, UpscaleRequest(scale=2)).image
    assert out[..., 0].max() > 3.9 and (out[..., 1] == 1.0).all()


def test_integers_and_floats_in_range_are_as_before(pipeline, small_photo):
    """Nothing beyond [0, 1]: no excess, and float results stay in [0, 1] as the model gives them."""
    floats = small_photo.astype(np.float32) / 255
    out = pipeline.upscale(floats).image
    assert 0 <= out.min() and out.max() <= 1
    assert pipeline.upscale(small_photo).image.dtype == np.uint8


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_refused_with_where_and_what_to_do(pipeline, bad):
    image = hdr_image()
    image[5, 7, 1] = bad
    image[9, 2, 0] = bad
    message = r"holds 2 NaN or infinite values \(the first at x 7, y 5\).*give those pixels finite values"
    with pytest.raises(InvalidImage, match=message):
        pipeline.upscale(image)
