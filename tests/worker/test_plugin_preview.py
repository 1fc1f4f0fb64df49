"""The dialog's preview without GTK (invsr_plugin/preview.py): which area it upscales and shows, and its
background jobs against a real worker process, whose results must be the library's own."""

import queue

import numpy as np
import pytest
from gimp_harness import PLUGINS
from worker_helpers import WorkerProcess

from invsr.request import UpscaleRequest


@pytest.fixture()
def preview(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from invsr_plugin import preview

    return preview


@pytest.fixture()
def flow(preview):
    from invsr_plugin import flow

    return flow


@pytest.mark.parametrize(
    "scale, tile, sent, shown",
    [
        (4.0, 0, (128, 128), (128, 128, 256, 256)),  # a tile of context; the centre of its 512 x 512 result
        (2.0, 0, (128, 128), (0, 0, 256, 256)),  # its whole result
        (1.0, 0, (256, 256), (0, 0, 256, 256)),  # in place: enough input for the 256 pixels shown
        (16.0, 256, (256, 256), (1920, 1920, 256, 256)),  # a larger tile: more context
        (3.0, 0, (128, 128), (64, 64, 256, 256)),
    ],
)
def test_the_preview_sends_a_tile_of_context_and_shows_the_centre_of_the_result(preview, scale, tile, sent, shown):
    region = preview.Area(0, 0, 1000, 800)
    crop = preview.crop_at(region, (500, 400), scale, tile)
    assert (crop.sent.width, crop.sent.height) == sent
    assert (crop.sent.x, crop.sent.y) == (500 - sent[0] // 2, 400 - sent[1] // 2)  # around the centre asked for
    assert (crop.shown.x, crop.shown.y, crop.shown.width, crop.shown.height) == shown


def test_the_preview_stays_inside_the_selection_and_takes_a_small_one_whole(preview):
    selection = preview.Area(300, 200, 400, 300)
    corner = preview.crop_at(selection, (0, 0), 4.0, 0)  # asked outside: kept at the selection's corner
    assert (corner.sent.x, corner.sent.y) == (300, 200)
    far = preview.crop_at(selection, (5000, 5000), 4.0, 0)
    assert (far.sent.x + far.sent.width, far.sent.y + far.sent.height) == (700, 500)
    small = preview.crop_at(preview.Area(10, 5, 24, 20), (22, 15), 4.0, 0)
    assert small.sent == preview.Area(10, 5, 24, 20)
    assert small.shown == preview.Area(0, 0, 96, 80)  # the whole result: it is smaller than the display
    assert small.shown_source == small.sent


def test_arrow_keys_move_the_centre_within_the_region(preview):
    region = preview.Area(0, 0, 100, 80)
    assert preview.moved(region, (50, 40), 16, -16) == (66, 24)
    assert preview.moved(region, (90, 70), 64, 64) == (100, 80)


def test_shown_source_is_the_layer_area_under_the_shown_pixels(preview):
    crop = preview.crop_at(preview.Area(0, 0, 1000, 800), (500, 400), 4.0, 0)
    assert crop.shown_source == preview.Area(436 + 32, 336 + 32, 64, 64)


class Collector:
    """Stands for the dialog's thread: `post` queues the calls, `run_posted` runs them as GLib would."""

    def __init__(self):
        self.calls, self.outcomes = queue.Queue(), []

    def post(self, fn, *args):
        self.calls.put((fn, args))

    def until(self, done, timeout=120.0):
        """Run posted calls until `done(outcomes)` is true."""
        while not done(self.outcomes):
            fn, args = self.calls.get(timeout=timeout)
            fn(*args)
        return self.outcomes


@pytest.fixture(scope="module")
def worker(tiny_weights, tmp_path_factory):
    process = WorkerProcess(
        tmp_path_factory.mktemp("preview-worker"), tiny_weights.noise_predictor.parent, "--preload"
    ).wait_ready()
    yield process
    process.stop()


def request_for(preview, flow, photo, centre, scale, seed, server):
    region = preview.Area(0, 0, photo.shape[1], photo.shape[0])
    crop = preview.crop_at(region, centre, scale, 64)
    sent = crop.sent
    pixels = photo[sent.y : sent.y + sent.height, sent.x : sent.x + sent.width].tobytes()
    options = flow.Options(scale=scale, seed=seed, tile=64, server=str(server))
    return preview.Request(crop, pixels, 3, options)


def test_a_preview_is_the_librarys_upscale_of_the_area_cut_to_what_is_shown(preview, flow, photo, worker, pipeline):
    collector = Collector()
    jobs = preview.PreviewJobs(collector.post, flow.connect, collector.outcomes.append)
    try:
        request = request_for(preview, flow, photo, (70, 60), 4.0, 5, worker.path)
        jobs.ask(request)
        outcome = collector.until(lambda seen: seen and not seen[-1].busy)[-1]
    finally:
        jobs.close()
    assert outcome.pixels is not None, outcome.text
    sent, shown = request.crop.sent, request.crop.shown
    area = photo[sent.y : sent.y + sent.height, sent.x : sent.x + sent.width]
    expected = pipeline.upscale(area, UpscaleRequest(scale=4.0, seed=5, tile=64)).image
    expected = expected[shown.y : shown.y + shown.height, shown.x : shown.x + shown.width]
    got = np.frombuffer(outcome.pixels, np.uint8).reshape(shown.height, shown.width, 3)
    np.testing.assert_array_equal(got, expected)
    assert outcome.text.startswith(f"Preview of 64 × 64 pixels at {sent.x}, {sent.y} of the layer, at 4× and 100 %")


def test_a_newer_request_replaces_the_one_running_and_only_it_is_shown(preview, flow, photo, worker):
    collector = Collector()
    jobs = preview.PreviewJobs(collector.post, flow.connect, collector.outcomes.append)
    try:
        jobs.ask(request_for(preview, flow, photo, (64, 64), 16.0, 1, worker.path))
        latest = request_for(preview, flow, photo, (40, 40), 2.0, 2, worker.path)
        jobs.ask(latest)  # before, while or after the first runs: only the latest is shown
        done = collector.until(lambda seen: seen and not seen[-1].busy)
    finally:
        jobs.close()
    assert done[-1].pixels is not None, done[-1].text
    assert [o.request for o in done] == [latest] * len(done)
    assert (done[-1].request.crop.scale, done[-1].request.options.seed) == (2.0, 2)


def test_a_worker_file_that_names_no_worker_is_said_and_the_next_request_tries_again(
    preview, flow, photo, worker, tmp_path
):
    collector = Collector()
    jobs = preview.PreviewJobs(collector.post, flow.connect, collector.outcomes.append)
    try:
        jobs.ask(request_for(preview, flow, photo, (64, 64), 2.0, 1, tmp_path / "nowhere.json"))
        failed = collector.until(lambda seen: seen and not seen[-1].busy)[-1]
        assert failed.pixels is None and "nowhere.json" in failed.text
        before = len(collector.outcomes)
        jobs.ask(request_for(preview, flow, photo, (64, 64), 2.0, 1, worker.path))  # the Worker field fixed
        again = collector.until(lambda seen: len(seen) > before and not seen[-1].busy)[-1]
        assert again.pixels is not None, again.text
    finally:
        jobs.close()


def test_closing_stops_the_thread_and_shows_nothing_more(preview, flow, photo, worker):
    collector = Collector()
    jobs = preview.PreviewJobs(collector.post, flow.connect, collector.outcomes.append)
    jobs.ask(request_for(preview, flow, photo, (64, 64), 16.0, 3, worker.path))
    collector.until(lambda seen: any(o.busy for o in seen))
    jobs.close()
    jobs.thread.join(timeout=30)
    assert not jobs.thread.is_alive()
    while not collector.calls.empty():  # what was posted before the close is dropped on delivery
        fn, args = collector.calls.get()
        fn(*args)
    assert all(o.pixels is None for o in collector.outcomes)


def test_a_result_of_another_size_or_length_is_refused_not_shown(preview, flow):
    crop = preview.crop_at(preview.Area(0, 0, 24, 20), (12, 10), 2.0, 0)
    request = preview.Request(crop, bytes(24 * 20 * 3), 3, flow.Options(scale=2.0))
    header = {"width": 48, "height": 40, "channels": 3, "dtype": "u8", "job": "j"}
    assert len(preview.shown_pixels(request, preview.Result.from_dict(header, bytes(48 * 40 * 3)))) == 48 * 40 * 3
    for wrong_header, data in [(dict(header, width=47), bytes(47 * 40 * 3)), (header, bytes(48 * 39 * 3))]:
        with pytest.raises(flow.PluginError, match="another size"):
            preview.shown_pixels(request, preview.Result.from_dict(wrong_header, data))
