"""Orthogonal regularization squares corners and never makes an outline worse."""

from __future__ import annotations

import shapely
from shapely import affinity
from shapely.geometry import Polygon, box

from mapseg_core.vectorize.regularize import dominant_angle, regularize


def test_noisy_rotated_rectangle_becomes_a_rectangle():
    noisy = Polygon([(0, 0), (10, 0.3), (20, 0), (20, 10), (10.2, 10), (0, 10.2)])
    rotated = affinity.rotate(noisy, 30, origin=(0, 0))
    out = regularize(rotated)
    assert len(out.exterior.coords) == 5
    assert abs(out.area - rotated.area) / rotated.area < 0.05
    assert abs(abs(dominant_angle(out)) % 90 - 30) < 1.0


def test_l_shape_keeps_six_corners_and_holes_survive():
    l_shape = Polygon([(0, 0), (10, 0), (10, 4), (4, 4), (4, 10), (0, 10)])
    assert len(regularize(l_shape).exterior.coords) == 7
    ring = box(0, 0, 20, 20).difference(box(5, 5, 15, 15))
    out = regularize(ring)
    assert len(out.interiors) == 1 and shapely.equals(out, ring)


def test_triangle_is_left_alone():
    tri = Polygon([(0, 0), (10, 0), (0, 10)])
    assert regularize(tri).equals(tri)
