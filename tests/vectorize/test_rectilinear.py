"""Rectilinear fitting: the fewest corners that keep the mask, walls where the mask's are."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import affinity
from shapely.geometry import Polygon, box

from mapseg_core.vectorize.rectilinear import (
    _rasterize,
    best_rectangle,
    count_corners,
    fit_rectilinear,
)

L_SHAPE = Polygon([(0, 0), (40, 0), (40, 16), (18, 16), (18, 36), (0, 36)])


def _iou(a, b):
    return a.intersection(b).area / a.union(b).area


def _wobbly(shape: Polygon, seed: int, amplitude: float = 0.8) -> Polygon:
    """``shape`` with its boundary jittered, as a predicted roof's blob is."""
    rng = np.random.default_rng(seed)
    ring = np.asarray(shape.segmentize(1.0).exterior.coords)[:-1]
    ring = ring + rng.uniform(-amplitude, amplitude, ring.shape)
    parts = shapely.get_parts(shapely.make_valid(Polygon(ring)))
    return max((g for g in parts if g.geom_type == "Polygon"), key=lambda g: g.area)


def test_best_rectangle_is_exact_on_a_rectangle_and_maximizes_iou():
    mask = np.zeros((30, 40), bool)
    mask[5:20, 8:33] = True
    assert best_rectangle(mask) == ((5, 20, 8, 33), 1.0)
    mask[5:9, 8:12] = False  # a notch: the rectangle still covers it (IoU 0.957 > any other)
    rect, iou = best_rectangle(mask)
    assert rect == (5, 20, 8, 33) and iou == pytest.approx(1 - 16 / 375)
    mask[:] = False
    mask[0:3, 0:3] = True  # a small square and a long thin tail: the square wins
    mask[1, 3:40] = True
    (r0, r1, c0, c1), iou = best_rectangle(mask)
    brute = max(
        (mask[a:b, c:d].sum() / (mask.sum() + (b - a) * (d - c) - mask[a:b, c:d].sum()))
        for a in range(30)
        for b in range(a + 1, 31)
        for c in range(40)
        for d in range(c + 1, 41)
    )
    assert iou == pytest.approx(brute)


@pytest.mark.parametrize(
    ("cells", "corners"),
    [
        ([(2, 6, 2, 8)], 4),  # rectangle
        ([(2, 6, 2, 8), (6, 10, 2, 4)], 6),  # L
        ([(2, 6, 2, 8), (6, 10, 4, 6)], 8),  # T
        ([(2, 4, 2, 4), (4, 6, 4, 6)], 8),  # two squares touching at a corner
    ],
)
def test_count_corners(cells, corners):
    grid = np.zeros((12, 12), bool)
    for r0, r1, c0, c1 in cells:
        grid[r0:r1, c0:c1] = True
    assert count_corners(grid) == corners


def test_count_corners_counts_holes():
    grid = np.zeros((12, 12), bool)
    grid[1:11, 1:11] = True
    grid[4:7, 4:7] = False
    assert count_corners(grid) == 8


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.3, 1.3), st.floats(0, 90))
def test_rasterize_follows_gdal_pixel_centre_rule(seed, cell, angle):
    rng = np.random.default_rng(seed)
    hull = shapely.MultiPoint(rng.uniform(0, 30, (8, 2))).convex_hull
    court = affinity.rotate(box(10, 10, 16, 14), angle, origin=(13, 12))
    shape = hull.difference(court) if hull.contains(court) else hull
    x0, y0 = shape.bounds[0] - cell, shape.bounds[1] - cell
    size = (int(40 / cell), int(40 / cell))
    ours = _rasterize(shape, x0, y0, cell, size)
    gdal = rasterio.features.rasterize(
        [shape], out_shape=size, transform=Affine(cell, 0, x0, 0, cell, y0)
    ).astype(bool)
    np.testing.assert_array_equal(ours, gdal)


@pytest.mark.parametrize("angle", [0, 17, 45, 71])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_wobbly_rectangle_becomes_four_corners_on_its_walls(angle, seed):
    truth = affinity.rotate(box(-15, -8, 15, 8), angle, origin=(0, 0))
    blob = _wobbly(truth, seed)
    fit = fit_rectilinear(blob, [math.radians(angle)], 0.5, penalty=0.02, min_side=3.0)
    assert fit is not None and fit.corners == 4 and len(fit.polygon.exterior.coords) == 5
    assert _iou(fit.polygon, truth) > 0.95 > _iou(blob, truth) - 0.02


def test_a_wing_is_drawn_when_it_pays_for_its_corners():
    blob = _wobbly(L_SHAPE, 4)
    fit = fit_rectilinear(blob, [0.0], 0.5, penalty=0.02, min_side=3.0)
    assert fit is not None and fit.corners == 6 and _iou(fit.polygon, L_SHAPE) > 0.95
    # At a corner price above what the wing adds, the rectangle is kept.
    dear = fit_rectilinear(blob, [0.0], 0.5, penalty=0.2, min_side=3.0)
    assert dear is not None and dear.corners == 4 and dear.score > dear.iou - 0.2 * 6
    # A wing thinner than min_side is not drawn either.
    thin = fit_rectilinear(blob, [0.0], 0.5, penalty=0.0, min_side=25.0)
    assert thin is not None and thin.corners == 4


def test_the_best_axis_is_used():
    truth = affinity.rotate(box(-20, -6, 20, 6), 30, origin=(0, 0))
    fit = fit_rectilinear(truth, [0.0, math.radians(30)], 0.5, penalty=0.02, min_side=3.0)
    assert fit is not None and fit.corners == 4 and _iou(fit.polygon, truth) > 0.97


def test_courtyards_are_kept_and_small_holes_are_not():
    court = box(0, 0, 40, 40).difference(box(12, 12, 28, 28))
    fit = fit_rectilinear(court, [0.0], 0.5, penalty=0.005, min_side=3.0, min_hole_area=50.0)
    assert fit is not None and len(fit.polygon.interiors) == 1 and fit.corners == 8
    assert _iou(fit.polygon, court) > 0.97
    small = fit_rectilinear(court, [0.0], 0.5, penalty=0.005, min_side=3.0, min_hole_area=400.0)
    assert small is not None and len(small.polygon.interiors) == 0


def test_empty_polygons_have_no_fit():
    assert fit_rectilinear(Polygon(), [0.0], 0.5, penalty=0.02, min_side=1.0) is None
