"""Tiling: the plan covers every pixel with little extra work, blending hides the borders (and the seam
measure sees them when blending is off), noise is shared, progress and cancellation work per tile, and
running out of device memory falls back to smaller batches and tiles."""

import contextlib
import dataclasses
import pickle
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from invsr.color_fix import apply_color_fix
from invsr.errors import Cancelled, InvalidRequest, OutOfMemory
from invsr.progress import Progress, StageTimer
from invsr.request import UpscaleRequest
from invsr.sampling import Noise, sample
from invsr.tiles import TileDriver, TilePlan, TileRecipe, TileSettings, choose_settings
from invsr.tiles import settings as tile_settings
from invsr.tiles.blend import ramp_weights
from invsr.tiles.grid import Box, PaddedImage, pad_for_networks, plan_axis
from invsr.tiles.noise import NoiseField

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import tile_variants  # noqa: E402  (the benchmarks' comparison tilings, and their seam measure)
from seams import plan_seam_score  # noqa: E402

RECIPE = TileRecipe((200,), "wavelet")


AXES = dict(  # axis lengths, tile sizes and overlaps, in input pixels
    length=st.integers(1, 400).map(lambda n: 16 * n),
    tile=st.integers(2, 64).map(lambda n: 16 * n),
    overlap=st.integers(0, 64),
)


@settings(max_examples=300, deadline=None)
@given(**AXES)
def test_plan_covers_everything_with_bounded_overlap(length, tile, overlap):
    assume(2 * overlap + 16 <= tile)
    spans = plan_axis(length, tile, overlap, 16)
    assert spans[0].start == 0 and spans[-1].end == length
    for span in spans:
        assert span.size % 16 == 0 and span.start % 2 == 0 and 0 < span.size <= tile
    for before, after in zip(spans, spans[1:]):
        assert before.end - after.start >= overlap  # neighbours overlap at least as asked
        assert after.start > before.start
    for first, third in zip(spans, spans[2:]):
        assert first.end <= third.start  # never three tiles over one pixel


@settings(max_examples=300, deadline=None)
@given(**AXES)
def test_uniform_plan_is_full_tiles_spread_evenly(length, tile, overlap):
    assume(2 * overlap + 16 <= tile)
    spans = plan_axis(length, tile, overlap, 16, uniform=True)
    assert spans[0].start == 0 and spans[-1].end == length
    assert all(span.size == min(tile, length) and span.start % 2 == 0 for span in spans)
    assert len(spans) == len(plan_axis(length, tile, overlap, 16))  # no more tiles than the plain plan
    overlaps = [before.end - after.start for before, after in zip(spans, spans[1:])]
    assert all(o >= overlap for o in overlaps) and (not overlaps or max(overlaps) - min(overlaps) <= 2)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 100).map(lambda n: 16 * n), overlap=st.sampled_from([0, 8, 16]))
def test_blending_weights_sum_to_a_positive_partition(length, overlap):
    spans = plan_axis(length, 64, overlap, 16)
    total = torch.zeros(4 * length)
    for index, span in enumerate(spans):
        weights = ramp_weights(spans, index, 4)
        assert weights.shape == (4 * span.size,) and bool((weights > 0).all()) and float(weights.max()) <= 1
        total[4 * span.start : 4 * span.end] += weights
    torch.testing.assert_close(total, torch.ones_like(total))  # complementary ramps: a partition of unity
    assert ramp_weights(spans, 0, 4)[0] == 1  # the image border keeps full weight


@pytest.mark.parametrize("height, width", [(768, 1024), (1000, 1500), (3000, 4000), (4000, 6000)])
def test_default_work_is_at_most_1_35_times_the_image(height, width):
    padded = (-(-height // 16) * 16, -(-width // 16) * 16)
    plan = TilePlan.make((height, width), padded, 128, 16, 16)
    assert plan.describe()["work_ratio"] <= 1.35


def as_lr(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def run_tiles(pipeline, image, tile, overlap, batch=1, out_size=None, compiled_shapes=None):
    """The production engine's result, report and seam score (meaningful at x4)."""
    driver = TileDriver(pipeline.models, pipeline.device, StageTimer(pipeline.device), compiled_shapes=compiled_shapes)
    tiled = driver.run(as_lr(image), RECIPE, 0, TileSettings(tile, overlap, batch), out_size)
    return tiled.image, tiled.report(), plan_seam_score(tiled.image, tiled.plan)


def variant_seam_score(pipeline, image, tile, overlap, **options) -> float:
    """The seam score of one of the benchmarks' comparison tilings (bench/tile_variants.py)."""
    timer = StageTimer(pipeline.device)
    settings = TileSettings(tile, overlap, 1)
    models, device = pipeline.models, pipeline.device
    result, plan = tile_variants.upscale(models, device, as_lr(image), RECIPE, 0, settings, timer, **options)
    return plan_seam_score(result, plan)


def test_a_result_resampled_tile_by_tile_is_the_x4_result_resampled(pipeline, photo):
    """The host never holds the x4 image when another size is asked for: each tile is resampled as it
    arrives, and the sum is what resampling the whole x4 result gives (reduced, and enlarged)."""
    x4, _, _ = run_tiles(pipeline, photo, 48, 8)
    for size in [(160, 200), (700, 500)]:
        resampled, _, _ = run_tiles(pipeline, photo, 48, 8, out_size=size)
        want = F.interpolate(x4.double(), size=size, mode="bicubic", antialias=True, align_corners=False)
        torch.testing.assert_close(resampled.double(), want, atol=2e-6, rtol=0)


def test_blended_tiles_show_no_seams_and_the_measure_sees_a_hard_cut(pipeline, photo):
    _, report, blended = run_tiles(pipeline, photo, 48, 8)
    cut = variant_seam_score(pipeline, photo, 48, 8, hard_cut=True)
    assert report["tiles"] == 9
    assert blended < 0.95  # measured 0.81: steps across borders no larger than elsewhere
    assert cut > 1.05  # measured 1.10: the same measure sees hard cuts


def test_static_shapes_give_the_networks_one_shape_for_every_image_and_no_seams(pipeline, photo):
    """For compiled networks: full tiles in full batches, whatever the image's size."""
    shapes = set()

    def record(module, args, kwargs):
        shapes.add(tuple(args[0].shape))

    hook = pipeline.models.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        for height, width in ((40, 24), (100, 60), (128, 128)):
            result, report, score = run_tiles(pipeline, photo[:height, :width], 48, 8, batch=3, compiled_shapes=set())
            assert result.shape[-2:] == (4 * height, 4 * width) and report["static_shapes"]
            assert bool(torch.isfinite(result).all()) and 0 <= float(result.min()) and float(result.max()) <= 1 + 1e-5
    finally:
        hook.remove()
    assert len(shapes) == 1 and next(iter(shapes))[0] == 3
    assert report["tiles"] == 9 and score < 0.95


def test_tiles_drawing_fresh_noise_disagree_and_blending_hides_it(pipeline, photo):
    # The reference implementation draws fresh noise per tile: with a hard cut the borders stand out
    # (measured 1.41); blending hides them (0.71). Shared noise keeps even a hard cut at 1.10.
    blended = variant_seam_score(pipeline, photo, 48, 8, fresh_noise=True)
    cut = variant_seam_score(pipeline, photo, 48, 8, hard_cut=True, fresh_noise=True)
    shared_cut = variant_seam_score(pipeline, photo, 48, 8, hard_cut=True)
    assert blended < 0.95 and cut > 1.25 and shared_cut < cut


def test_tiled_result_stays_close_to_the_one_tile_result(pipeline, photo):
    one_tile, report, _ = run_tiles(pipeline, photo, 128, 16)
    tiled, _, _ = run_tiles(pipeline, photo, 48, 8)
    assert report["tiles"] == 1
    other_seed = pipeline.upscale(photo, UpscaleRequest(seed=1, tile=128)).image.astype(np.float32) / 255
    seed_difference = np.abs(other_seed - one_tile[0].permute(1, 2, 0).numpy()).mean()
    tiling_difference = (tiled - one_tile).abs().mean().item()
    assert tiling_difference < 0.5 * seed_difference  # measured 0.044 against 0.142


def reference_padding(lr: torch.Tensor, min_side: int) -> tuple[torch.Tensor, int, int]:
    """The reference implementation's padding (sampler_invsr.py, rewritten from its description): while a
    side is shorter than `min_side`, mirror it out on both sides, half before, each step at most the side
    less one pixel; then mirror the far ends out to multiples of 16. Returns the padded image and the
    image's top and left in it. (A 1-pixel side would loop forever there; its pixel is repeated here.)"""
    height, width = lr.shape[-2:]
    up, before = ((min_side - 1) // 2 if side == 1 else 0 for side in (height, width))
    down, after = (min_side - 1 - pad if side == 1 else 0 for side, pad in ((height, up), (width, before)))
    lr, top, left = F.pad(lr, (before, after, up, down), mode="replicate"), up, before
    while min(lr.shape[-2:]) < min_side:
        height, width = lr.shape[-2:]
        up = max(min((min_side - height) // 2, height - 1), 0)
        down = max(min(min_side - height - up, height - 1), 0)
        before = max(min((min_side - width) // 2, width - 1), 0)
        after = max(min(min_side - width - before, width - 1), 0)
        lr = F.pad(lr, (before, after, up, down), mode="reflect")
        top, left = top + up, left + before
    height, width = lr.shape[-2:]
    return F.pad(lr, (0, -width % 16, 0, -height % 16), mode="reflect"), top, left


@pytest.mark.parametrize(
    "height, width, min_side", [(100, 600, 128), (2, 3, 32), (5, 130, 128), (127, 40, 128), (24, 40, 32), (1, 7, 32)]
)
def test_short_sides_are_padded_as_the_reference_pads_them(height, width, min_side):
    lr = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height + width))
    want, top, left = reference_padding(lr, min_side)
    padded, offset = pad_for_networks(lr, 16, min_side)
    assert offset == (top, left) and torch.equal(padded, want)


@pytest.mark.parametrize(
    "height, width, min_side", [(100, 600, 128), (2, 3, 32), (5, 130, 128), (127, 40, 128), (1, 7, 32), (61, 67, 0)]
)
def test_tiles_cut_without_a_padded_copy_are_those_of_the_padded_image(height, width, min_side):
    """The job holds the image unpadded (a padded copy is 12 bytes per input pixel more) and cuts each tile
    through the padding's maps: every box, inside the image, across its edges or all in the padding, has
    the padded copy's values."""
    lr = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    padded, offset = pad_for_networks(lr, 16, min_side)
    image = PaddedImage.of(lr, 16, min_side)
    assert image.shape == padded.shape and image.offset == offset
    rng = random.Random(height + width)
    boxes = [Box(0, 0, *padded.shape[-2:])]
    for _ in range(40):
        top, left = rng.randrange(padded.shape[-2]), rng.randrange(padded.shape[-1])
        boxes.append(Box(top, left, rng.randint(1, padded.shape[-2] - top), rng.randint(1, padded.shape[-1] - left)))
    for box in boxes:
        assert torch.equal(image.cut(box), box.of(padded)), box


@pytest.mark.parametrize("height, width", [(8, 8), (16, 24), (136, 64), (264, 520), (1040, 40), (8, 2056)])
def test_a_tiles_noise_drawn_again_by_rows_is_that_of_the_whole_draws(height, width):
    """The job keeps the means to draw its noise again (noise.NoiseField), not the draws (8 bytes per input
    pixel): every box, in any order, has the numbers of the two whole draws (Noise.draw) at the same seed."""
    shape = (1, 3, height, width)
    whole, field = Noise.draw(shape, 4, 9), NoiseField(shape, 4, 9)
    assert field.whole is None  # sides that are multiples of 8: drawn again, not kept
    rng = random.Random(height * width)
    latent = (height // 2, width // 2)
    for _ in range(40):
        top, left = rng.randrange(latent[0]), rng.randrange(latent[1])
        box = Box(top, left, rng.randint(1, latent[0] - top), rng.randint(1, latent[1] - left))
        cut = field.cut(box)
        assert torch.equal(cut.predictor, box.of(whole.predictor)) and torch.equal(cut.encoder, box.of(whole.encoder))


def test_the_noise_a_job_keeps_is_a_small_part_of_its_draws():
    """A 2048 x 2048 input's draws are 32 MB; what draws them again (a generator state every 64 latent rows),
    with the rows of a row of tiles drawn, under a fifth of that (it grows with the width, not the height)."""
    field = NoiseField((1, 3, 2048, 2048), 4, 0)
    field.cut(Box(100, 0, 64, 64))
    kept = len(pickle.dumps(field))
    assert kept < 2 * 4 * 1024 * 1024 * 4 / 5, kept


def test_one_pixel_sides_repeat_their_pixel_centred():
    lr = torch.rand(1, 3, 1, 5)
    padded, (top, left) = pad_for_networks(lr, 16, 32)
    assert padded.shape == (1, 3, 32, 32) and (top, left) == (15, 13)
    assert torch.equal(padded[..., top : top + 1, left : left + 5], lr)
    assert torch.equal(padded[..., :, left : left + 5], lr.expand(1, 3, 32, 5))  # the row repeated up and down


def test_a_short_side_costs_at_most_one_row_of_full_tiles():
    """100 x 600 at the default tile: the rows are padded to 128, so every tile is the training size; the
    extra work is that row's padding, not a tile more."""
    plan = TilePlan.make((100, 600), (128, 608), 128, 16, 16, offset=(14, 0))
    assert list(plan.rows) == [plan.rows[0]] and plan.rows[0].size == 128
    assert {(t.crop.height, t.visible.top, t.visible.height) for t in plan.tiles} == {(128, 14, 100)}
    assert all(t.around.top == 14 and t.around.height == 100 for t in plan.tiles)  # the reference: image pixels only
    assert plan.describe()["tiles"] == 6 and plan.describe()["work_ratio"] < 1.35 * 128 / 100


@contextlib.contextmanager
def training_size(pipeline, side: int):
    """The noise predictor declares another training size (the released one's is 128; the tiny one's 32)."""
    predictor = pipeline.models.noise_predictor
    config = predictor.config
    predictor.config = dataclasses.replace(config, sample_size=side)
    try:
        yield
    finally:
        predictor.config = config


@pytest.mark.parametrize(
    "height, width, side, color_fix",
    [
        (24, 40, 32, "wavelet"),  # padded centred to the (tiny) training size, 32
        (24, 40, 64, "ycbcr"),  # a larger training size: both sides padded to it
        (60, 100, 32, "wavelet"),  # no side short: padded only at the far ends, to multiples of 16
        (1, 1, 32, "none"),  # a pixel: repeated
    ],
)
def test_a_one_tile_image_is_exactly_the_sampler_on_the_padded_whole(pipeline, photo, height, width, side, color_fix):
    """What the tile engine gives for an image of one tile is, byte for byte, the sampler (sampling.sample)
    run directly on the input padded as the reference implementation pads it, with the image's noise draw,
    cut back to the image and colour-fixed as a whole against the unpadded input."""
    image = photo[:height, :width].astype(np.float32) / 255
    with training_size(pipeline, side):
        result = pipeline.upscale(image, UpscaleRequest(seed=11, color_fix=color_fix))
    assert result.report["tiling"]["tiles"] == 1
    lr = torch.from_numpy(image).permute(2, 0, 1)[None]
    padded, top, left = reference_padding(lr, side)
    noise = Noise.draw(padded.shape, pipeline.models.noise_predictor.config.latent_channels, 11)
    sr = sample(pipeline.models, padded, (200,), noise)
    sr = sr[..., 4 * top : 4 * (top + height), 4 * left : 4 * (left + width)]
    reference = F.interpolate(lr, size=sr.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
    want = apply_color_fix(color_fix, sr, reference).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(result.image, want)


def test_one_tile_is_the_same_result_whatever_tile_setting_holds_it(pipeline, small_photo):
    """A tile at least the training size (32 for the tiny weights) holds the 40 x 24 photo whole: its size
    changes nothing (a smaller tile would: the image is padded to the tile then, as the reference does)."""
    a = pipeline.upscale(small_photo, UpscaleRequest(tile=64)).image
    b = pipeline.upscale(small_photo, UpscaleRequest(tile=256, overlap=32)).image
    np.testing.assert_array_equal(a, b)


def test_report_describes_the_tiling(pipeline, photo):
    tiling = pipeline.upscale(photo, UpscaleRequest(tile=48, overlap=8)).report["tiling"]
    assert tiling == {
        "tile": 48,
        "overlap": 8,
        "batch": 1,
        "tiles": 9,
        "grid": [3, 3],
        "work_ratio": tiling["work_ratio"],
        "static_shapes": False,
        "notices": [],
    }
    assert 1 < tiling["work_ratio"] < 1.5


def test_batches_give_the_same_result_as_single_tiles(pipeline, photo):
    single, _, _ = run_tiles(pipeline, photo, 48, 8, batch=1)
    batched, report, _ = run_tiles(pipeline, photo, 48, 8, batch=4)
    assert report["batch"] == 4
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)


def test_progress_counts_tiles_and_cancel_stops_between_them(pipeline, photo):
    seen = []
    pipeline.upscale(photo, UpscaleRequest(tile=48, overlap=8), progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 11)) and all(p.total == 10 for p in seen)
    assert seen[-1].stage == "finish" and seen[0].eta is not None

    def cancel_after_two(progress):
        seen.append(progress)
        if progress.done == 2:
            raise Cancelled("stop")

    seen.clear()
    with pytest.raises(Cancelled):
        pipeline.upscale(photo, UpscaleRequest(tile=48, overlap=8), progress=cancel_after_two)
    assert [p.done for p in seen] == [1, 2]


def test_the_time_left_is_paced_after_a_batch_that_compiled():
    """82 units: a first batch of 8 tiles compiled for 100 s, the next 8 took 1 s: 66 units are left, 8 s."""
    assert Progress("tiles", 16, 82, 101.0, paced_since=(100.0, 8)).eta == pytest.approx(8.25)
    assert Progress("tiles", 8, 82, 100.0, paced_since=(100.0, 8)).eta is None  # no pace yet
    assert Progress("tiles", 16, 82, 2.0).eta == pytest.approx(8.25)  # nothing compiled: paced from the start


def test_cancel_check_stops_a_job_within_its_batch(pipeline, photo):
    """On a CPU one batch of large tiles takes minutes: a cancel must not wait for the batch to end."""
    stages, unet_calls, seen = [], [], []
    forward = pipeline.models.unet.forward

    def counting_forward(*args, **kwargs):
        unet_calls.append(1)
        return forward(*args, **kwargs)

    def cancel_after_the_encoder():
        stages.append(len(stages))
        if len(stages) == 2:  # called before the encoder, then before the noise predictor
            raise Cancelled("stop")

    request = UpscaleRequest(tile=48, overlap=8, tile_batch=10)  # the whole image (9 tiles) in one batch
    pipeline.models.unet.forward = counting_forward
    try:
        with pytest.raises(Cancelled):
            pipeline.upscale(photo, request, progress=seen.append, cancel_check=cancel_after_the_encoder)
    finally:
        pipeline.models.unet.forward = forward
    assert unet_calls == [] and seen == []  # stopped before the UNet, and no batch was reported done
    every_stage, bands = [], []
    request = UpscaleRequest(tile=48, overlap=8, tile_batch=10, steps=2)
    count = every_stage.append
    pipeline.upscale(photo, request, cancel_check=lambda: count(1), on_band=lambda top, _: bands.append(top))
    # encoder, noise predictor, 2 UNet steps, decoder; 9 colour fixes; the finish of each band of rows
    assert len(bands) > 1 and len(every_stage) == 5 + 9 + len(bands)


class LimitedMemory:
    """Makes the UNet raise the out-of-memory error a small GPU would, above a batch or a latent size."""

    def __init__(self, unet, max_batch=64, max_side=1 << 30, error=None):
        self.unet, self.forward = unet, unet.forward
        self.max_batch, self.max_side, self.calls = max_batch, max_side, []
        self.error = error or (lambda: torch.OutOfMemoryError("CUDA out of memory (simulated)"))

    def __enter__(self):
        def forward(sample, *args, **kwargs):
            self.calls.append(tuple(sample.shape))
            if sample.shape[0] > self.max_batch or max(sample.shape[-2:]) > self.max_side:
                raise self.error()
            return self.forward(sample, *args, **kwargs)

        self.unet.forward = forward
        return self

    def __exit__(self, *exc):
        self.unet.forward = self.forward


@pytest.fixture(scope="module")
def one_tile_per_batch(pipeline, photo):
    """The photo in 48-pixel tiles, one per batch: what every retry with smaller batches must give."""
    return run_tiles(pipeline, photo, 48, 8, batch=1)[0]


@pytest.mark.parametrize(
    "error",
    [
        lambda: torch.OutOfMemoryError("CUDA out of memory (simulated)"),
        lambda: RuntimeError("MPS backend out of memory (MPS allocated: 17.5 GB, simulated)"),
        lambda: RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)` (simulated)"),
    ],
)
def test_out_of_memory_retries_with_smaller_batches(pipeline, photo, one_tile_per_batch, error):
    expected = one_tile_per_batch
    with LimitedMemory(pipeline.models.unet, max_batch=2, error=error):
        result, report, _ = run_tiles(pipeline, photo, 48, 8, batch=8)
    assert report["batch"] == 2
    assert report["notices"][:2] == [
        "out of device memory with 8 tiles per batch: retrying with 4",
        "out of device memory with 4 tiles per batch: retrying with 2",
    ]
    torch.testing.assert_close(result, expected, atol=1e-4, rtol=0)


def test_out_of_memory_at_batch_one_retries_with_smaller_tiles(pipeline, photo):
    with LimitedMemory(pipeline.models.unet, max_side=16):  # latents of 16: tiles of 32 input pixels
        result = pipeline.upscale(photo, UpscaleRequest(tile=64, overlap=8))
    tiling = result.report["tiling"]
    assert tiling["tile"] == 32 and result.image.shape == (512, 512, 3)
    assert tiling["notices"] == [
        "out of device memory at batch 1: starting again with 48-pixel tiles",
        "out of device memory at batch 1: starting again with 32-pixel tiles",
    ]


def test_an_overlap_a_smaller_tile_cannot_hold_is_cut_and_the_notices_say_so(pipeline, photo):
    with LimitedMemory(pipeline.models.unet, max_side=16):  # latents of 16: tiles of 32 input pixels
        result = pipeline.upscale(photo[:64, :80], UpscaleRequest(tile=64, overlap=24))
    tiling = result.report["tiling"]
    assert (tiling["tile"], tiling["overlap"]) == (32, 8)
    assert tiling["notices"] == [
        "out of device memory at batch 1: starting again with 48-pixel tiles and 16 pixels of overlap (24 do not "
        "fit such a tile)",
        "out of device memory at batch 1: starting again with 32-pixel tiles and 8 pixels of overlap (16 do not "
        "fit such a tile)",
    ]


def test_other_device_failures_are_not_taken_for_a_lack_of_memory(pipeline, small_photo):
    def illegal_access():
        return RuntimeError("CUDA error: an illegal memory access (simulated)")

    with LimitedMemory(pipeline.models.unet, max_batch=0, error=illegal_access):
        with pytest.raises(RuntimeError, match="illegal memory access"):
            pipeline.upscale(small_photo, UpscaleRequest(tile=32, overlap=8))


def test_out_of_memory_fails_clearly_when_nothing_fits(pipeline, small_photo):
    with LimitedMemory(pipeline.models.unet, max_side=0), pytest.raises(OutOfMemory, match="even for one 32 x 32 tile"):
        pipeline.upscale(small_photo, UpscaleRequest(tile=32, overlap=8))


@pytest.mark.parametrize("free, tile, overlap", [(None, 128, 16), (10**12, 128, 16), (1, 32, 8)])
def test_automatic_tiles_shrink_on_a_full_device_and_the_overlap_with_them(monkeypatch, free, tile, overlap):
    """Real SD-Turbo's multiple of 16: a 32-pixel tile keeps 8 pixels of overlap, not an error. A smaller
    tile than the default is a choice the report's notices explain."""
    monkeypatch.setattr(tile_settings, "free_memory", lambda device: free)
    chosen = choose_settings(UpscaleRequest(), torch.device("cuda"), torch.float16, 16)
    assert (chosen.tile, chosen.overlap) == (tile, overlap)
    if tile < 128:
        assert chosen.notices == (
            "tile auto: 32 pixels, not 128: the device has 1e-09 GB free, and a 128-pixel tile needs about 0.68 GB",
        )
    else:
        assert chosen.notices == ()


@pytest.mark.parametrize("overlap, tile", [(40, 96), (24, 64), (0, 32)])
def test_an_overlap_asked_for_is_kept_when_automatic_tiles_shrink(monkeypatch, overlap, tile):
    """With tile auto on a full device the tile shrinks only as far as the overlap asked for fits (it used to
    shrink to 32 and quietly cut the overlap to 8)."""
    monkeypatch.setattr(tile_settings, "free_memory", lambda device: 1)
    chosen = choose_settings(UpscaleRequest(overlap=overlap), torch.device("cuda"), torch.float16, 16)
    assert (chosen.tile, chosen.overlap) == (tile, overlap) and f"tile auto: {tile} pixels" in chosen.notices[0]


def test_an_overlap_no_automatic_tile_can_hold_is_refused():
    """overlap=200 with tile auto was accepted and quietly cut to 56."""
    with pytest.raises(
        InvalidRequest,
        match=r"overlap 200 is too large for the automatic tile \(128 pixels at most\)"
        r": keep 2 x overlap \+ 16 <= 128, or give a tile of at least 416",
    ):
        UpscaleRequest(overlap=200)
    assert UpscaleRequest(overlap=56).overlap == 56  # the largest that fits


@pytest.mark.parametrize(
    "fields",
    [
        dict(tile=48, overlap=8, tile_batch=3),
        dict(tile=32, overlap=0),
        dict(tile=64, overlap=5, tile_batch=2),
        dict(overlap=24, tile_batch=2),
        dict(tile=1024, overlap=500),
    ],
)
def test_explicit_tiling_is_reported_as_asked_without_notices(pipeline, photo, monkeypatch, fields):
    """What is asked for is done as asked (or refused when the request is made): the report's tiling says so."""
    monkeypatch.setattr(tile_settings, "free_memory", lambda device: None)  # however full this machine is
    tiling = pipeline.upscale(photo[:64, :80], UpscaleRequest(**fields)).report["tiling"]
    asked = {"tile": fields.get("tile", 128), "overlap": fields["overlap"], "batch": fields.get("tile_batch", 1)}
    assert {k: tiling[k] for k in asked} == asked and tiling["notices"] == []
