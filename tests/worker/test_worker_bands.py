"""Results in bands (protocol 3.2, issue 24) between a real worker process and its client on loopback: the
bands arrive top to bottom as the tiles finish them, cover the result once, and are byte for byte the
in-process result; a client that does not ask for bands (a 3.1 client) still gets the whole result."""

import numpy as np
import pytest
from worker_helpers import WorkerProcess, upscale_unchecked

from invsr.request import UpscaleRequest
from invsr.wire.errors import TooLarge
from invsr.wire.replies import Progress


@pytest.fixture(scope="module")
def worker(tmp_path_factory, tiny_weights):
    with WorkerProcess(tmp_path_factory.mktemp("worker"), tiny_weights.noise_predictor.parent, "--preload") as process:
        yield process.wait_ready()


def tall_image():
    rng = np.random.default_rng(4)
    return (rng.random((96, 128, 4)) * 65535).astype(np.uint16)  # 384 rows of 512: bands of 170 rows


REQUEST = UpscaleRequest(seed=2, tile=32, overlap=8, scale=4)


def test_bands_arrive_as_tiles_finish_and_equal_the_in_process_result(worker, pipeline):
    image = tall_image()
    height, width, channels = image.shape
    events = []

    def on_band(band):
        events.append(("band", band.top, band.rows, bytes(band.pixels), band.width, band.channels, band.dtype))

    def on_progress(progress: Progress):
        events.append(("progress", progress.stage, progress.done))

    with worker.client() as client:
        result = client.upscale_bands(
            image.tobytes(), width, height, channels, "u16", REQUEST, on_band, on_progress=on_progress
        )
    bands = [event for event in events if event[0] == "band"]
    assert result.report["output_size"] == [4 * width, 4 * height] and len(result.pixels) == 0
    assert [band[1] for band in bands] == list(np.cumsum([0] + [band[2] for band in bands[:-1]]))
    assert sum(band[2] for band in bands) == 4 * height and len(bands) > 2
    assert all(band[4:] == (4 * width, 4, "u16") for band in bands)
    first_band = events.index(bands[0])
    tiles_after = [e for e in events[first_band:] if e[0] == "progress" and e[1] == "tiles"]
    assert tiles_after, "the first band came only after the last tile: bands must go as the tiles finish them"
    received = np.frombuffer(b"".join(band[3] for band in bands), np.uint16).reshape(4 * height, 4 * width, 4)
    local = pipeline.upscale(image, REQUEST).image
    assert received.tobytes() == local.tobytes()


def test_the_whole_result_in_one_frame_for_a_client_that_does_not_ask_for_bands(worker, pipeline):
    """A 3.1 client sends no `bands`: one `result` frame, as before; the 3.2 client's `upscale` gathers bands
    into the same bytes."""
    image = tall_image()[:40]
    height, width, channels = image.shape
    with worker.client() as client:
        reply = upscale_unchecked(client, image.tobytes(), width, height, channels, "u16", REQUEST.to_dict())
        gathered = client.upscale(image.tobytes(), width, height, channels, "u16", REQUEST)
    assert len(reply.buffers) == 1 and "bands" not in reply.fields
    local = pipeline.upscale(image, REQUEST).image.tobytes()
    assert bytes(reply.buffers[0]) == local and bytes(gathered.pixels) == local
    assert (gathered.width, gathered.height, gathered.channels, gathered.dtype) == (4 * width, 4 * height, 4, "u16")


def test_a_whole_result_that_the_workers_memory_cannot_hold_is_refused_before_any_work(tmp_path, tiny_weights):
    """A 3.1 client has the worker gather the result whole: on a machine whose free memory (made 300 kB here)
    cannot hold it, the job is refused at once with the sizes and what to do, and the worker keeps serving:
    the same image in bands (what this version's clients ask for) is upscaled."""
    small_memory = "import invsr.image_io as image_io\nimage_io.available_memory = lambda: 300_000"
    weights = tiny_weights.noise_predictor.parent
    image = tall_image()[:24]  # a result of 96 x 512 x 4 x 2 bytes: 393 kB
    height, width, channels = image.shape
    with WorkerProcess(tmp_path, weights, "--preload", prelude=small_memory) as worker:
        with worker.wait_ready().client() as client:
            with pytest.raises(TooLarge) as refused:
                upscale_unchecked(client, image.tobytes(), width, height, channels, "u16", REQUEST.to_dict())
            result = client.upscale(image.tobytes(), width, height, channels, "u16", REQUEST)
    assert "0.0 GB" in str(refused.value)  # the result's size and the memory free, as people write them
    assert "update the client" in str(refused.value) and "smaller scale" in str(refused.value)
    assert len(result.pixels) == 4 * width * 4 * height * channels * 2
