"""Resampling tile by tile (invsr/resample.py) gives what resampling the whole image gives."""

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from invsr.resample import Canvas, resize


def cuts(draw, length):
    """Sorted cut points splitting [0, length) into 1 to 4 non-empty parts."""
    inner = draw(st.lists(st.integers(1, max(1, length - 1)), max_size=3, unique=True)) if length > 1 else []
    return [0, *sorted(inner), length]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    out_height=st.integers(1, 150),
    out_width=st.integers(1, 150),
)
def test_summing_resampled_parts_equals_resampling_the_whole(data, height, width, out_height, out_width):
    """Any partition of the image into blocks, each resampled alone and added, gives torch's own
    antialiased bicubic resampling of the whole, reducing or enlarging, by any factor on either axis."""
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height * 1000 + width))
    canvas = Canvas((height, width), (out_height, out_width))
    rows, cols = cuts(data.draw, height), cuts(data.draw, width)
    for top, bottom in zip(rows, rows[1:]):
        for left, right in zip(cols, cols[1:]):
            canvas.add(top, left, image[..., top:bottom, left:right])
    expected = torch_resized(image.double(), (out_height, out_width))
    torch.testing.assert_close(canvas.image.double(), expected, atol=1e-6, rtol=0)


def torch_resized(image, size):
    """torch's antialiased bicubic resampling, in float64 (in float32 it strays by up to 5e-5). For an
    output 1 pixel wide it is wrong (torch 2.13: the same value in every row), so that case is computed
    transposed, as an output 1 pixel high, where it is right."""

    def resized(x, size):
        return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)

    if size[1] == 1:
        return resized(image.transpose(-1, -2), size[::-1]).transpose(-1, -2)
    return resized(image, size)


def test_an_output_one_pixel_wide_is_resampled_right():
    """Where torch's own resampling fails (above): a column 5 high enlarged to 7 keeps its gradient."""
    column = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 3, 5, 1)
    canvas = Canvas((5, 1), (7, 1))
    canvas.add(0, 0, column)
    values = canvas.image[0, 0, :, 0]
    assert (values.diff() > 0).all() and values[3] == 2.0  # rising, and centred where the input's middle is


def test_at_the_same_size_blocks_are_placed_as_they_are():
    image = torch.rand(1, 3, 9, 7)
    canvas = Canvas((9, 7), (9, 7))
    canvas.add(0, 0, image[..., :4, :])
    canvas.add(4, 0, image[..., 4:, :])
    assert torch.equal(canvas.image, image)


@settings(max_examples=30, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), out_height=st.integers(1, 90), out_width=st.integers(1, 90))
def test_resizing_a_whole_plane_is_the_colour_filter(height, width, out_height, out_width):
    """`resize` (what alpha is resized with) gives the colour's resampling of the whole, in blocks of any size,
    outputs 1 pixel wide included (where torch's own goes wrong)."""
    plane = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(height * 100 + width))
    expected = torch_resized(plane.double(), (out_height, out_width))
    for block in (7, 512):
        torch.testing.assert_close(resize(plane, (out_height, out_width), block).double(), expected, atol=1e-6, rtol=0)
