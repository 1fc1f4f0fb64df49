"""A seam measure: how visible the borders between tiles are in a result.

It lives with the benchmarks, not in the library: nothing in production measures seams; the benchmarks
compare tilings with it (bench/run.py) and the tests use it to show that blending hides the borders
(tests/unit/test_tiling.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invsr.tiles.grid import SCALE, Span


def seam_positions(spans: list[Span], scale: int) -> list[int]:
    """Output coordinates where one tile hands over to the next: the middle of each overlap."""
    return [(after.start + before.end) * scale // 2 for before, after in zip(spans, spans[1:])]


def seam_score(image: torch.Tensor, row_positions: list[int], col_positions: list[int], width: int = 2) -> float:
    """How much larger the step in local brightness is across tile borders than anywhere else.

    For every position between two columns (and two rows), the step is the absolute difference between
    the mean of the `width` pixels before and the `width` pixels after it, averaged along the border.
    The score is the mean step at the given borders over the mean step at all other positions: about 1
    or below when borders are invisible, clearly above 1 when tiles meet with a visible edge.
    """
    gray = image.float().mean(dim=1, keepdim=True)
    on, off = [], []
    for axis, positions in ((-1, col_positions), (-2, row_positions)):
        length = gray.shape[axis]
        box = torch.full((1, 1, 1, width) if axis == -1 else (1, 1, width, 1), 1.0 / width)
        means = F.conv2d(gray, box)  # means[..., j] = mean of pixels j .. j + width - 1 along the axis
        cuts = torch.arange(width, length - width + 1)
        before, after = means.index_select(axis, cuts - width), means.index_select(axis, cuts)
        steps = (before - after).abs().mean(dim=(0, 1, 2 if axis == -1 else 3))
        at = torch.isin(cuts, torch.tensor(positions, dtype=torch.long))
        on.append(steps[at])
        off.append(steps[~at])
    on, off = torch.cat(on), torch.cat(off)
    return float(on.mean() / off.mean()) if len(on) and len(off) and float(off.mean()) > 0 else 1.0


def plan_seam_score(image: torch.Tensor, plan) -> float:
    """The seam score of the x4 `image` of a tile plan (invsr.tiles.TilePlan), at its tiles' borders."""
    return seam_score(image, seam_positions(list(plan.rows), SCALE), seam_positions(list(plan.cols), SCALE))
