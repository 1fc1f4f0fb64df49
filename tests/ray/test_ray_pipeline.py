"""An image's tiles over two Ray actors (fake GPUs, computing on the CPU): the same bytes as in-process,
several jobs at once sharing the actors fairly, and cancelling. One Ray instance for the module."""

import threading
import time

import numpy as np
import pytest
from ray_helpers import one_thread, ray_instance, start_pipeline

from invsr.request import UpscaleRequest
from invsr.wire.errors import Cancelled
from invsr_server.cluster.dispatch import AHEAD, DEPTH

MANY_TILES = UpscaleRequest(tile=32, overlap=8, tile_batch=1, seed=3)  # 12 tiles of the 96 x 80 crop


@pytest.fixture(scope="module")
def ray_pipeline(tiny_weights):
    with ray_instance():
        pipeline = start_pipeline(tiny_weights)
        yield pipeline
        pipeline.close()


@pytest.fixture(scope="module")
def crop(photo):
    return photo[:96, :80].copy()


def in_process(pipeline, image, request):
    with one_thread():
        return pipeline.upscale(image, request).image


def test_an_image_over_two_actors_is_byte_identical_to_in_process(ray_pipeline, pipeline, crop):
    request = UpscaleRequest(tile=32, overlap=8, tile_batch=2, seed=5, scale=2.5)
    result = ray_pipeline.upscale(crop, request)
    assert np.array_equal(result.image, in_process(pipeline, crop, request))
    tiling = result.report["tiling"]
    assert tiling["tiles"] == 12 and sum(tiling["batches_by_actor"].values()) == 6
    assert set(tiling["batches_by_actor"]) == {"actor-0", "actor-1"}, "both actors computed"
    assert result.report["device"] == "ray: 2 actors on cpu" and len(result.report["actors"]) == 2


def test_alpha_and_16_bit_come_back_as_in_process(ray_pipeline, pipeline, crop):
    rgba = np.dstack([crop, np.linspace(0, 255, crop.size // 3).reshape(crop.shape[:2]).astype(np.uint8)])
    deep = rgba.astype(np.uint16) * 257
    request = UpscaleRequest(tile=48, overlap=8, seed=1)
    assert np.array_equal(ray_pipeline.upscale(deep, request).image, in_process(pipeline, deep, request))


def test_progress_counts_every_tile_once_then_the_finish(ray_pipeline, crop):
    seen = []
    ray_pipeline.upscale(crop, MANY_TILES, progress=lambda p: seen.append((p.stage, p.done, p.total)))
    assert seen == [("tiles", n, 13) for n in range(1, 13)] + [("finish", 13, 13)]


def test_the_actors_are_shown_with_their_devices_and_health(ray_pipeline):
    actors = ray_pipeline.actors()
    assert [a["name"] for a in actors] == ["actor-0", "actor-1"]
    assert all(a["state"] == "ready" and a["device"] == "cpu" and a["dtype"] == "fp32" for a in actors)
    assert sorted(g for a in actors for g in a["gpus"]) == ["0", "1"], "one fake GPU each"


def test_two_jobs_at_once_both_complete_correctly_and_the_small_one_is_not_stuck_behind(ray_pipeline, pipeline, photo):
    small_image, small_request = photo[:40, :40].copy(), UpscaleRequest(tile=32, overlap=8, tile_batch=1, seed=9)
    big_image = photo  # 25 tiles, one per batch: far more than the actors hold when the small job arrives
    big_done, results, small_finished_at = [], {}, []
    big_started = threading.Event()

    def big_progress(update):
        big_done.append(update.done)
        big_started.set()

    def run_big():
        results["big"] = ray_pipeline.upscale(big_image, MANY_TILES, progress=big_progress).image

    big = threading.Thread(target=run_big)
    big.start()
    assert big_started.wait(120)
    results["small"] = ray_pipeline.upscale(small_image, small_request).image
    small_finished_at.append(big_done[-1])
    big.join(300)
    assert small_finished_at[0] < 25, "the small job waited until the big one had done all its tiles"
    assert np.array_equal(results["big"], in_process(pipeline, big_image, MANY_TILES))
    assert np.array_equal(results["small"], in_process(pipeline, small_image, small_request))


def test_cancel_stops_the_jobs_batches_on_every_actor(ray_pipeline, pipeline, photo):
    image = photo[:128, :128].copy()  # 25 tiles of 32: many more batches than the actors hold at once
    request = UpscaleRequest(tile=32, overlap=8, tile_batch=1, seed=2)
    before = sum(a["batches"] for a in ray_pipeline.actors())
    cancelled = threading.Event()

    def progress(update):
        if update.done >= 2:
            cancelled.set()

    def cancel_check():
        if cancelled.is_set():
            raise Cancelled("asked to")

    with pytest.raises(Cancelled):
        ray_pipeline.upscale(image, request, progress=progress, cancel_check=cancel_check)
    deadline = time.monotonic() + 60
    while any(a["in_flight"] for a in ray_pipeline.actors()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(a["in_flight"] for a in ray_pipeline.actors()), "the actors let go of the job's batches"
    computed = sum(a["batches"] for a in ray_pipeline.actors()) - before
    assert computed < 10, f"{computed} of 25 batches were computed after all"
    small = photo[:40, :40].copy()  # and the actors serve the next job
    assert np.array_equal(ray_pipeline.upscale(small, request).image, in_process(pipeline, small, request))


def test_a_job_whose_bands_are_taken_slowly_is_not_computed_far_ahead(ray_pipeline, pipeline, photo):
    """A client slow to take its bands (the worker waiting for its `taken`, issue 24) holds up its job's
    thread: the actors are then sent no more of its batches than a few beyond what it has taken, instead of
    computing all of them into the front's memory; once it takes them again, the rest comes, the same bytes."""
    image = photo[:128, :128].copy()  # 25 batches of one tile; the first band is done after the first ten
    request = UpscaleRequest(tile=32, overlap=8, tile_batch=1, seed=5)
    before = sum(a["batches"] for a in ray_pipeline.actors())
    taken, seen, bands = [0], [], []  # taken: the batches the job's thread has taken (one tile each)

    def progress(update):
        if update.stage == "tiles":
            taken[0] = update.done

    def on_band(top, rows):
        if not seen:  # the first band: the client is busy for a while
            time.sleep(4.0)  # on this machine the two actors compute the 25 batches in about 3 s
            seen.append((taken[0], sum(a["batches"] for a in ray_pipeline.actors()) - before))
        bands.append((top, rows.copy()))

    result = ray_pipeline.upscale(image, request, progress=progress, on_band=on_band)
    assert result.image is None and seen
    actors = len(ray_pipeline.actors())
    (took, computed), places = seen[0], max(AHEAD, DEPTH * actors) + DEPTH * actors
    assert computed < 25 and computed - took <= places, f"{computed} batches computed, {took} taken"
    whole = np.concatenate([rows for _, rows in bands])
    assert np.array_equal(whole, in_process(pipeline, image, request))
