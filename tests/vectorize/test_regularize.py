"""Clean outlines: right angles at any orientation, in metres, always valid, never worse."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from shapely import affinity
from shapely.geometry import Polygon, box

from mapseg_core.vectorize.pipeline import polygons_from_probability
from mapseg_core.vectorize.polish import PolishOptions, polish
from mapseg_core.vectorize.polygons import Building
from mapseg_core.vectorize.regularize import clean_outline, dominant_direction
from mapseg_core.vectorize.trace import polygonize

L_SHAPE = Polygon([(15, 15), (60, 15), (60, 35), (35, 35), (35, 65), (15, 65)])


def _pixel_outline(geom, size=80):
    """The pixel-exact outline the vectorizer gives for ``geom`` drawn on a grid."""
    mask = rasterio.features.rasterize([geom], out_shape=(size, size)).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=4)
    _, geoms = polygonize(mask, labels.astype(np.int32))
    return max(geoms, key=lambda g: g.area)


def _iou(a, b):
    return a.intersection(b).area / a.union(b).area


@pytest.mark.parametrize("angle", [0, 5, 10, 20, 30, 37, 45])
@pytest.mark.parametrize("shape", [box(20, 25, 60, 50), L_SHAPE], ids=["rectangle", "L"])
def test_staircases_become_the_drawn_building_at_any_orientation(shape, angle):
    truth = affinity.rotate(shape, angle, origin=(40, 40))
    raw = _pixel_outline(truth)
    out = clean_outline(raw, 1.5)
    assert out.is_valid
    assert len(out.exterior.coords) == len(truth.exterior.coords)  # 4 or 6 corners
    assert _iou(out, truth) >= _iou(raw, truth) - 0.01  # closer to the truth, or as close
    if angle:
        assert len(raw.exterior.coords) > 4 * len(out.exterior.coords)  # staircase gone
    # Right angles: every corner is 90 degrees.
    xy = np.asarray(out.exterior.coords)[:-1]
    d = np.roll(xy, -1, axis=0) - xy
    cos = np.sum(d * np.roll(d, -1, axis=0), axis=1) / np.prod(
        [np.hypot(*d.T), np.hypot(*np.roll(d, -1, axis=0).T)], axis=0
    )
    np.testing.assert_allclose(cos, 0.0, atol=1e-9)


def test_regularize_alone_changes_a_staircase():
    """``--regularize`` without ``--simplify`` used to give 117 vertices for 117."""
    raw = _pixel_outline(affinity.rotate(box(20, 25, 60, 50), 30, origin=(40, 40)))
    building = Building(raw, int(raw.area), float(raw.area))
    parts, _ = polish(building, Affine.identity(), 1.0, PolishOptions(regularize=True))
    assert len(parts) == 1 and len(parts[0].exterior.coords) == 5


def test_metres_not_degrees():
    """The same building in degrees (1 unit = 111 km east, 55 km north) gets the same shape."""
    metric = affinity.rotate(box(0, 0, 20, 12), 25, origin=(0, 0))
    raw = _pixel_outline(affinity.translate(metric, 30, 30))
    scale = (111_000.0, 55_000.0)
    degrees = affinity.scale(raw, 1 / scale[0], 1 / scale[1], origin=(0, 0))
    out_m = clean_outline(raw, 1.5)
    out_deg = clean_outline(degrees, 1.5, metres_per_unit=scale)
    back = affinity.scale(out_deg, scale[0], scale[1], origin=(0, 0))
    assert len(out_m.exterior.coords) == len(back.exterior.coords) == 5
    assert _iou(out_m, back) > 0.999
    # Given in degrees with no scale, the 1.5 "metre" tolerance swallows the whole building.
    assert clean_outline(degrees, 1.5).area != pytest.approx(degrees.area, rel=0.2)


def test_round_buildings_stay_close_and_valid():
    """A disc is not rectilinear: whatever comes out stays within min_iou of it (a known limit:
    it is fitted with a right-angled polygon when that keeps IoU >= MIN_FIT_IOU)."""
    disc = _pixel_outline(shapely.Point(40, 40).buffer(25))
    for regularize in (True, False):
        out = clean_outline(disc, 1.5, regularize=regularize)
        assert out.is_valid and _iou(out, disc) >= 0.75
        assert 4 < len(out.exterior.coords) < len(disc.exterior.coords)
    assert _iou(clean_outline(disc, 1.5, regularize=False), disc) > 0.95


def test_holes_kept_and_noise_holes_dropped():
    court = box(10, 10, 70, 70).difference(box(25, 25, 55, 55))
    raw = _pixel_outline(affinity.rotate(court, 20, origin=(40, 40)))
    out = clean_outline(raw, 1.5, min_hole_area=2.0)
    assert len(out.interiors) == 1 and out.is_valid
    speck = Polygon(box(0, 0, 20, 20).exterior, [box(5, 5, 6, 6).exterior.coords])
    assert len(clean_outline(speck, 1.0, min_hole_area=2.0).interiors) == 0


def test_dominant_direction_any_orientation():
    for angle in (0, 12, 33, 60, 89):
        ring = np.asarray(affinity.rotate(L_SHAPE, angle).exterior.coords)
        assert math.degrees(dominant_direction(ring)) == pytest.approx(angle % 90, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.bool_, st.tuples(st.integers(4, 24), st.integers(4, 24))),
    st.sampled_from(["clean", "simple"]),
    st.floats(0.2, 3.0),
)
def test_polygons_are_always_valid_on_random_masks(mask, outline, tolerance):
    options = PolishOptions(simplify=tolerance, regularize=outline == "clean")
    features = polygons_from_probability(mask.astype(np.float32), Affine.identity(), options)
    for feature in features:
        assert feature.geometry.is_valid and feature.geometry.geom_type == "Polygon"
        assert feature.geometry.area > 0
    # Nothing is invented far from the mask: every polygon lies within tolerance + 1 px of it.
    if features:
        pixels = shapely.union_all(
            [box(c, r, c + 1, r + 1) for r, c in zip(*np.nonzero(mask), strict=True)]
        )
        for feature in features:
            assert feature.geometry.difference(pixels.buffer(tolerance * 2 + 1)).area < 1e-6


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.bool_, st.tuples(st.integers(6, 20), st.integers(6, 20))),
    st.integers(0, 1000),
    st.sampled_from(["clean", "simple"]),
)
def test_outline_does_not_depend_on_the_vertex_sequence(mask, start, outline):
    """A building merged across block borders has its ring starting elsewhere and seam points
    on straight edges; its outline must be the one the whole building gets in one block."""
    mask = mask.astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=4)
    _, geoms = polygonize(mask, labels.astype(np.int32))
    options = PolishOptions(simplify=0.75, regularize=outline == "clean")
    for raw in geoms:
        ring = np.asarray(raw.exterior.coords)[:-1]
        k = start % len(ring)
        rolled = np.roll(ring, -k, axis=0)
        # A seam point in the middle of the first edge (a straight run).
        seam = np.vstack([rolled[:1], (rolled[:1] + rolled[1:2]) / 2, rolled[1:]])
        variant = Polygon(seam, [h.coords for h in raw.interiors])
        a, _ = polish(Building(raw, int(raw.area), 0.0), Affine.identity(), 1.0, options)
        b, _ = polish(Building(variant, int(raw.area), 0.0), Affine.identity(), 1.0, options)
        assert [g.wkb for g in shapely.normalize(a)] == [g.wkb for g in shapely.normalize(b)]
