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
