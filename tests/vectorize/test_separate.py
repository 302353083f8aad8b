"""Separation of touching buildings: growth rule, and exactness across any block layout."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import shapely
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rasters import canonical

from mapseg_core.errors import ConfigError
from mapseg_core.vectorize.merge import merge_blocks
from mapseg_core.vectorize.pipeline import block_buildings
from mapseg_core.vectorize.polygons import vectorize_block
from mapseg_core.vectorize.separate import (
    SeparationOptions,
    grow,
    halo,
    markers_of,
    separate,
    separate_touching,
)
from mapseg_core.vectorize.trace import polygonize


def _partition(labels: np.ndarray) -> set[frozenset[tuple[int, int]]]:
    """The pixel sets of the labels' equal-value 4-connected runs (names ignored)."""
    seen: set[tuple[int, int]] = set()
    out = set()
    h, w = labels.shape
    for start in zip(*map(lambda a: a.tolist(), np.nonzero(labels)), strict=True):
        if start in seen:
            continue
        group, queue = {start}, deque([start])
        while queue:
            r, c = queue.popleft()
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= rr < h and 0 <= cc < w and (rr, cc) not in group:
                    if labels[rr, cc] == labels[r, c]:
                        group.add((rr, cc))
                        queue.append((rr, cc))
        seen |= group
        out.add(frozenset(group))
    return out


def _reference_buildings(
    building: np.ndarray, markers: np.ndarray, radius: int
) -> set[frozenset[tuple[int, int]]]:
    """Buildings by the rule of the module docstring, pixel by pixel (slow, obvious)."""
    h, w = building.shape
    dist = np.full((h, w), -1)
    queue: deque[tuple[int, int]] = deque()
    for r, c in zip(*np.nonzero(building & markers), strict=True):
        dist[r, c] = 0
        queue.append((int(r), int(c)))
    while queue:
        r, c = queue.popleft()
        if dist[r, c] == radius:
            continue
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and building[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = dist[r, c] + 1
                queue.append((rr, cc))
    parent: dict[tuple[int, int], tuple[int, int]] = {}
    for r, c in zip(*np.nonzero(dist > 0), strict=True):
        for dr, dc in ((-1, 0), (0, -1), (0, 1), (1, 0)):  # up, left, right, down
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and dist[rr, cc] == dist[r, c] - 1:
                parent[(int(r), int(c))] = (rr, cc)
                break
    # Kept edges: marker-marker, parent links, unreached-unreached.
    root = {p: p for p in zip(*map(lambda a: a.tolist(), np.nonzero(building)), strict=True)}

    def find(p: tuple[int, int]) -> tuple[int, int]:
        while root[p] != p:
            root[p] = root[root[p]]
            p = root[p]
        return p

    def union(a: tuple[int, int], b: tuple[int, int]) -> None:
        root[find(a)] = find(b)

    for child, par in parent.items():
        union(child, par)
    for r in range(h):
        for c in range(w):
            if not building[r, c]:
                continue
            for rr, cc in ((r + 1, c), (r, c + 1)):
                if rr >= h or cc >= w or not building[rr, cc]:
                    continue
                both_markers = dist[r, c] == 0 and dist[rr, cc] == 0
                both_unreached = dist[r, c] < 0 and dist[rr, cc] < 0
                if both_markers or both_unreached:
                    union((r, c), (rr, cc))
    groups: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for p in root:
        groups.setdefault(find(p), set()).add(p)
    return {frozenset(g) for g in groups.values()}


def _random_maps(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Blobby building and contact probabilities (smoothed noise, like a network's)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 2)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    smooth = (smooth - smooth.min()) / max(1e-6, float(np.ptp(smooth)))
    return smooth[..., 0], smooth[..., 1]


def _by_blocks(
    prob: np.ndarray, contact: np.ndarray, block: int, options: SeparationOptions, t: float = 0.5
) -> list:
    """What the engine does per block: separate block + halo, vectorize, merge."""
    h, w = prob.shape
    n_blocks = (-(-h // block), -(-w // block))
    need = halo(options)
    results = []
    for i in range(n_blocks[0]):
        for j in range(n_blocks[1]):
            r0, c0 = i * block, j * block
            r1, c1 = min(h, r0 + block), min(w, c0 + block)
            a0, b0 = max(0, r0 - need), max(0, c0 - need)
            a1, b1 = min(h, r1 + need), min(w, c1 + need)
            results.append(
                block_buildings(
                    prob[a0:a1, b0:b1],
                    t,
                    (i, j),
                    (r0, c0),
                    n_blocks,
                    separators=contact[a0:a1, b0:b1, None],
                    separation=options,
                    core=(r0 - a0, c0 - b0, r1 - r0, c1 - c0),
                )
            )
    rng = np.random.default_rng(block)
    return merge_blocks([results[k] for k in rng.permutation(len(results))])


def _pixels_of(buildings: list) -> list[int]:
    return sorted(b.pixels for b in buildings)


def test_two_touching_houses_are_split_along_the_contact_line():
    building = np.zeros((12, 20), bool)
    building[2:10, 2:18] = True
    contact = np.zeros((12, 20, 1), np.float32)
    contact[:, 9:11, 0] = 0.9  # the party wall: 2 px wide
    labels = separate(building, contact, SeparationOptions(radius=4))
    left, right = labels[5, 3], labels[5, 16]
    assert left != right and left > 0 and right > 0
    assert (labels[2:10, 2:10] == left).all() and (labels[2:10, 10:18] == right).all()
    assert (labels[~building] == 0).all()


def test_pixels_no_marker_reaches_stay_one_building():
    building = np.zeros((10, 30), bool)
    building[2:8, 2:28] = True
    contact = np.zeros((10, 30, 1), np.float32)
    contact[:, 10:, 0] = 0.9  # a long run of contact: its far end is out of reach
    labels = separate(building, contact, SeparationOptions(radius=3))
    unreached = labels[5, 20]
    assert unreached == labels.max() and (labels[2:8, 14:28] == unreached).all()
    assert labels[5, 5] != unreached
    building[2:8, 20] = False  # two runs out of reach: two buildings
    labels = separate(building, contact, SeparationOptions(radius=3))
    assert labels[5, 16] != labels[5, 24] and labels[5, 16] > labels[5, 5]


def test_without_separating_channels_every_building_pixel_is_a_marker():
    building = np.eye(6, dtype=bool) | np.eye(6, k=1, dtype=bool)
    assert (markers_of(building, None, 0.5) == building).all()


@pytest.mark.parametrize(("radius", "threshold"), [(0, 0.5), (4, 0.0), (4, 1.0)])
def test_bad_options_are_refused_with_the_fix(radius, threshold):
    with pytest.raises(ConfigError, match="separation"):
        SeparationOptions(radius=radius, threshold=threshold)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(5, 40),
    width=st.integers(5, 40),
    radius=st.integers(1, 6),
)
def test_growth_matches_the_pixel_by_pixel_rule(seed, height, width, radius):
    prob, contact = _random_maps(seed, height, width)
    building = prob >= 0.5
    markers = markers_of(building, contact[..., None], 0.5)
    labels = grow(building, markers, radius)
    assert _partition(labels) == _reference_buildings(building, markers, radius)


def _sharing_an_edge(labels: np.ndarray) -> set[int]:
    """Labels with a 4-neighbour of another label, by comparing every pixel pair."""
    out: set[int] = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        pair = (a != b) & (a > 0) & (b > 0)
        out |= set(a[pair].tolist()) | set(b[pair].tolist())
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(5, 40),
    width=st.integers(5, 40),
    radius=st.integers(1, 6),
)
def test_separation_reports_every_label_that_shares_an_edge(seed, height, width, radius):
    prob, contact = _random_maps(seed, height, width)
    options = SeparationOptions(radius=radius)
    ring, touching = separate_touching(prob >= 0.5, contact[..., None], options)
    labels = separate(prob >= 0.5, contact[..., None], options)
    assert np.array_equal(ring, np.pad(labels, 1))  # the labels with a one-pixel 0 border
    assert set(touching.tolist()) == _sharing_an_edge(labels)
    # vectorize_block given them traces what it finds by scanning the block itself.
    mask = prob >= 0.5
    told = vectorize_block(mask, prob, (0, 0), (0, 0), (1, 1), ring, touching)
    scanned = vectorize_block(mask, prob, (0, 0), (0, 0), (1, 1), ring)
    assert canonical([b.geometry for b in told.complete]) == canonical(
        [b.geometry for b in scanned.complete]
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(8, 70),
    width=st.integers(8, 70),
    block=st.integers(3, 40),
    radius=st.integers(1, 6),
)
# Layouts where pixels that looked unreached near a window's edge (their marker outside
# the window) bridged two runs of unreached pixels into one building.
@example(seed=1, height=59, width=60, block=3, radius=1)
@example(seed=9545, height=29, width=44, block=9, radius=2)
@example(seed=8727, height=44, width=58, block=13, radius=1)
def test_buildings_do_not_depend_on_the_block_layout(seed, height, width, block, radius):
    prob, contact = _random_maps(seed, height, width)
    options = SeparationOptions(radius=radius)
    whole = _by_blocks(prob, contact, max(height, width), options)
    tiled = _by_blocks(prob, contact, block, options)
    assert _pixels_of(tiled) == _pixels_of(whole)
    assert canonical([b.geometry for b in tiled]) == canonical([b.geometry for b in whole])
    total = sum(b.pixels for b in whole)
    assert total == int((prob >= 0.5).sum())
    assert shapely.union_all([b.geometry for b in whole]).area == pytest.approx(total)
    # The separated buildings are exactly the rule's, not only stable across layouts.
    markers = markers_of(prob >= 0.5, contact[..., None], 0.5)
    expected = _reference_buildings(prob >= 0.5, markers, radius)
    assert _pixels_of(whole) == sorted(len(g) for g in expected)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(2, 30),
    width=st.integers(2, 30),
    labels_max=st.integers(1, 5),
    cell=st.integers(1, 3),
)
def test_touching_labels_are_traced_as_gdal_polygonizes_them(seed, height, width, labels_max, cell):
    from mapseg_core.vectorize.trace import _polygonize_gdal

    rng = np.random.default_rng(seed)
    small = rng.integers(0, labels_max + 1, (-(-height // cell), -(-width // cell)))
    labels = np.kron(small, np.ones((cell, cell), np.int64))[:height, :width].astype(np.int32)
    mask = (labels > 0).astype(np.uint8)
    ours = polygonize(mask, labels, (3, 5), touching=True)
    gdal = _polygonize_gdal(labels, (3, 5))
    # Told that every label may touch (a superset, as the engine may pass): the same.
    told = polygonize(mask, labels, (3, 5), touching=True, candidates=np.unique(labels[labels > 0]))

    def by_label(values, geoms):
        out: dict[int, list] = {}
        for v, g in zip(values, geoms, strict=True):
            out.setdefault(v, []).append(g)
        return {k: canonical(v) for k, v in out.items()}

    assert by_label(*ours) == by_label(*gdal)
    assert by_label(*told) == by_label(*gdal)
    # Every vertex is a turn of the outline: none repeated or on a straight run.
    for geom in ours[1]:
        for ring in (geom.exterior, *geom.interiors):
            xy = np.asarray(ring.coords)[:-1]
            before, after = np.roll(xy, 1, axis=0), np.roll(xy, -1, axis=0)
            straight = ((before == xy) & (xy == after)).any(axis=1)
            assert not straight.any(), xy[straight]
