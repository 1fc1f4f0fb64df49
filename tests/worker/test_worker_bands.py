"""Results in bands (protocol 3.2, issue 24) between a real worker process and its client on loopback: the
bands arrive top to bottom as the tiles finish them, cover the result once, and are byte for byte the
in-process result; a client that does not ask for bands (a 3.1 client) still gets the whole result."""

import time

import numpy as np
import pytest
from worker_helpers import WorkerProcess, upscale_unchecked

from invsr.request import UpscaleRequest
from invsr.wire.errors import BadMessage, InvalidRequest, TooLarge
from invsr.wire.protocol import Message, new_id
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


class PacedClient:
    """A client of protocol 3.3 that takes bands when the test says so (`take`), heartbeating meanwhile."""

    def __init__(self, client):
        self.client, self.request_id, self.bands, self.ends = client, new_id(), [], []

    def send(self, kind: str, fields: dict, buffers=()) -> None:
        self.client._send(Message(kind, dict(fields, id=new_id()), list(buffers)), wait=True)

    def start(self, image: np.ndarray, request: UpscaleRequest, window: int) -> None:
        height, width, channels = image.shape
        header = dict(width=width, height=height, channels=channels, dtype="u8", params=request.to_dict())
        message = Message("upscale", dict(header, id=self.request_id, bands=True, window=window), [image.tobytes()])
        self.client._send(message, wait=True)

    def listen(self, seconds: float, until=lambda: False) -> None:
        """Hear the job's messages for `seconds`, or until `until()`."""
        deadline = next_ping = time.monotonic()
        deadline += seconds
        while time.monotonic() < deadline and not until() and not self.ends:
            if time.monotonic() >= next_ping:
                self.send("ping", {})
                next_ping += 0.5
            if self.client.socket.poll(100):
                message = self.client._receive()
                if message.fields.get("re") != self.request_id:
                    continue
                if message.type == "accepted":
                    self.job = message.fields["job"]
                elif message.type == "band":
                    self.bands.append(bytes(message.buffers[0]))
                elif message.type in ("result", "error"):
                    self.ends.append(message)

    def take(self, count: int) -> None:
        self.send("taken", {"job": self.job, "bands": count})


def test_a_client_with_a_window_is_sent_no_more_bands_than_it_has_taken_room_for(worker, pipeline):
    """Flow control (3.3, issue 24): a client slow to take its bands (a PNG being compressed, a slow link)
    holds up its job on the worker instead of the bands piling up in the worker's memory and its socket:
    with a window of two bands' bytes, two bands come, then none until the client says it has taken one, then
    one; taken as they come, the rest follows with the in-process bytes. A window smaller than a band lets one
    band at a time through; a job waiting for room can be cancelled; a bad window or `taken` is refused."""
    image = (np.random.default_rng(6).random((72, 72, 3)) * 255).astype(np.uint8)
    request = UpscaleRequest(seed=3, tile=32, overlap=8, scale=8)  # 576 x 576 out: 4 bands of 151 rows
    with worker.client() as client:
        client.hello()
        paced = PacedClient(client)
        paced.start(image, request, window=2 * 151 * 576 * 3)
        paced.listen(120, until=lambda: len(paced.bands) >= 2)
        paced.listen(3.0)
        assert len(paced.bands) == 2 and not paced.ends, "the worker sent beyond the window"
        paced.take(1)
        paced.listen(3.0)
        assert len(paced.bands) == 3, "taking one band lets exactly one more come"
        while not paced.ends:
            paced.take(len(paced.bands))
            paced.listen(0.5)
        assert paced.ends[0].type == "result", paced.ends[0].fields
        assert paced.ends[0].fields["bands"] == len(paced.bands) == 4
        assert b"".join(paced.bands) == pipeline.upscale(image, request).image.tobytes()

        waiting = PacedClient(client)
        waiting.start(image, request, window=1)
        waiting.listen(120, until=lambda: len(waiting.bands) >= 1)
        waiting.send("cancel", {"job": waiting.job})
        started = time.monotonic()
        waiting.listen(10.0)
        assert waiting.ends and waiting.ends[0].fields["code"] == "cancelled", waiting.ends
        assert time.monotonic() - started < 5.0 and len(waiting.bands) == 1

        header = dict(width=72, height=72, channels=3, dtype="u8", params=request.to_dict(), bands=True)
        for window in (0, -1, True, "8", 2.5):  # refused on arrival, saying what a window is
            with pytest.raises(InvalidRequest, match="'window' is the bytes of bands a client can hold ahead"):
                client.request("upscale", dict(header, window=window), [image.tobytes()], final=("result",))
        for fields in ({"job": 5, "bands": 1}, {"job": paced.job, "bands": -1}, {"job": paced.job, "bands": True}):
            with pytest.raises(BadMessage, match="a taken names the job by its id"):  # and the worker goes on
                client.request("taken", fields)
        assert client.hello().model.state == "ready"


def test_a_client_that_answers_but_takes_no_band_does_not_hold_the_worker(tmp_path, tiny_weights):
    """A client that heartbeats but never says it took a band would hold the device, and every job queued
    behind it, for ever: its job is given up after a while (60 s; 2 s here) with a message that says so,
    and the next job runs."""
    stalls_soon = "import invsr_server.worker.jobs as jobs\njobs.BandCredit.STALL_S = 2.0"
    image = (np.random.default_rng(6).random((72, 72, 3)) * 255).astype(np.uint8)
    request = UpscaleRequest(seed=3, tile=32, overlap=8, scale=8)  # 4 bands
    with WorkerProcess(tmp_path, tiny_weights.noise_predictor.parent, "--preload", prelude=stalls_soon) as worker:
        with worker.wait_ready().client() as client:
            client.hello()
            stuck = PacedClient(client)
            stuck.start(image, request, window=1)  # a band at a time, and none taken
            stuck.listen(120)
            assert len(stuck.bands) == 1 and stuck.ends and stuck.ends[0].fields["code"] == "cancelled"
            assert "took none of the bands sent for 2 s" in stuck.ends[0].fields["message"]
            result = client.upscale(image[:24, :24].tobytes(), 24, 24, 3, "u8", request)
    assert len(result.pixels) == 192 * 192 * 3
