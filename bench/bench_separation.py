"""Vectorization with separation vs today's vectorization, on the same probabilities.

    .venv/bin/python bench/bench_separation.py --size 4096 --block 1024

Both turn the same building probabilities, cut into the same blocks, into
merged buildings (``BorderMerger``) with tile-infer's vectorize stage
(:func:`~mapseg_core.vectorize.pipeline.block_buildings`):

* ``components``: threshold, 4-connected components, traced.
* ``separated``: threshold the block *plus its halo*, separate (markers =
  building minus contact, grown ``radius`` px), then trace the instance
  labels (touching buildings cut out and traced one by one, the others in one
  pass over the block).

The scene: terraces of touching houses (one contact column either side of each
party wall) in ``--terraces`` of the cells of a 192x48 px lattice, detached
houses in the others. Prints the time ratio
(goal: at most 1.5) and the building counts; exits 1 if separation does not
find more buildings than the components.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import say

from mapseg_core.vectorize.merge import BorderMerger
from mapseg_core.vectorize.pipeline import block_buildings
from mapseg_core.vectorize.separate import SeparationOptions, halo


def scene(size: int, terraces: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Building and contact probabilities ``(size, size)``: terraces and detached houses.

    ``terraces``: fraction of the 192x48 px lattice cells holding a terrace.
    """
    rng = np.random.default_rng(seed)
    building = np.full((size, size), 0.05, np.float32)
    contact = np.full((size, size), 0.05, np.float32)
    cell = 48
    for r in range(0, size - cell, cell):
        for c in range(0, size - 4 * cell, 4 * cell):
            if rng.random() < terraces:  # a terrace of 3..8 houses of 14..22 px
                widths = rng.integers(14, 23, rng.integers(3, 9))
                h = int(rng.integers(16, 30))
                x = c + int(rng.integers(0, 8))
                for k, w in enumerate(widths.tolist()):
                    if x + w >= c + 4 * cell:
                        break
                    building[r + 4 : r + 4 + h, x : x + w] = 0.9
                    if k:
                        contact[r + 4 : r + 4 + h, x - 1 : x + 1] = 0.9
                    x += w
            else:
                for k in range(4):  # detached houses
                    h, w = rng.integers(8, 28, 2).tolist()
                    building[r + 6 : r + 6 + h, c + k * cell + 4 : c + k * cell + 4 + w] = 0.9
    return building, contact


def blocks(
    building: np.ndarray, contact: np.ndarray, block: int, need: int
) -> list[tuple[tuple[int, int], tuple[int, int], np.ndarray, tuple[int, int, int, int]]]:
    """Each block's (index, offset, probabilities, core) as the engine holds them.

    The engine's predicted block of a separating model is one
    ``(rows, cols, 2)`` array, building and contact, of the block plus the
    separation halo (``need`` pixels); both runs read these same arrays.
    """
    size = building.shape[0]
    n = -(-size // block)
    out = []
    for i in range(n):
        for j in range(n):
            r0, c0 = i * block, j * block
            r1, c1 = min(size, r0 + block), min(size, c0 + block)
            a0, b0 = max(0, r0 - need), max(0, c0 - need)
            a1, b1 = min(size, r1 + need), min(size, c1 + need)
            prob = np.stack([building[a0:a1, b0:b1], contact[a0:a1, b0:b1]], axis=-1)
            out.append(((i, j), (r0, c0), prob, (r0 - a0, c0 - b0, r1 - r0, c1 - c0)))
    return out


def run(held: list, n: int, options: SeparationOptions | None) -> list:
    """tile-infer's vectorize stage (:func:`block_buildings`) over the blocks, merged.

    Without ``options`` each block is cut out of its halo, building channel
    only, as the engine does when it does not separate.
    """
    merger = BorderMerger()
    out = []
    for index, offset, prob, core in held:
        if options is None:
            r, c, h, w = core
            res = block_buildings(prob[r : r + h, c : c + w, 0], 0.5, index, offset, (n, n))
        else:
            res = block_buildings(
                prob[..., 0],
                0.5,
                index,
                offset,
                (n, n),
                separators=prob[..., 1:],
                separation=options,
                core=core,
            )
        out += merger.add(res)
    return out + merger.finish()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--radius", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--terraces", type=float, default=0.5, help="share of terrace cells")
    args = parser.parse_args()
    building, contact = scene(args.size, args.terraces)
    options = SeparationOptions(radius=args.radius)
    n = -(-args.size // args.block)
    held = blocks(building, contact, args.block, halo(options))
    times = {"components": [], "separated": []}
    counts = {}
    for _ in range(args.repeat):  # interleaved, best of N: the machine is shared
        for name, opts in (("components", None), ("separated", options)):
            t0 = time.perf_counter()
            found = run(held, n, opts)
            times[name].append(time.perf_counter() - t0)
            counts[name] = len(found)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["separated"] / best["components"]
    say(
        f"{args.size}x{args.size} px, {args.block} px blocks, radius {args.radius}, "
        f"terraces {args.terraces:.0%}: "
        f"components {best['components']:.2f} s ({counts['components']} buildings), "
        f"separated {best['separated']:.2f} s ({counts['separated']} buildings); "
        f"ratio {ratio:.2f} (goal <= 1.5)"
    )
    return 0 if counts["separated"] > counts["components"] else 1


if __name__ == "__main__":
    sys.exit(main())
