"""The result made by bands of rows (issue 24): each band of the model's colour becomes the output's pixel
type on its own, byte for byte what the whole array gives, and a run that takes its bands as they come
never holds the whole output."""

import random

import numpy as np
import pytest
import torch

from invsr.pixels import BandFinisher, Pixels, resize_alpha
from invsr.progress import StageTimer
from invsr.request import UpscaleRequest
from invsr.tiles import TileAccumulator, TileDriver, TilePlan, TileRecipe, TileSettings
from invsr.tiles import accumulator as accumulator_module


def whole(pixels: Pixels, rgb: torch.Tensor, out_size) -> np.ndarray:
    alpha = resize_alpha(pixels.alpha, out_size) if pixels.alpha is not None else None
    return pixels.to_array(rgb.clone(), alpha)


def banded(pixels: Pixels, rgb: torch.Tensor, out_size, rows: int) -> np.ndarray:
    finisher = BandFinisher(pixels, out_size)
    parts = [finisher(top, rgb[..., top : top + rows, :].clone()) for top in range(0, out_size[0], rows)]
    return np.concatenate(parts)


def image(dtype, channels, size, seed=0, hdr=False):
    rng = np.random.default_rng(seed)
    shape = size if channels == 0 else (*size, channels)
    if dtype == np.float32:
        values = rng.uniform(-0.5 if hdr else 0, 1.5 if hdr else 1, shape).astype(np.float32)
    else:
        values = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    if channels in (2, 4):  # alpha with solid, clear and partial areas
        alpha = values[..., -1]
        top = np.iinfo(dtype).max if dtype != np.float32 else 1.0
        alpha[: size[0] // 3] = top
        alpha[size[0] // 3 : size[0] // 2] = 0
    return values


@pytest.mark.parametrize(
    "dtype, channels, hdr",
    [
        (np.uint8, 3, False),
        (np.uint8, 0, False),
        (np.uint16, 2, False),
        (np.uint8, 4, False),
        (np.float32, 4, True),
        (np.float32, 1, True),
    ],
)
@pytest.mark.parametrize("out_size, rows", [((300, 260), 7), ((300, 260), 64), ((70, 33), 1), ((600, 700), 128)])
def test_bands_give_the_bytes_of_the_whole(dtype, channels, hdr, out_size, rows):
    """Alpha resized and the excess of float colour resampled by blocks, as the bands need them, give the
    bytes of resizing the whole plane (blocks of rows summed in the same order)."""
    pixels = Pixels.from_array(image(dtype, channels, (150, 130), hdr=hdr))
    assert (pixels.excess is not None) == hdr
    rgb = torch.rand(1, 3, *out_size, generator=torch.Generator().manual_seed(1)) * 1.2 - 0.1
    want = whole(pixels, rgb, out_size)
    got = banded(pixels, rgb, out_size, rows)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def test_bands_come_top_to_bottom():
    pixels = Pixels.from_array(image(np.uint8, 3, (20, 20)))
    finisher = BandFinisher(pixels, (80, 80))
    finisher(0, torch.rand(1, 3, 10, 80))
    with pytest.raises(ValueError, match="expected row 10, got 20"):
        finisher(20, torch.rand(1, 3, 10, 80))


class Holding:
    """The most rows of the output the accumulator's canvas held at once."""

    def __init__(self):
        self.most = 0

    def watch(self, accumulator: TileAccumulator) -> None:
        held = accumulator.canvas.held_bytes // (12 * accumulator.size[1])  # float32 RGB rows
        self.most = max(self.most, held)


def test_a_tall_image_is_finished_band_by_band(pipeline, photo, monkeypatch):
    """Tiles computed row by row (the narrower last column with its row): the canvas holds a few rows of
    tiles, not the output; the bands, put together, are the whole result byte for byte."""
    lr = torch.from_numpy(np.concatenate([photo, photo])[:, :100].copy()).permute(2, 0, 1)[None].float() / 255
    recipe, settings = TileRecipe((200,), "wavelet"), TileSettings(32, 8, 1)
    holding = Holding()
    add = TileAccumulator.add

    def watched(self, position, output):
        add(self, position, output)
        holding.watch(self)

    monkeypatch.setattr(TileAccumulator, "add", watched)
    monkeypatch.setattr(accumulator_module, "BAND_BYTES", 32 * 400 * 12)  # bands of 32 rows of 400 pixels
    bands = []
    driver = TileDriver(pipeline.models, pipeline.device, StageTimer(pipeline.device))
    tiled = driver.run(lr, recipe, 0, settings, on_band=lambda top, band: bands.append((top, band.clone())))
    assert tiled.image is None
    height = 4 * lr.shape[-2]
    assert [top for top, _ in bands] == sorted(top for top, _ in bands) and bands[0][0] == 0
    assert sum(band.shape[-2] for _, band in bands) == height
    assert holding.most < height / 3, f"held {holding.most} of {height} rows at once"
    expected = TileDriver(pipeline.models, pipeline.device, StageTimer(pipeline.device)).run(lr, recipe, 0, settings)
    assert torch.equal(torch.cat([band for _, band in bands], dim=-2), expected.image)


def random_outputs(plan: TilePlan, seed: int = 0) -> list[torch.Tensor]:
    """A made-up x4 output for each tile, with values beyond [0, 1] as the model's can be."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(1, 3, 4 * tile.visible.height, 4 * tile.visible.width) for tile in plan.tiles]
    return [torch.rand(shape, generator=generator) * 1.2 - 0.1 for shape in shapes]


def finished_whole_bands(plan, out_size, pixels, outputs) -> np.ndarray:
    """The result as the float bands give it, each finished whole, top to bottom."""
    accumulator = TileAccumulator(plan, out_size, rows_per_band=16)
    for position, output in enumerate(outputs):
        accumulator.add(position, output.clone())
    finisher = BandFinisher(pixels, accumulator.size)
    return np.concatenate([finisher(top, band) for top, band in accumulator.bands()])


@pytest.mark.parametrize(
    "dtype, channels, hdr",
    [
        (np.uint8, 3, False),
        (np.uint8, 4, False),
        (np.uint16, 0, False),
        (np.uint8, 2, False),
        (np.float32, 1, True),
        (np.float32, 3, True),  # float RGB: finished only whole, as it would not be smaller
    ],
)
@pytest.mark.parametrize("out_size", [None, (150, 530)])
def test_columns_finished_as_soon_as_the_tiles_allow_give_the_bytes_of_whole_bands(dtype, channels, hdr, out_size):
    """With a finish, the accumulator makes each band's columns the result's pixels once no tile still to come
    reaches them (alpha, gray and float excess included), in whatever order tiles arrive: the same bytes."""
    plan = TilePlan.make((48, 152), (48, 152), 32, 8, 8)
    pixels = Pixels.from_array(image(dtype, channels, (48, 152), hdr=hdr))
    outputs = random_outputs(plan)
    want = finished_whole_bands(plan, out_size, pixels, outputs)
    orders = [[p for start, stop in plan.band_order(plan.batches(1)) for p in range(start, stop)]]
    orders += [random.Random(seed).sample(range(len(outputs)), len(outputs)) for seed in range(2)]
    for order in orders:
        finisher = BandFinisher(pixels, want.shape[:2])
        accumulator = TileAccumulator(plan, out_size, rows_per_band=16, finish=finisher)
        assert accumulator.early == (finisher.pixel_bytes < 12)
        bands = []
        for position in order:
            accumulator.add(position, outputs[position].clone())
            bands += accumulator.bands()
        assert [top for top, _ in bands] == list(range(0, want.shape[0], 16))
        got = np.concatenate([rows for _, rows in bands])
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), f"arrival order {order}"


def test_columns_finished_early_hold_the_outputs_bytes_not_floats(monkeypatch):
    """An image 35 tiles wide, tiles in band order: where the float canvas holds a row of tiles and their
    overlap in float32, the finishing one holds the row as 8-bit RGB, float32 only where tiles are to come
    (finished by chunks of 256 columns here, a quarter of the default, for an image a quarter as wide)."""
    monkeypatch.setattr(accumulator_module, "CHUNK_COLS", 256)
    plan = TilePlan.make((96, 1920), (96, 1920), 64, 8, 8)
    pixels = Pixels.from_array(image(np.uint8, 3, (96, 1920)))
    outputs = random_outputs(plan)
    order = [p for start, stop in plan.band_order(plan.batches(1)) for p in range(start, stop)]
    most = {}
    for finish in (None, BandFinisher(pixels, plan.output_size)):
        accumulator = TileAccumulator(plan, finish=finish)
        most[finish is None] = 0
        for position in order:
            accumulator.add(position, outputs[position].clone())
            most[finish is None] = max(most[finish is None], accumulator.canvas.held_bytes)
            accumulator.bands()
    row_of_tiles = 4 * 64 * 4 * 1920 * 12
    assert most[True] >= row_of_tiles  # a row of tiles in float32
    assert most[False] < 0.5 * most[True], f"{most[False]} bytes held finishing early, {most[True]} not"


def test_a_row_of_tiles_is_finished_before_the_next_row_whatever_the_narrower_last_column_waits_for():
    """The narrower last column comes after every full-size tile in the plan's order (batches of one size),
    so it must wait for the next row's full-size tile at their shared corner; the rest of it does not: the
    rows above the next row of tiles are finished with their own row, and the canvas holds one row of tiles
    (and its overlap), not two."""
    plan = TilePlan.make((256, 100), (256, 112), 32, 8, 16)
    assert len({tile.crop.width for tile in plan.tiles}) == 2  # a narrower last column
    outputs = random_outputs(plan)
    accumulator = TileAccumulator(plan, rows_per_band=16)
    most = 0
    for start, stop in plan.band_order(plan.batches(1)):
        for position in range(start, stop):
            accumulator.add(position, outputs[position])
            most = max(most, accumulator.canvas.held_bytes // (12 * accumulator.size[1]))
            accumulator.bands()
    row_of_tiles, overlap = 4 * 32, 4 * 8
    assert most <= row_of_tiles + overlap + 16, f"held {most} rows at once"


def test_band_order_puts_the_last_column_with_its_row():
    plan = TilePlan.make((256, 100), (256, 112), 32, 8, 16)
    order = plan.band_order(plan.batches(1))
    rows = [plan.tiles[start].row for start, _ in order]
    assert rows == sorted(rows)
    assert [start for start, _ in plan.batches(1)] != [start for start, _ in order]  # canonical is largest first


def test_the_pipeline_hands_out_bands_in_the_outputs_pixel_type(pipeline, small_photo):
    rgba = np.dstack([small_photo, np.full(small_photo.shape[:2], 200, np.uint8)])
    request = UpscaleRequest(seed=3, tile=32, overlap=8, scale=3)
    whole_result = pipeline.upscale(rgba, request)
    bands = []
    result = pipeline.upscale(rgba, request, on_band=lambda top, rows: bands.append((top, rows.copy())))
    assert result.image is None and all(rows.dtype == np.uint8 and rows.shape[2] == 4 for _, rows in bands)
    assert np.concatenate([rows for _, rows in bands]).tobytes() == whole_result.image.tobytes()
    assert result.report["output_size"] == whole_result.report["output_size"]


def test_a_file_the_machine_cannot_hold_is_refused_before_any_work(tmp_path, pipeline):
    """JPEG is encoded from the whole result: one this machine's memory cannot hold is refused up front, saying
    how much it needs; PNG and TIFF, written band by band, need a band."""
    from invsr.files import upscale_file
    from invsr.image_io import ImageFile, available_memory, needs, write_image
    from invsr.wire.errors import ImageFileError

    source = tmp_path / "flat.png"
    write_image(source, ImageFile(np.full((4000, 4000, 3), 30000, np.uint16)))
    need = needs(tmp_path / "out.jpg", 64000, 64000, 3, np.uint16)
    raw = 64000 * 64000 * 3 * 2
    assert need.memory == raw + raw // 10 and not need.streamed
    for suffix in (".tif", ".png"):
        streamed = needs(tmp_path / f"out{suffix}", 64000, 64000, 3, np.uint16)
        assert streamed.streamed and streamed.memory < 100e6 and raw <= streamed.disk < 1.02 * raw, suffix
    if available_memory() is None or available_memory() > need.memory:
        pytest.skip("this machine could hold it")
    asked = []

    class Watched:
        def upscale(self, image, request, progress=None):
            asked.append(image.shape)
            return pipeline.upscale(image, request, progress)

    with pytest.raises(ImageFileError, match=r"holds the whole result, about 27\.0 GB of memory.*write PNG or TIFF"):
        upscale_file(Watched(), source, tmp_path / "out.jpg", UpscaleRequest(scale=16))
    assert asked == []


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint16, 4), (np.float32, 1), (np.uint8, 2)])
def test_a_tiff_written_band_by_band_reads_back_as_written_whole(tmp_path, dtype, channels):
    from invsr.image_io import TiffBands, read_image

    rng = np.random.default_rng(1)
    shape = (150, 37, channels) if channels > 1 else (150, 37)
    pixels = (rng.random(shape) * 200).astype(dtype)
    writer = TiffBands(tmp_path / "out.tif", 150, 37, channels, dtype, None, None)
    for top in range(0, 150, 23):  # bands that are not whole tiles of the file
        writer.add(top, pixels[top : top + 23])
    assert not (tmp_path / "out.tif").exists()  # put in place only when finished
    writer.finish(None)
    back = read_image(tmp_path / "out.tif").pixels
    assert back.dtype == pixels.dtype and back.tobytes() == pixels.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_a_tiff_abandoned_half_way_leaves_nothing(tmp_path):
    from invsr.image_io import TiffBands

    writer = TiffBands(tmp_path / "out.tif", 200, 40, 3, np.uint8, None, None)
    writer.add(0, np.zeros((100, 40, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_tiff_compressed_on_several_threads_holds_a_few_tiles_not_the_image(tmp_path, monkeypatch):
    """On a machine of 4 cores or more tifffile compresses on several threads, and by default gathers up to
    512 MB of tiles (all of them, for most images) before it writes any: the writer must not let it."""
    import tracemalloc

    import imagecodecs  # noqa: F401 (imported before counting: their modules are not what is measured)
    import tifffile  # noqa: F401

    from invsr.image_io import TiffBands, read_image

    monkeypatch.setenv("TIFFFILE_NUM_THREADS", "4")  # tifffile's default on an 8-core machine
    height, width = 8192, 1024
    writer = TiffBands(tmp_path / "out.tif", height, width, 3, np.uint8, None, None)
    tracemalloc.start()
    try:
        for top in range(0, height, 32):
            writer.add(top, _noise_band(top, width))
        writer.finish(None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    image_bytes = height * width * 3
    assert peak < image_bytes / 4, f"{peak / 1e6:.1f} MB held writing a {image_bytes / 1e6:.1f} MB image"
    back = read_image(tmp_path / "out.tif").pixels
    assert all(np.array_equal(back[top : top + 32], _noise_band(top, width)) for top in range(0, height, 256))


def test_a_tiff_writer_keeps_none_of_the_band_it_was_given(tmp_path):
    """A band is a row of tiles of the result (tens of MB for a wide photo): the writer copies the rows it
    has not written yet, so that the band can go as soon as the next is being made."""
    import weakref

    from invsr.image_io import TiffBands, read_image

    writer = TiffBands(tmp_path / "out.tif", 300, 64, 3, np.uint8, None, None)
    bands, seen = [_noise_band(top, 64)[:30].copy() for top in range(0, 300, 30)], []
    for index in range(len(bands)):
        band = bands[index]
        writer.add(30 * index, band)
        seen.append(weakref.ref(band))
        bands[index] = band = None
        assert seen[-1]() is None, f"band {index} is still held by the writer"
    writer.finish(None)
    back = read_image(tmp_path / "out.tif").pixels
    assert np.array_equal(back, np.concatenate([_noise_band(top, 64)[:30] for top in range(0, 300, 30)]))


def _noise_band(top: int, width: int) -> np.ndarray:
    """32 rows of noise (which deflate cannot shrink), the same for the same `top`."""
    return np.random.default_rng(top).integers(0, 256, (32, width, 3), np.uint8)
