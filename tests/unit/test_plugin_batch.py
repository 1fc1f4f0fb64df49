"""One run over every open image (invsr_plugin/batch.py and sizing.BatchEstimate, standard library only):
each image's share of the one progress bar, what the dialog and the question say of the whole run, and
the message naming the images left out."""

import pytest
from gimp_harness import PLUGINS


@pytest.fixture()
def plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from invsr_plugin import batch, sizing

    return batch, sizing


class Bar:
    """GIMP's progress bar as procedure.upscale_image and flow see it: what it was told, in order."""

    def __init__(self):
        self.calls = []

    def update(self, fraction, text):
        self.calls.append(("update", fraction, text))

    def text(self, text):
        self.calls.append(("text", text))


def test_each_image_has_a_share_of_the_bar_as_large_as_its_work(plugin):
    batch, _ = plugin
    parts = batch.shares([30, 10, 60])
    flat = [value for part in parts for value in (part.start, part.width)]
    assert flat == pytest.approx([0.0, 0.3, 0.3, 0.1, 0.4, 0.6])
    assert [(part.start, part.width) for part in batch.shares([0, 0])] == [(0.0, 0.5), (0.5, 0.5)]


def test_an_images_progress_moves_the_bar_within_its_share_and_says_which_image(plugin):
    batch, _ = plugin
    bar = Bar()
    second = batch.PartProgress(bar, batch.shares([1, 3])[1], "image 2/2")
    second.update(0.5, "InvSR: layer 1/2: tile 3/8")
    second.update(None, "InvSR: loading the model, once after the worker starts")  # the bar pulses
    second.update(1.7, "InvSR: receiving the result")  # never past its share
    second.text("InvSR: adding the result to the image")
    second.done()
    assert bar.calls == [
        ("update", pytest.approx(0.25 + 0.75 * 0.5), "InvSR: image 2/2: layer 1/2: tile 3/8"),
        ("update", None, "InvSR: image 2/2: loading the model, once after the worker starts"),
        ("update", pytest.approx(1.0), "InvSR: image 2/2: receiving the result"),
        ("text", "InvSR: image 2/2: adding the result to the image"),
        ("update", pytest.approx(1.0), "InvSR: image 2/2: done"),
    ]


def test_the_images_left_out_are_named_with_why_in_one_message(plugin):
    batch, _ = plugin
    left_out = [("scan.gif-2", "Convert this indexed image first."), ("[Untitled]-4", "No layer is selected in it.")]
    assert batch.left_out_text(left_out, 1) == (
        "1 of 3 images were upscaled. Not upscaled:\n"
        "• scan.gif-2: Convert this indexed image first.\n"
        "• [Untitled]-4: No layer is selected in it."
    )
    assert batch.left_out_text(left_out[:1], 0).startswith("No image was upscaled. Not upscaled:\n• scan.gif-2")


def test_the_whole_runs_estimate_sums_the_images_and_names_the_largest(plugin):
    _, sizing = plugin
    small = sizing.Job(800, 600, (sizing.Box(0, 0, 800, 600),)).estimate("scale-image", 2.0, 0, pace=1e-6)
    large = sizing.Job(3200, 2400, (sizing.Box(0, 0, 3200, 2400),)).estimate("scale-image", 2.0, 0, pace=1e-6)
    both = sizing.BatchEstimate((small, large))
    assert both.tiles == small.tiles + large.tiles and both.seconds == pytest.approx(small.seconds + large.seconds)
    assert both.text() == (
        f"2 images, {both.tiles} tiles, {sizing.duration(both.seconds)}; "
        "the largest 6,400 × 4,800 pixels (30.7 megapixels)"
    )
    assert both.memory_bytes == small.memory_bytes + large.memory_bytes
    assert sizing.BatchEstimate((small,)).text().startswith("1 image, ")
    assert both.question().endswith(
        f"needs {sizing.byte_size(both.memory_bytes)} of memory in GIMP, and as much disk to save it."
    )


def test_many_small_images_together_are_asked_about_like_one_large_one(plugin):
    """Each alone is quick; together they take longer than a job the plug-in asks about."""
    _, sizing = plugin
    photo = sizing.Job(1000, 1000, (sizing.Box(0, 0, 1000, 1000),))
    one = photo.estimate("scale-image", 2.0, 0, pace=1e-4)
    assert not one.is_large() and one.seconds * 20 > sizing.LARGE_SECONDS
    assert not sizing.BatchEstimate((one,)).is_large() and sizing.BatchEstimate((one,) * 20).is_large()
    untimed = photo.estimate("scale-image", 2.0, 0, pace=None)
    assert untimed.tiles * 5 > sizing.UNTIMED_TILES and not untimed.is_large()
    assert sizing.BatchEstimate((untimed,) * 5).is_large() and sizing.BatchEstimate((untimed,) * 5).seconds is None
