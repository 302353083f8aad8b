"""Block vectorization and the border merge are exact and independent of block order."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import rasterio.features
import shapely
import shapely.affinity
import shapely.geometry
from affine import Affine
from rasters import canonical, scene
from shapely.geometry import Polygon, box

from mapseg_core.vectorize.merge import BorderMerger, merge_blocks
from mapseg_core.vectorize.polish import PolishOptions, polish, to_world
from mapseg_core.vectorize.polygons import Building, vectorize_block
from mapseg_core.vectorize.trace import polygonize


def _scene_mask() -> tuple[np.ndarray, list[Polygon]]:
    img, shapes = scene()
    return (img[0] > 200) & (img[2] < 100), shapes


def _blocks(mask: np.ndarray, size: tuple[int, int]):
    h, w = mask.shape
    n = (-(-h // size[0]), -(-w // size[1]))
    prob = mask.astype(np.float32) * 0.75
    out = []
    for i in range(n[0]):
        for j in range(n[1]):
            r, c = i * size[0], j * size[1]
            sub = mask[r : r + size[0], c : c + size[1]]
            out.append(
                vectorize_block(sub, prob[r : r + size[0], c : c + size[1]], (i, j), (r, c), n)
            )
    return out


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (17, 23), (200, 200)])
def test_merged_blocks_equal_the_painted_shapes(size):
    mask, shapes = _scene_mask()
    buildings = merge_blocks(_blocks(mask, size))
    assert canonical([b.geometry for b in buildings]) == canonical(shapes)
    for b in buildings:
        assert b.pixels == int(b.geometry.area)
        assert b.prob_sum == pytest.approx(0.75 * b.pixels)


def test_merge_does_not_depend_on_completion_order():
    mask, shapes = _scene_mask()
    results = _blocks(mask, (32, 32))
    for seed in range(3):
        random.Random(seed).shuffle(results)
        assert canonical([b.geometry for b in merge_blocks(results)]) == canonical(shapes)


def test_courtyard_hole_survives_the_merge():
    mask, _ = _scene_mask()
    holes = [b for b in merge_blocks(_blocks(mask, (16, 16))) if b.geometry.interiors]
    assert len(holes) == 1 and shapely.Polygon(holes[0].geometry.interiors[0]).area == 15 * 20


def test_diagonal_neighbours_across_a_border_stay_apart():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True  # touch at a corner only: 4-connectivity keeps them apart
    assert len(merge_blocks(_blocks(mask, (2, 2)))) == 2


def test_buildings_are_emitted_as_soon_as_their_neighbours_are_done():
    mask = np.zeros((8, 32), bool)
    mask[2:5, 6:10] = True  # crosses the border between blocks (0, 0) and (0, 1)
    results = _blocks(mask, (8, 8))
    merger = BorderMerger()
    assert merger.add(results[0]) == [] and merger.pending == 1
    assert len(merger.add(results[1])) == 1 and merger.pending == 0


def test_to_world_and_polish():
    tfm = Affine(0.5, 0, 100.0, 0, -0.5, 200.0)
    world = to_world(box(0, 0, 4, 2), tfm)
    assert world.bounds == (100.0, 199.0, 102.0, 200.0)
    building = Building(box(0, 0, 4, 2), 8, 4.0)
    assert polish(building, tfm, 0.25, PolishOptions(min_area_m2=2.5))[0] == []
    parts, area = polish(building, tfm, 0.25, PolishOptions(min_area_m2=1.0))
    assert area == 2.0 and len(parts) == 1 and parts[0].area == 2.0


def test_simplify_keeps_topology():
    stairs = Polygon([(0, 0), (10, 0), (10, 1), (9, 1), (9, 2), (8, 2), (8, 3), (0, 3)])
    parts, _ = polish(Building(stairs, 27, 27.0), Affine.identity(), 1.0, PolishOptions(simplify=1))
    assert len(parts) == 1 and parts[0].is_valid and len(parts[0].exterior.coords) < 9


def _gdal(labels: np.ndarray) -> dict[int, str]:
    out = {}
    for geojson, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=4):
        out[int(value)] = shapely.normalize(shapely.geometry.shape(geojson)).wkt
    return out


@pytest.mark.parametrize("seed", range(4))
def test_polygonize_equals_gdal_vertex_for_vertex(seed):
    """Random masks (rectangles xor-ed: holes, pinches, one-pixel parts), labelled 4-connected."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w = rng.integers(1, 40, 2)
        mask = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(1, 14)):
            r, c = rng.integers(0, h), rng.integers(0, w)
            mask[r : r + rng.integers(1, 9), c : c + rng.integers(1, 9)] ^= 1
        _, labels = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)
        values, geoms = polygonize(mask, labels, (5, 7))
        ours = {
            v: shapely.normalize(shapely.affinity.translate(g, -7, -5)).wkt
            for v, g in zip(values, geoms, strict=True)
        }
        assert ours == _gdal(labels)


def test_pinched_buildings_stay_apart_and_whole():
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # two buildings touching at a corner
    mask[3:5, 3:5] = 1
    mask[3, 3] = 0  # a notch, no pinch: traced
    _, labels = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)
    values, geoms = polygonize(mask, labels)
    assert sorted(g.area for g in geoms) == [1.0, 1.0, 3.0] and len(set(values)) == 3
