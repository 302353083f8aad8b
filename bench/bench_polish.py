"""Vectorization + polish cost of clean outlines vs today's pixel outlines, same probabilities.

    .venv/bin/python bench/bench_polish.py --size 4096 --block 1024

Both run :func:`mapseg_core.vectorize.pipeline.block_buildings` per block,
:class:`BorderMerger` and :func:`finished_polygons` (what tile-infer's writer
thread does) on one probability map of rotated rectangular and L-shaped roofs
(any orientation, smoothed edges, 0.3 m pixels):

* ``pixel``: the old default (pixel-exact outlines, min area 2 m²);
* ``clean``: the new default (simplification by 1.5 px, right angles, min area 2 m²).

Prints both times, the ratio and the vertex counts.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from _common import GSD, say
from affine import Affine

from mapseg_core.vectorize.merge import BorderMerger
from mapseg_core.vectorize.pipeline import block_buildings, finished_polygons
from mapseg_core.vectorize.polish import PolishOptions


def roofs(size: int, seed: int = 0) -> np.ndarray:
    """Probabilities of one roof per 64 px cell: a rotated rectangle or L, edges blurred."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.uint8)
    for r in range(32, size - 32, 64):
        for c in range(32, size - 32, 64):
            w, h, angle = rng.uniform(10, 24), rng.uniform(8, 20), rng.uniform(0, 90)
            box = cv2.boxPoints(((c, r), (2 * w, 2 * h), angle)).astype(np.int32)
            cv2.fillPoly(img, [box], 255)
            if rng.random() < 0.4:  # an L: cut one quadrant
                cv2.fillPoly(img, [((box + np.roll(box, 1, axis=0)) // 2 + box) // 2], 0)
    return cv2.GaussianBlur(img, (5, 5), 1.5).astype(np.float32) / 255


def run(prob: np.ndarray, block: int, options: PolishOptions) -> tuple[float, int, int]:
    n = -(-prob.shape[0] // block)
    transform = Affine(GSD, 0, 500000.0, 0, -GSD, 5000000.0)
    start = time.perf_counter()
    merger, features = BorderMerger(), []
    for i in range(n):
        for j in range(n):
            tile = prob[i * block : (i + 1) * block, j * block : (j + 1) * block]
            result = block_buildings(tile, 0.5, (i, j), (i * block, j * block), (n, n))
            features += finished_polygons(merger.add(result), transform, options)
    features += finished_polygons(merger.finish(), transform, options)
    seconds = time.perf_counter() - start
    vertices = sum(len(f.geometry.exterior.coords) - 1 for f in features)
    return seconds, len(features), vertices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args()
    prob = roofs(args.size)
    pixel = PolishOptions(min_area_m2=2.0)
    clean = PolishOptions(min_area_m2=2.0, simplify=1.5 * GSD, regularize=True)
    run(prob[:512, :512], 512, clean)  # warm-up (imports, caches)
    t_pixel, n_pixel, v_pixel = run(prob, args.block, pixel)
    t_clean, n_clean, v_clean = run(prob, args.block, clean)
    say(f"{args.size}^2 px, {args.block} px blocks, {n_pixel} buildings")
    say(f"pixel outlines: {t_pixel:.2f} s, {v_pixel / n_pixel:.1f} vertices/building")
    say(f"clean outlines: {t_clean:.2f} s, {v_clean / max(1, n_clean):.1f} vertices/building")
    say(f"clean / pixel time ratio: {t_clean / t_pixel:.2f}")


if __name__ == "__main__":
    main()
