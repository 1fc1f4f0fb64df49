"""The whole pipeline on tiny random weights loaded from disk: sizes, ranges, determinism, every step
count, the sampler's arithmetic against diffusers' own Euler scheduler, and the prompt cache."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compile_helpers import compile_with, no_compiler  # noqa: F401 (compile_with: a fixture)

from invsr.color_fix import apply_color_fix, reference_for, wavelet_split
from invsr.errors import DeviceError, InvalidImage, InvalidRequest
from invsr.pipeline import InvSRPipeline
from invsr.request import UpscaleRequest
from invsr.sampling import Noise, sample
from invsr.tiles.grid import pad_to_multiple


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def test_output_is_four_times_the_input_in_the_same_dtype_and_range(pipeline, small_photo):
    result = pipeline.upscale(small_photo)
    assert result.image.shape == (96, 160, 3)
    assert result.image.dtype == np.uint8
    assert result.report["input_size"] == [40, 24] and result.report["output_size"] == [160, 96]


def test_the_detail_of_the_result_is_the_networks(pipeline, small_photo):
    """The wavelet colour fix takes the low frequencies from the input, so a result looks like an image even
    if the networks output a constant: its detail (high frequencies) is what only the networks make. It is
    theirs (as they give it with no colour fix), and far more than a flat output would leave."""
    result = as_tensor(pipeline.upscale(small_photo, UpscaleRequest(seed=2)).image)
    networks = as_tensor(pipeline.upscale(small_photo, UpscaleRequest(seed=2, color_fix="none")).image)
    detail, their_detail = wavelet_split(result)[0], wavelet_split(networks)[0]
    correlation = np.corrcoef(detail.flatten().numpy(), their_detail.flatten().numpy())[0, 1]
    assert correlation > 0.9  # measured 0.96; a constant has no detail (NaN)
    flat = apply_color_fix("wavelet", torch.full_like(result, 0.5), reference_for(as_tensor(small_photo), (96, 160)))
    assert detail.abs().mean() > 3 * wavelet_split(flat)[0].abs().mean()  # measured 0.123 against 0.025


@pytest.mark.parametrize("height, width", [(1, 1), (1, 37), (13, 7), (16, 16), (33, 2)])
def test_any_size_works_in_one_pass(pipeline, photo, height, width):
    result = pipeline.upscale(photo[:height, :width].copy())
    assert result.image.shape == (4 * height, 4 * width, 3)


def test_same_seed_same_output_and_different_seeds_differ(pipeline, small_photo):
    first = pipeline.upscale(small_photo, UpscaleRequest(seed=7)).image
    again = pipeline.upscale(small_photo, UpscaleRequest(seed=7)).image
    other = pipeline.upscale(small_photo, UpscaleRequest(seed=8)).image
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != other) > 0.5


def test_no_global_random_state_is_touched(pipeline, small_photo):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pipeline.upscale(small_photo)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_every_step_count_runs_its_default_timesteps(pipeline, small_photo, steps):
    from invsr.schedule import DEFAULT_TIMESTEPS

    result = pipeline.upscale(small_photo, UpscaleRequest(steps=steps))
    assert result.report["timesteps"] == list(DEFAULT_TIMESTEPS[steps])
    assert result.image.shape == (96, 160, 3)


def test_step_counts_give_different_results(pipeline, small_photo):
    one = pipeline.upscale(small_photo, UpscaleRequest(steps=1)).image.astype(int)
    three = pipeline.upscale(small_photo, UpscaleRequest(steps=3)).image.astype(int)
    assert np.abs(one - three).mean() > 1


def test_explicit_timesteps_are_reported(pipeline, small_photo):
    result = pipeline.upscale(small_photo, UpscaleRequest(timesteps=(150, 100, 50)))
    assert result.report["timesteps"] == [150, 100, 50] and result.report["steps"] == 3


def test_report_says_what_was_done(pipeline, small_photo):
    report = pipeline.upscale(small_photo, UpscaleRequest(seed=3, color_fix="ycbcr")).report
    assert report["seed"] == 3 and report["color_fix"] == "ycbcr"
    assert report["device"] == "cpu" and report["dtype"] == "fp32"
    assert set(report["seconds"]) == {"vae_encode", "noise_predictor", "unet", "vae_decode", "color_fix", "finish"}
    assert report["tiling"]["tiles"] == 1 and report["tiling"]["work_ratio"] >= 1
    assert report["peak_memory"]["host_peak_rss_bytes"] > 0
    assert report["weights"]["tiny_random"] is True and "NOT A REAL UPSCALE" in report["warning"]


def test_progress_reports_the_tile_then_the_finish(pipeline, small_photo):
    seen = []
    pipeline.upscale(small_photo, UpscaleRequest(steps=2), progress=seen.append)
    assert [(p.stage, p.done, p.total) for p in seen] == [("tiles", 1, 2), ("finish", 2, 2)]


def test_auto_steps_reports_its_measurements(pipeline, small_photo):
    report = pipeline.upscale(small_photo, UpscaleRequest(steps="auto")).report
    auto = report["steps_auto"]
    assert auto["steps"] == report["steps"] and {"noise_sigma", "blur_effect", "reason"} <= set(auto)


@pytest.mark.parametrize(
    "request_fields, message",
    [
        ({"steps": 7}, "steps must be an integer from 1 to 5"),
        ({"steps": "many"}, "or 'auto'"),
        ({"steps": "auto", "timesteps": (200,)}, "do not give timesteps as well"),
        ({"color_fix": "lab"}, "color_fix must be one of wavelet, ycbcr, none"),
        ({"seed": -1}, "seed must be an integer"),
        ({"scale": 0.5}, "scale must be a number from 1 to 16"),
        ({"scale": 4, "width": 100}, "not both"),
        ({"width": 0}, "width must be a positive whole number"),
        ({"tile": 100}, "tile must be 'auto' or a multiple of 16"),
        ({"tile": 64, "overlap": 32}, "overlap 32 is too large for tile 64"),
        ({"tile_batch": 0}, "tile_batch must be 'auto' or from 1"),
    ],
)
def test_bad_requests_fail_before_any_work(request_fields, message):
    with pytest.raises(InvalidRequest, match=message):
        UpscaleRequest(**request_fields)


@pytest.mark.parametrize(
    "field", ["steps", "timesteps", "color_fix", "seed", "scale", "width", "height", "tile", "overlap", "tile_batch"]
)
@pytest.mark.parametrize("value", [200, -3, 2.5, float("nan"), True, "x", [], [1, "a"], {"a": 1}])
def test_any_bad_type_from_json_is_an_invalid_request(field, value):
    """The worker builds requests from a client's JSON: a wrong type is the client's error, never a crash."""
    try:
        request = UpscaleRequest.from_dict({field: value})
    except InvalidRequest as error:
        assert field.rstrip("s") in str(error)  # the message names the field
    else:
        assert getattr(request, field) == value  # accepted only as given, e.g. seed 200


def test_a_request_that_is_not_an_object_is_an_invalid_request():
    with pytest.raises(InvalidRequest, match="object of named fields"):
        UpscaleRequest.from_dict([("steps", 1)])


@pytest.mark.parametrize("tile", [16, 32, 48, 64])
def test_a_small_tile_without_an_overlap_gets_as_much_overlap_as_it_allows(pipeline, small_photo, tile):
    tiling = pipeline.upscale(small_photo, UpscaleRequest(tile=tile)).report["tiling"]
    multiple = pipeline.models.lr_multiple
    assert tiling["tile"] == tile and tiling["overlap"] == min(16, (tile - multiple) // 2)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 5), np.uint8), "1 to 4 channels"),
        (np.zeros((4, 4, 3), np.int32), "uint8, uint16 or float32"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((4, 4, 3), -np.inf, np.float32), "NaN or infinite"),  # values beyond [0, 1] are upscaled (issue 15)
        (np.zeros((2, 2, 2, 2), np.uint8), "shape"),
        ([[0, 1]], "numpy array"),
    ],
)
def test_bad_pixels_are_refused_clearly(pipeline, image, message):
    with pytest.raises(InvalidImage, match=message):
        pipeline.upscale(image)


def test_gray_alpha_16_bit_and_float_keep_their_layout(pipeline, small_photo):
    gray16 = small_photo[..., 0].astype(np.uint16) * 257
    assert pipeline.upscale(gray16).image.shape == (96, 160)
    assert pipeline.upscale(gray16).image.dtype == np.uint16
    rgba = np.dstack([small_photo, np.full(small_photo.shape[:2], 255, np.uint8)])
    out = pipeline.upscale(rgba).image
    assert out.shape == (96, 160, 4) and (out[..., 3] == 255).all()
    as_float = small_photo.astype(np.float32) / 255
    out = pipeline.upscale(as_float).image
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("scale", [1.4, 2, 3])
def test_alpha_of_an_image_one_pixel_wide_keeps_its_ramp(pipeline, scale):
    """Alpha 0..255 down a column 5 high comes back rising from 0 to 255, the same as along a row 5 wide:
    torch's resampling, used for alpha before, made a column's alpha all 0 at scale 1.4 (1 pixel wide)."""
    ramp = np.linspace(0, 255, 5).astype(np.uint8)
    column = np.dstack([np.full((5, 1, 3), 120, np.uint8), ramp[:, None]])
    alpha = pipeline.upscale(column, UpscaleRequest(scale=scale)).image[..., 3]
    row_alpha = pipeline.upscale(column.transpose(1, 0, 2).copy(), UpscaleRequest(scale=scale)).image[..., 3]
    np.testing.assert_array_equal(alpha, row_alpha.T)  # torch was right along a row
    steps = np.diff(alpha[:, 0].astype(int))
    assert alpha[0, 0] == 0 and alpha[-1, 0] == 255 and (steps >= 0).all() and steps.sum() == 255
    assert len(np.unique(alpha)) >= 5


def test_sixteen_bit_input_keeps_more_than_256_levels(pipeline):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = pipeline.upscale(np.dstack([ramp] * 3), UpscaleRequest(color_fix="none")).image
    assert out.dtype == np.uint16 and len(np.unique(out)) > 1024


def test_padding_mirrors_when_it_can_and_repeats_edges_when_it_cannot():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 4)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 1]  # mirrored: 1 column from a side of 3
    assert padded[0, 0, :, 0].tolist() == [0, 3, 3, 3]  # repeated: 2 rows from a side of 2
    one = torch.ones(1, 1, 1, 1)
    assert pad_to_multiple(one, 16).shape == (1, 1, 16, 16)  # mirroring a 1-pixel side is impossible


def reference_sample(models, scheduler_dir, lr, timesteps, noise):
    """The same inference written with diffusers' EulerDiscreteScheduler (SD-Turbo's own config)."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_pretrained(scheduler_dir)
    scheduler.set_timesteps(timesteps=[t - 1 for t in timesteps])
    with torch.no_grad():
        up = F.interpolate(lr, scale_factor=4, mode="bicubic") * 2 - 1
        dist = models.vae.encode(up).latent_dist
        z0 = (dist.mean + dist.std * noise.encoder) * models.vae.config.scaling_factor
        mean, logvar = models.noise_predictor(lr * 2 - 1, timesteps[0] - 1).chunk(2, dim=1)
        x = z0 + scheduler.sigmas[0] * (mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * noise.predictor)
        for t in scheduler.timesteps:
            eps = models.unet(
                scheduler.scale_model_input(x, t), t, encoder_hidden_states=models.prompt_embedding
            ).sample
            x = scheduler.step(eps, t, x).prev_sample
        return (models.vae.decode(x / models.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)


@pytest.mark.parametrize("timesteps", [(200,), (200, 100), (250, 200, 150, 100, 50)])
def test_sampler_matches_diffusers_euler_scheduler(pipeline, tiny_weights, timesteps):
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, 32, 48, generator=generator)
    noise = Noise(torch.randn(1, 4, 16, 24, generator=generator), torch.randn(1, 4, 16, 24, generator=generator))
    ours = sample(pipeline.models, lr, timesteps, noise)
    theirs = reference_sample(pipeline.models, tiny_weights.sd_turbo / "scheduler", lr, timesteps, noise)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)


def test_prompt_embedding_is_cached_so_later_loads_skip_the_text_encoder(tiny_weights, tmp_path, small_photo):
    copy = tmp_path / "weights"
    shutil.copytree(tiny_weights.sd_turbo.parent, copy)
    from invsr.weights import locate

    first = InvSRPipeline.load(locate(copy), device="cpu")
    assert first.load_report["prompt_embedding_cached"] is False
    expected = first.upscale(small_photo).image
    shutil.rmtree(copy / "sd-turbo" / "text_encoder")
    shutil.rmtree(copy / "sd-turbo" / "tokenizer")
    second = InvSRPipeline.load(locate(copy), device="cpu")
    assert second.load_report["prompt_embedding_cached"] is True
    np.testing.assert_array_equal(second.upscale(small_photo).image, expected)


def test_replaced_text_encoder_invalidates_the_cached_embedding(tiny_weights, tmp_path):
    from invsr.prompt import prompt_embedding
    from invsr.tiny_weights import write_tiny_weights

    copy = tmp_path / "weights"
    shutil.copytree(tiny_weights.sd_turbo.parent, copy)
    before, _ = prompt_embedding(copy / "sd-turbo")
    write_tiny_weights(tmp_path / "other", seed=1)
    shutil.copytree(
        tmp_path / "other" / "sd-turbo" / "text_encoder", copy / "sd-turbo" / "text_encoder", dirs_exist_ok=True
    )
    after, cached = prompt_embedding(copy / "sd-turbo")
    assert cached is False and not torch.allclose(before, after)


def test_channels_last_layout_gives_the_same_result(tiny_weights, small_photo):
    # optimize(compile=True) also compiles the networks; on a CPU that takes minutes, so the GPU
    # benchmark exercises it (bench/gpu/run.py).
    pipeline = InvSRPipeline.load(tiny_weights, device="cpu")
    expected = pipeline.upscale(small_photo).image
    pipeline.optimize(compile=False)
    assert pipeline.load_report["optimized"] == {"channels_last": True, "compile": False}
    assert np.abs(pipeline.upscale(small_photo).image.astype(int) - expected).max() <= 1


def test_compiled_networks_are_traced_once_for_every_image_size_step_count_and_timestep(
    tiny_weights, small_photo, compile_with
):
    """torch.compile compiles again for each new input shape and for each new Python number it sees: a
    worker started with --compile must not pay that again for another image size, another --steps or
    other timesteps. Traced here by TorchDynamo as on a GPU, with a backend that runs the traced graphs
    as they are (inductor's code generation takes minutes on a CPU)."""
    traced = []

    def counting_backend(graph, example_inputs):
        traced.append(graph)
        return graph.forward

    compile_with(counting_backend)
    pipeline = InvSRPipeline.load(tiny_weights, device="cpu")
    pipeline.optimize(compile=True)
    seen = []
    first = pipeline.upscale(small_photo, UpscaleRequest(steps=1, seed=1), progress=seen.append)
    after_first_job = len(traced)
    assert after_first_job > 0 and first.report["tiling"]["static_shapes"]
    assert [p.stage for p in seen][:2] == ["compiling", "tiles"] and seen[
        1
    ].eta is None  # no pace from a compiling batch
    seen.clear()
    for height, width, request in [
        (24, 40, UpscaleRequest(steps=3)),
        (60, 44, UpscaleRequest(timesteps=(250, 120))),
        (32, 32, UpscaleRequest(steps=5, seed=2)),
    ]:
        pipeline.upscale(small_photo[:height, :width], request, progress=seen.append)
    assert len(traced) == after_first_job
    assert "compiling" not in [p.stage for p in seen]  # the progress bar says "compiling" only when it is


def test_compiling_that_fails_is_a_clear_error_that_says_what_to_do(tiny_weights, small_photo, compile_with):
    """A machine without a C++ compiler (CPU) or Triton (GPU) cannot compile: say so, not a traceback."""
    compile_with(no_compiler)
    pipeline = InvSRPipeline.load(tiny_weights, device="cpu")
    pipeline.optimize(compile=True)
    with pytest.raises(
        DeviceError,
        match=r"compiling the networks failed \(RuntimeError: simulated: no C\+\+ compiler found\); "
        r"run without --compile",
    ):
        pipeline.upscale(small_photo)
