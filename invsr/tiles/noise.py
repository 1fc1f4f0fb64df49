"""An image's two noise draws, made row by row as its tiles need them, not held whole.

`Noise.draw` makes both draws for the whole padded input at once: 8 bytes per input pixel held for the whole
job (360 MB for a 45 MP photo), of which a batch reads a few tiles. `NoiseField` gives each tile the very
numbers of those draws without keeping them: preparing, it draws them once in blocks of rows and keeps the
generator's state at the start of each block (5 KB); a tile's rows are drawn again from there.

This rests on how torch's CPU generator draws normals: 16 values at a time (uniforms, then Box-Muller within
each group of 16), so drawing n values and then m gives the n + m values of one draw wherever n and m are
multiples of 16: a block's values are (BLOCK_ROWS rows), and a plane's are where the input's sides are
multiples of 8 (its latent sides of 4). `_draws_in_parts` asks torch once; where it says otherwise (another
torch), or a plane is not whole groups, the draws are held whole as before.
"""

from __future__ import annotations

import functools

import torch

from ..sampling import Noise
from .grid import Box

GROUP = 16  # torch draws CPU normals in groups of this many values
BLOCK_ROWS = 64  # latent rows between the generator states kept (a tile's rows are drawn again from the last)


class NoiseField:
    """Both draws of `Noise.draw(shape, channels, seed)`, cut box by box (`cut`) as from the whole draws."""

    def __init__(self, lr_shape, channels: int, seed: int):
        """For an input of `lr_shape` (N, 3, H, W), as Noise.draw."""
        self.shape = (lr_shape[0], channels, lr_shape[-2] // 2, lr_shape[-1] // 2)
        batch, channels, height, width = self.shape
        self.block_rows = _block_rows(height, width)
        self.whole: Noise | None = None
        if self.block_rows is None:
            self.whole = Noise.draw(lr_shape, channels, seed)
            return
        generator = torch.Generator().manual_seed(seed)
        self.states: list[list[list[torch.Tensor]]] = []  # [draw][plane][block]: the state where the block starts
        scratch = torch.empty(self.block_rows * width)
        for _ in range(2):  # the predictor's draw, then the encoder's
            self.states.append([self._walk(generator, scratch) for _ in range(batch * channels)])
        self.strip: tuple[int, int, Noise] | None = None  # the rows last drawn: a row of tiles reads them

    def _walk(self, generator: torch.Generator, scratch: torch.Tensor) -> list[torch.Tensor]:
        """One plane's blocks drawn (and dropped), with the generator's state at the start of each."""
        states = []
        for top in range(0, self.shape[2], self.block_rows):
            states.append(generator.get_state())
            rows = min(self.block_rows, self.shape[2] - top)
            torch.randn(rows * self.shape[3], generator=generator, out=scratch[: rows * self.shape[3]])
        return states

    def cut(self, box: Box) -> Noise:
        """The `box` (latent rows and columns) of both draws, (N, C, box.height, box.width) each, as Noise.cut
        cuts it from the whole draws (views, of the rows drawn for it)."""
        if self.whole is not None:
            return self.whole.cut(box)
        top, _, strip = self._strip(box.top, box.bottom)
        return strip.cut(Box(box.top - top, box.left, box.height, box.width))

    def _strip(self, top: int, bottom: int) -> tuple[int, int, Noise]:
        """Whole rows of both draws from the block holding row `top` to one holding row `bottom - 1`."""
        strip = self.strip
        if strip is not None and strip[0] <= top and bottom <= strip[1]:
            return strip
        first = top // self.block_rows * self.block_rows
        last = min(self.shape[2], -(-bottom // self.block_rows) * self.block_rows)
        self.strip = (first, last, Noise(*(self._rows(states, first, last) for states in self.states)))
        return self.strip

    def _rows(self, states: list[list[torch.Tensor]], first: int, last: int) -> torch.Tensor:
        """Rows [first, last) of one draw, every plane, drawn again from the state of the block at `first`."""
        batch, channels, _, width = self.shape
        generator = torch.Generator()
        out = torch.empty(batch * channels, last - first, width)
        for plane, plane_states in enumerate(states):
            generator.set_state(plane_states[first // self.block_rows])
            torch.randn((last - first) * width, generator=generator, out=out[plane].view(-1))
        return out.view(batch, channels, last - first, width)


def _block_rows(height: int, width: int) -> int | None:
    """Rows per block, where each plane (and so each block: BLOCK_ROWS is a multiple of 16) holds whole groups
    of 16 values; else None."""
    return BLOCK_ROWS if (height * width) % GROUP == 0 and _draws_in_parts() else None


@functools.cache
def _draws_in_parts() -> bool:
    """Whether this torch draws the same normals in parts of multiples of 16 as in one."""
    whole = torch.randn(5 * GROUP, generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    parts = [torch.randn(n * GROUP, generator=generator) for n in (1, 3, 1)]
    return torch.equal(whole, torch.cat(parts))
