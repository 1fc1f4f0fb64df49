"""The tile engine's parts (invsr/tiles/): a plan is small data that travels; a batch is computed from the
pixels it is given alone; tile outputs give the same bytes whatever order they arrive in, so batches can
be computed elsewhere (here: on other threads) and added as they come."""

import json
import pickle
import random
from concurrent.futures import ThreadPoolExecutor, as_completed

import pytest
import torch

from invsr.progress import StageTimer
from invsr.sampling import Noise
from invsr.tiles import TileAccumulator, TileDriver, TilePlan, TileRecipe, TileSettings, compute_batch
from invsr.tiles.grid import PaddedImage, pad_to_multiple

RECIPE = TileRecipe((200,), "wavelet")
RESAMPLED = (150, 230)  # not x4 of the 60 x 62 input: outputs are resampled as they are added


class Parts:
    """A 60 x 62 image in 9 tiles of 4 sizes, each tile's output computed alone, in the plan's order."""

    def __init__(self, pipeline, photo):
        self.models, self.device = pipeline.models, pipeline.device
        self.lr = torch.from_numpy(photo[:60, :62].copy()).permute(2, 0, 1)[None].float() / 255
        self.image = pad_to_multiple(self.lr, self.models.lr_multiple)
        self.noise = Noise.draw(self.image.shape, self.models.noise_predictor.config.latent_channels, 0)
        self.plan = TilePlan.make(self.lr.shape[-2:], self.image.shape[-2:], 32, 8, self.models.lr_multiple)
        self.outputs = [self.compute(position, position + 1)[0] for position in range(len(self.plan.tiles))]

    def padded(self, image: torch.Tensor | None = None) -> PaddedImage:
        """`image` (the padded input, by default) as tiles are cut from it."""
        return PaddedImage.of(self.image if image is None else image, self.models.lr_multiple)

    def noise_draws(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.noise.predictor, self.noise.encoder

    def compute(self, start: int, stop: int) -> list[torch.Tensor]:
        return compute_batch(self.models, self.device, RECIPE, self.plan.inputs(self.padded(), self.noise, start, stop))

    def driver_result(self, batch: int, out_size=None) -> torch.Tensor:
        driver = TileDriver(self.models, self.device, StageTimer(self.device))
        return driver.run(self.lr, RECIPE, 0, TileSettings(32, 8, batch), out_size).image


@pytest.fixture(scope="module")
def parts(pipeline, photo):
    return Parts(pipeline, photo)


def test_a_plan_is_small_data_that_travels(parts):
    plan = parts.plan
    assert len(plan.tiles) == 9 and len({(t.crop.height, t.crop.width) for t in plan.tiles}) == 4
    text = json.dumps(plan.to_dict())
    assert TilePlan.from_dict(json.loads(text)) == plan and pickle.loads(pickle.dumps(plan)) == plan
    assert len(text) < 400 * len(plan.tiles)  # coordinates, no pixels: a few hundred bytes a tile


def test_batches_are_runs_of_one_tile_size_largest_first(parts):
    plan = parts.plan
    bounds = parts.plan.batches(3)
    assert [start for start, _ in bounds] == [0, *(stop for _, stop in bounds[:-1])] and bounds[-1][1] == 9
    for start, stop in bounds:
        assert 1 <= stop - start <= 3 and len({(t.crop.height, t.crop.width) for t in plan.tiles[start:stop]}) == 1
    areas = [t.crop.height * t.crop.width for t in plan.tiles]
    assert areas == sorted(areas, reverse=True)


def test_a_batch_reads_only_the_pixels_it_is_given(parts):
    """Everything outside the batch's crops and colour-fix regions replaced by garbage: the same outputs."""
    start, stop = 4, 6
    tiles = parts.plan.tiles[start:stop]
    keep_image = torch.zeros(parts.image.shape[-2:], dtype=torch.bool)
    keep_noise = torch.zeros(parts.noise.predictor.shape[-2:], dtype=torch.bool)
    for tile in tiles:
        tile.crop.of(keep_image)[...] = True
        tile.around.of(keep_image)[...] = True
        tile.noise.of(keep_noise)[...] = True
    garbage = torch.Generator().manual_seed(1)
    image = torch.where(keep_image, parts.image, torch.rand(parts.image.shape, generator=garbage))
    noise = Noise(*(torch.where(keep_noise, n, torch.randn(n.shape, generator=garbage)) for n in parts.noise_draws()))
    inputs = parts.plan.inputs(parts.padded(image), noise, start, stop)
    assert inputs.lr.shape == (2, 3, tiles[0].crop.height, tiles[0].crop.width) and len(inputs.references) == 2
    outputs = compute_batch(parts.models, parts.device, RECIPE, inputs)
    batched = parts.compute(start, stop)
    assert all(torch.equal(a, b) for a, b in zip(outputs, batched))


def test_batch_inputs_carry_their_own_pixels_only(parts):
    """What goes to another process is the batch's pixels, not the image they were cut from."""
    inputs = parts.plan.inputs(parts.padded(), parts.noise, 0, 2)
    tensors = [inputs.lr, inputs.noise.predictor, inputs.noise.encoder, *(r.around for r in inputs.references)]
    assert len(pickle.dumps(inputs)) < sum(t.numel() * t.element_size() for t in tensors) + 1000 * len(tensors)


@pytest.mark.parametrize("out_size", [None, RESAMPLED])
def test_tiles_arriving_in_any_order_give_the_bytes_of_one_device(parts, out_size):
    expected = parts.driver_result(1, out_size)
    for seed in range(6):
        order = list(range(len(parts.outputs)))
        random.Random(seed).shuffle(order)
        accumulator = TileAccumulator(parts.plan, out_size)
        for position in order:
            accumulator.add(position, parts.outputs[position])
        assert torch.equal(accumulator.result(), expected), f"arrival order {order}"


def test_an_early_tile_waits_for_those_before_it(parts):
    accumulator = TileAccumulator(parts.plan)
    for position in reversed(range(1, len(parts.outputs))):
        accumulator.add(position, parts.outputs[position])
    assert accumulator.finished_rows() == 0 and not accumulator.complete
    with pytest.raises(RuntimeError, match="1 of 9 tiles are still missing"):
        accumulator.result()
    with pytest.raises(ValueError, match="tile 5 was given twice"):
        accumulator.add(5, parts.outputs[5])
    accumulator.add(0, parts.outputs[0])
    assert accumulator.complete and torch.equal(accumulator.result(), parts.driver_result(1))


def test_batches_computed_on_other_threads_match_one_device(parts):
    expected = parts.driver_result(2, RESAMPLED)
    accumulator = TileAccumulator(parts.plan, RESAMPLED)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {pool.submit(parts.compute, start, stop): start for start, stop in parts.plan.batches(2)}
        for future in as_completed(futures):
            for position, output in enumerate(future.result(), start=futures[future]):
                accumulator.add(position, output)
    assert torch.equal(accumulator.result(), expected)
