"""The plug-in's estimate of a run (invsr_plugin/sizing.py, standard library only) against the library
itself: the tiles it counts are the tiles the library cuts, and targets in pixels give those pixels."""

import pytest
import torch
from gimp_harness import PLUGINS

from invsr.tiles.grid import pad_for_networks
from invsr.tiles.plan import TilePlan


@pytest.fixture()
def sizing(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from invsr_plugin import sizing

    return sizing


@pytest.mark.parametrize(
    "width, height, tile",
    [(24, 20, 128), (3200, 2400, 128), (800, 600, 256), (1000, 1, 64), (4000, 3000, 1024), (129, 300, 96)],
)
def test_the_tiles_counted_are_the_tiles_the_library_cuts(sizing, width, height, tile):
    overlap = min(16, (tile - 16) // 2)
    padded, offset = pad_for_networks(torch.zeros(1, 3, height, width), 16, min(128, tile))
    plan = TilePlan.make((height, width), padded.shape[-2:], tile, overlap, 16, offset=offset)
    described = plan.describe()
    tiles, area = sizing.tile_plan(width, height, tile)
    assert tiles == described["tiles"]
    assert area == pytest.approx(described["work_ratio"] * width * height, rel=1e-3)


def test_a_3200_by_2400_image_at_4x_is_638_tiles_and_asked_about(sizing):
    job = sizing.Job(3200, 2400, (sizing.Box(0, 0, 3200, 2400),))
    estimate = job.estimate("scale-image", 4.0, 0, pace=None)
    assert (estimate.width, estimate.height, estimate.tiles) == (12800, 9600, 638)
    assert estimate.is_large() and "time known after a preview or the first upscale" in estimate.text()
    assert estimate.text().startswith("12,800 × 9,600 pixels (123 megapixels), 638 tiles")
    assert estimate.question() == (
        "Its time is not known yet (no preview or upscale has run on this computer): 638 tiles take about a minute "
        "on a fast GPU, hours on a CPU. The result needs 492 MB of memory in GIMP, and as much disk to save it."
    )
    small = job.estimate("scale-image", 2.0, 0, pace=1e-6)  # 10 megapixels of tiles: about 10 s
    assert not small.is_large() and small.text().endswith("about\u00a010\u00a0s")


@pytest.mark.parametrize(
    "size_by, pixels, scale", [("width", 4800, 1.5), ("height", 4800, 2.0), ("long-edge", 6400, 2.0)]
)
def test_a_target_in_pixels_is_the_scale_that_gives_it(sizing, size_by, pixels, scale):
    job = sizing.Job(3200, 2400, (sizing.Box(100, 100, 800, 600),))
    assert job.scale("scale-image", size_by, 4.0, pixels) == scale
    assert job.scale("new-image", "width", 4.0, 1600) == 2.0  # a new image holds the region only


def test_a_target_out_of_range_says_which_sizes_work(sizing):
    job = sizing.Job(3200, 2400, (sizing.Box(0, 0, 3200, 2400),))
    with pytest.raises(sizing.PluginError, match="Give a width from 3,200 to 51,200 pixels"):
        job.scale("scale-image", "width", 4.0, 1000)


def test_durations_read_as_a_person_says_them(sizing):
    said = [sizing.duration(s) for s in (0.2, 42, 61, 480, 3600, 4800, 11460)]
    assert [text.replace("\u00a0", " ") for text in said] == [
        "about 1 s",
        "about 42 s",
        "about 1 min",
        "about 8 min",
        "about 1 h",
        "about 1 h 20 min",
        "about 3 h 11 min",
    ]
    assert all(" " not in text for text in said)  # no line breaks inside: never "about 3" above "h 11 min"


def test_huge_sizes_read_as_people_write_them(sizing):
    job = sizing.Job(6000, 4000, (sizing.Box(0, 0, 6000, 4000),))
    assert job.estimate("scale-image", 16.0, 0, None).text().startswith("96,000 × 64,000 pixels (6,144 megapixels), ")
    assert [sizing.megapixels(n) for n in (0.3, 7.68, 99.4, 6144.2)] == [
        "0.3 megapixels",
        "7.68 megapixels",
        "99.4 megapixels",
        "6,144 megapixels",
    ]


def test_the_pace_is_remembered_from_the_jobs_reports(sizing, tmp_path):
    assert sizing.read_pace(tmp_path) is None
    report = {"input_size": [100, 50], "seconds": {"tiles": 3.0, "finish": 1.0}, "tiling": {"work_ratio": 2.0}}
    sizing.write_pace(tmp_path, [report])
    assert sizing.read_pace(tmp_path) == pytest.approx(4.0 / 10000)


def test_before_any_timing_a_job_of_many_tiles_is_asked_about(sizing):
    """Its time may be a minute or hours: the question must not wait for a first job to have run."""
    photo = sizing.Job(1600, 1200, (sizing.Box(0, 0, 1600, 1200),), pixel_bytes=8)  # 16-bit RGBA
    untimed = photo.estimate("scale-image", 2.0, 0, pace=None)
    assert untimed.tiles > sizing.UNTIMED_TILES and untimed.is_large()
    assert "The result needs 61 MB of memory in GIMP" in untimed.question()
    assert [sizing.byte_size(n) for n in (1, 61e6, 2.3e9, 11.4e9, 1.2e12)] == [
        "1 MB",
        "61 MB",
        "2.3 GB",
        "11 GB",
        "1,200 GB",
    ]
    timed = photo.estimate("scale-image", 2.0, 0, pace=1e-6)  # seconds on this computer: not asked
    assert not timed.is_large() and timed.question().startswith("It takes about")
    tiny = sizing.Job(200, 100, (sizing.Box(0, 0, 200, 100),)).estimate("scale-image", 4.0, 0, pace=None)
    assert not tiny.is_large()
