"""Vectorize + merge vs a naive baseline on the same mask, measured in one run.

    .venv/bin/python bench/bench_vectorize.py --size 8192 --block 1024

Both turn the same building mask, cut into the same blocks, into whole
buildings in global pixel coordinates:

* ``naive``: per block ``rasterio.features.shapes`` (the pixels' polygons),
  then one ``shapely.unary_union`` of every polygon of the raster and a split
  into parts: what tools without a border merge do.
* ``mapseg``: :func:`vectorize_block` per block (4-connected labels, building
  outlines traced by OpenCV at pixel edges, GDAL only at corner pinches; only
  the pieces on internal borders kept apart) and :class:`BorderMerger`, which
  unions only the pieces that face each other across a border.

Checks the two give the same polygons (as sets of normalized WKT), prints the
time ratio, and exits with status 1 if the polygons differ.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import rasterio.features
import shapely
from _common import buildings_strip, say
from affine import Affine
from shapely.geometry import shape

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rasters import canonical  # noqa: E402

from mapseg_core.vectorize.merge import BorderMerger  # noqa: E402
from mapseg_core.vectorize.polygons import vectorize_block


def blocks(size: int, block: int):
    n = -(-size // block)
    for i in range(n):
        for j in range(n):
            yield (i, j), (i * block, j * block), (n, n)


def naive(mask: np.ndarray, block: int) -> list:
    polys = []
    for _, (r, c), _ in blocks(mask.shape[0], block):
        sub = mask[r : r + block, c : c + block].astype(np.uint8)
        for geojson, _ in rasterio.features.shapes(
            sub, mask=sub > 0, connectivity=4, transform=Affine.translation(c, r)
        ):
            polys.append(shape(geojson))
    merged = shapely.unary_union(polys)
    return list(shapely.get_parts(merged))


def ours(mask: np.ndarray, prob: np.ndarray, block: int) -> list:
    merger = BorderMerger()
    out = []
    for index, (r, c), n in blocks(mask.shape[0], block):
        sl = (slice(r, r + block), slice(c, c + block))
        out += merger.add(vectorize_block(mask[sl], prob[sl], index, (r, c), n))
    out += merger.finish()
    return [b.geometry for b in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args()
    img = buildings_strip(args.size, args.size, 0)
    # Join a few neighbours into bigger L/U-shaped buildings that cross more borders.
    mask = (img[0] > 200) & (img[2] < 100)
    mask[::96, :] |= np.roll(mask[::96, :], 1, axis=1)
    del img
    prob = mask.astype(np.float32)
    start = time.perf_counter()
    a = ours(mask, prob, args.block)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    b = naive(mask, args.block)
    t_naive = time.perf_counter() - start
    same = canonical(a, 3) == canonical(b, 3)
    say(
        f"mask {args.size}x{args.size} px, blocks {args.block} px, "
        f"{len(a)} buildings ({mask.mean():.1%} building pixels)"
    )
    say(f"naive per-block shapes + unary_union   {t_naive:8.2f} s, {len(b)} polygons")
    say(f"mapseg vectorize_block + BorderMerger  {t_ours:8.2f} s, {len(a)} polygons")
    say(f"same polygons: {same}; speed-up naive / mapseg = {t_naive / t_ours:.2f}x (goal >= 3x)")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
