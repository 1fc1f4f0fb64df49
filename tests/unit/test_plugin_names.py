"""What the plug-in names its results (invsr_plugin/flow.py, standard library only): how InvSR made the
layer, said once, however many times it was upscaled."""

import pytest
from gimp_harness import PLUGINS


@pytest.fixture()
def flow(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from invsr_plugin import flow

    return flow


@pytest.mark.parametrize(
    ("source", "output", "scale", "name"),
    [
        ("photo", "scale-image", 2.0, "photo (InvSR ×2)"),
        ("photo", "new-image", 2.5, "photo (InvSR ×2.5)"),
        ("photo", "in-place", 4.0, "photo (InvSR detail)"),
        ("photo (InvSR detail)", "in-place", 4.0, "photo (InvSR detail)"),  # not "(InvSR detail) (InvSR detail)"
        ("photo (InvSR ×2)", "scale-image", 2.0, "photo (InvSR ×4)"),  # the scales multiplied
        ("photo (InvSR ×2)", "in-place", 1.0, "photo (InvSR ×2)"),
        ("photo (InvSR detail)", "scale-image", 1.5, "photo (InvSR ×1.5)"),
        ("my (InvSR) notes", "scale-image", 2.0, "my (InvSR) notes (InvSR ×2)"),  # only our own ending is read
    ],
)
def test_a_result_says_once_how_invsr_made_it(flow, source, output, scale, name):
    assert flow.result_name(source, flow.Options(scale=scale, output=output)) == name


@pytest.mark.parametrize(
    ("source", "scale", "name"),
    [
        ("photo.jpg", 4.0, "photo × 4.xcf"),
        ("photo.xcf", 2.5, "photo × 2.5.xcf"),
        ("photo.tif", 3.16666, "photo × 3.17.xcf"),  # a target width's scale, as the dialog shows it
        ("photo × 4.xcf", 2.0, "photo × 8.xcf"),  # not "photo × 4 × 2"
        ("holiday × 2 days.png", 2.0, "holiday × 2 days × 2.xcf"),  # only our own ending is read
    ],
)
def test_a_new_image_is_named_after_its_source_and_scale(flow, tmp_path, source, scale, name):
    assert flow.new_image_file(tmp_path / source, scale, set()) == tmp_path / name


def test_a_new_image_never_takes_the_name_of_a_file_or_of_another_open_image(flow, tmp_path):
    """Save writes a named image to its file without asking: the name must be free, on disk and among the
    files other open images will be saved to."""
    (tmp_path / "photo × 4.xcf").write_bytes(b"an earlier result")
    taken = {str(tmp_path / "photo × 4 (2).xcf")}
    assert flow.new_image_file(tmp_path / "photo.jpg", 4.0, taken) == tmp_path / "photo × 4 (3).xcf"
