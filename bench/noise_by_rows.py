"""What drawing the noise again by rows (tiles/noise.py NoiseField) costs beside cutting it from the whole
draws (sampling.Noise): the CPU seconds to make both and to cut every tile's noise of one image, in the
order the tile engine takes them (by bands) and in the plan's own order. Usage:

    python bench/noise_by_rows.py [--input 8192x5464] [--tile 128] [--overlap 16] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from invsr.sampling import Noise
from invsr.tiles.noise import NoiseField
from invsr.tiles.plan import TilePlan


def seconds_to_cut(source, plan: TilePlan, order) -> float:
    start = time.perf_counter()
    for first, stop in order:
        cuts = [source.cut(tile.noise) for tile in plan.tiles[first:stop]]
        torch.cat([cut.predictor for cut in cuts]), torch.cat([cut.encoder for cut in cuts])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="8192x5464", help="W x H, sides multiples of 8")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    width, height = (int(side) for side in args.input.split("x"))
    shape = (1, 3, height, width)
    plan = TilePlan.make((height, width), (height, width), args.tile, args.overlap, 8)
    bounds = plan.batches(args.batch)
    start = time.perf_counter()
    whole = Noise.draw(shape, 4, 0)
    drawn = time.perf_counter() - start
    start = time.perf_counter()
    field = NoiseField(shape, 4, 0)
    walked = time.perf_counter() - start
    row = {
        "input": args.input,
        "tiles": len(plan.tiles),
        "whole_draw_s": round(drawn, 2),
        "field_walk_s": round(walked, 2),
        "whole_cut_all_s": round(seconds_to_cut(whole, plan, plan.band_order(bounds)), 2),
        "field_cut_all_s": round(seconds_to_cut(field, plan, plan.band_order(bounds)), 2),
        "field_cut_all_plan_order_s": round(seconds_to_cut(field, plan, bounds), 2),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
