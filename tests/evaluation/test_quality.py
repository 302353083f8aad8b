"""Polygon-quality metrics pass the checks of shared/specs/polygon-metrics.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from shapely import affinity
from shapely.geometry import Polygon, box

from mapseg_core.evaluation.polygons import match_buildings, union_iou
from mapseg_core.evaluation.quality import (
    QualitySums,
    boundary_band,
    boundary_iou_geometry,
    complexity,
    image_quality,
    mask_ious,
    max_tangent_error,
    polis,
    vertex_count,
)

SQUARE = box(0, 0, 100, 100)


def _score(preds, refs, step=2.0):
    m = match_buildings(preds, refs)
    pu, ru = shapely.union_all(preds), shapely.union_all(refs)
    sums = image_quality(
        preds,
        refs,
        m.pairs,
        m.ious,
        mask_iou=union_iou(preds, refs),
        boundary_iou=boundary_iou_geometry(pu, ru, 5.0),
        mta_step=step,
    )
    return sums.figures("px"), m


def test_a_set_scored_against_itself_is_perfect():
    refs = [SQUARE, box(200, 0, 260, 40), Polygon([(0, 200), (50, 200), (50, 230), (20, 260)])]
    figures, m = _score(refs, refs)
    assert m.f1 == 1.0
    for key in ("mask_IoU", "boundary_IoU", "C-IoU", "matched_C-IoU", "N-ratio"):
        assert figures[key] == pytest.approx(1.0), key
    assert figures["PoLiS_px"] == pytest.approx(0.0, abs=1e-9)
    assert figures["MTA"] == pytest.approx(0.0, abs=1e-6)


def test_square_shifted_by_half_its_side_has_iou_one_third():
    shifted = affinity.translate(SQUARE, 50, 0)
    figures, m = _score([shifted], [SQUARE])
    assert figures["mask_IoU"] == pytest.approx(1 / 3)
    assert figures["C-IoU"] == pytest.approx(1 / 3)  # same vertex count: no complexity penalty
    assert m.tp == 0  # 1/3 < 0.5: not a match
    assert math.isnan(figures["PoLiS_px"])  # bounding boxes overlap by 1/3 < 0.5: no PoLiS pair


def test_square_rotated_by_ten_degrees_has_mta_ten():
    rotated = affinity.rotate(SQUARE, 10)
    figures, _ = _score([rotated], [SQUARE])
    assert figures["MTA"] == pytest.approx(10.0, abs=0.01)
    assert max_tangent_error(rotated, SQUARE.boundary, 2.0) == pytest.approx(10.0, abs=0.01)
    assert figures["PoLiS_px"] > 0


def test_ten_times_the_vertices_gives_c_iou_0_18():
    dense = shapely.segmentize(SQUARE, 10.0)  # 40 vertices on the same square
    assert vertex_count(dense) == 40 and vertex_count(SQUARE) == 4
    figures, _ = _score([dense], [SQUARE])
    assert figures["mask_IoU"] == pytest.approx(1.0)
    assert figures["C-IoU"] == pytest.approx(1 - 36 / 44)  # 0.1818
    assert figures["C-IoU"] == pytest.approx(0.18, abs=0.005)
    assert figures["N-ratio"] == pytest.approx(10.0)
    assert figures["PoLiS_px"] == pytest.approx(0.0, abs=1e-9)


def test_polis_of_a_shift_is_the_mean_vertex_distance():
    # Shift 2 along x: every vertex of either square is 2 from the other's boundary but the
    # two corners that slide along the shared horizontal edges (distance 0).
    assert polis(affinity.translate(SQUARE, 2, 0), SQUARE) == pytest.approx(1.0)
    assert complexity(4, 4) == 1.0 and complexity(0, 0) == 1.0


def test_boundary_iou_is_stricter_than_mask_iou_and_agrees_on_rasters():
    big = box(0, 0, 60, 60)
    inner = box(3, 3, 57, 57)
    assert boundary_iou_geometry(inner, big, 5) < union_iou([inner], [big])
    yy, xx = np.mgrid[0:100, 0:100]
    ref = (xx >= 20) & (xx < 80) & (yy >= 20) & (yy < 80)
    pred = (xx >= 23) & (xx < 77) & (yy >= 23) & (yy < 77)
    iou, biou = mask_ious(pred, ref)
    assert iou == pytest.approx(54 * 54 / 3600) and biou < iou
    band = boundary_band(ref)  # d = round(0.02 * 141.4) = 3 px inside the contour
    assert band.sum() == 3600 - 54 * 54
    assert mask_ious(ref, ref) == (1.0, 1.0)


def test_sums_pool_exactly():
    a, _ = _score([SQUARE], [SQUARE])
    one = image_quality([SQUARE], [SQUARE], [(0, 0)], [1.0], mask_iou=1, boundary_iou=1, mta_step=2)
    two = image_quality(
        [affinity.translate(SQUARE, 50, 0)],
        [SQUARE],
        [],
        [],
        mask_iou=1 / 3,
        boundary_iou=0.1,
        mta_step=2,
    )
    pooled = (one + two).figures("px")
    assert pooled["mask_IoU"] == pytest.approx((1 + 1 / 3) / 2)
    assert pooled["N-ratio"] == pytest.approx(1.0)
    assert (QualitySums() + one) == one
