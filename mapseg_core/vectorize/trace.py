"""Pure tracing: labelled pixels -> pixel-edge polygons (holes kept) in global pixel coordinates.

Pixel corners are at integer (column, row), so the same edge traced in two
blocks has the same coordinates. :func:`polygonize` gives exactly what GDAL's
polygonize gives (it is tested against it), about 10x faster.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray
from shapely.geometry import Polygon


def polygonize(
    mask: NDArray[np.uint8],
    labels: NDArray[np.int32],
    offset: tuple[int, int] = (0, 0),
    touching: bool = False,
    pixels: tuple[NDArray[np.intp], NDArray[np.int32]] | None = None,
    candidates: NDArray[np.integer] | None = None,
) -> tuple[list[int], list[Polygon]]:
    """Pixel-edge polygons of the 4-connected components of ``mask``, holes kept.

    Returns the component labels and their polygons in global pixel corner
    coordinates (``offset`` = (row, col) of ``mask[0, 0]``), exactly what GDAL's
    polygonize (``rasterio.features.shapes(labels, mask=labels > 0,
    connectivity=4)``) gives, but about 10x faster, because only the building
    outlines are traced (by OpenCV) and the polygons are built in one
    vectorized shapely call.

    Why the mask is traced at twice its size: ``cv2.findContours`` follows the
    *centres* of boundary pixels, so a one-pixel-wide part would collapse to a
    line. In the 2x image every pixel is a 2x2 square; a boundary pixel at
    upsampled ``x`` is the left half (``x = 2c``) or the right half
    (``x = 2c + 1``) of source pixel ``c``, and the traced outline lies on
    that pixel's left edge ``c`` or right edge ``c + 1`` respectively:
    ``(x + 1) // 2`` in both cases (same for rows, and for the hole outlines,
    which OpenCV traces on the building pixels around the hole). The corner
    cuts of the 8-connected trace at concave corners map onto the corner
    itself and are dropped as repeated points.

    OpenCV's trace treats buildings as 8-connected. Where two building pixels
    touch only at a corner (a 2x2 window holding one diagonal pair), that
    differs from the 4-connected rule, so the components at such pinches (rare
    in building masks) go through GDAL instead; everything else has no
    pinch, and there 4- and 8-connectivity agree for buildings and background.
    With ``touching`` (separated buildings, see :func:`vectorize_block`),
    each label that shares an edge with another is cut out and traced on its
    own (:func:`_polygonize_touching`), which keeps each label's own outline.
    ``pixels``: the flat indices of the mask's pixels and their labels, when
    the caller has them already (spares the touching path a scan).
    ``candidates``: with ``touching``, labels that may share an edge with
    another (a superset; None: found by comparing neighbouring pixels).
    """
    a, b, c, d = mask[:-1, :-1], mask[:-1, 1:], mask[1:, :-1], mask[1:, 1:]
    pinch = (a & d & ~(b | c)) | (b & c & ~(a | d))
    values: list[int] = []
    geoms: list[Polygon] = []
    traced = mask
    odd_parts: list[NDArray[np.int32]] = []
    if pinch.any():
        rows, cols = np.nonzero(pinch)
        near = np.concatenate(
            [
                labels[rows, cols],
                labels[rows, cols + 1],
                labels[rows + 1, cols],
                labels[rows + 1, cols + 1],
            ]
        )
        odd_parts.append(near[near > 0])
    touch: NDArray[np.int32] | None = None
    if touching and candidates is not None:
        touch = np.asarray(candidates, dtype=np.int32) if len(candidates) else None
    elif touching:
        # Separated buildings that share an edge: traced apart (see _polygonize_touching).
        on = labels > 0
        right = (labels[:, :-1] != labels[:, 1:]) & on[:, :-1] & on[:, 1:]
        below = (labels[:-1, :] != labels[1:, :]) & on[:-1, :] & on[1:, :]
        if right.any() or below.any():
            touch = np.unique(
                np.concatenate(
                    [
                        labels[:, :-1][right],
                        labels[:, 1:][right],
                        labels[:-1, :][below],
                        labels[1:, :][below],
                    ]
                )
            )
    if odd_parts and any(len(p) for p in odd_parts):
        odd = np.unique(np.concatenate(odd_parts))
        in_odd = np.isin(labels, odd)
        rows_any = np.flatnonzero(in_odd.any(axis=1))
        cols_any = np.flatnonzero(in_odd.any(axis=0))
        r0, r1 = int(rows_any[0]), int(rows_any[-1]) + 1
        c0, c1 = int(cols_any[0]), int(cols_any[-1]) + 1
        # GDAL scans every pixel it is given: only the bounding box of the odd components.
        odd_labels = np.where(in_odd[r0:r1, c0:c1], labels[r0:r1, c0:c1], 0).astype(np.int32)
        values, geoms = _polygonize_gdal(odd_labels, (offset[0] + r0, offset[1] + c0))
        traced = np.where(in_odd, 0, mask).astype(np.uint8)
        pixels = None  # the odd components' pixels are gone from ``traced``
    if touch is not None:
        traced, v, gs = _polygonize_touching(traced, labels, touch, offset, pixels)
        values += v
        geoms += gs
    traced_values, traced_geoms = _polygonize_traced(traced, labels, offset)
    return values + traced_values, geoms + traced_geoms


def _polygonize_traced(
    mask: NDArray[np.uint8], labels: NDArray[np.int32], offset: tuple[int, int]
) -> tuple[list[int], list[Polygon]]:
    """:func:`polygonize` by contour tracing, for a mask without pinches."""
    h, w = mask.shape
    up: NDArray[np.uint8] = np.asarray(
        cv2.resize(mask, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST), dtype=np.uint8
    )
    return _trace(up, labels, offset, 2)


def _polygonize_touching(
    traced: NDArray[np.uint8],
    labels: NDArray[np.int32],
    touch: NDArray[np.int32],
    offset: tuple[int, int],
    pixels: tuple[NDArray[np.intp], NDArray[np.int32]] | None = None,
) -> tuple[NDArray[np.uint8], list[int], list[Polygon]]:
    """Polygons of the ``touch`` labels (they share an edge with another), and the mask left.

    At twice the size two touching labels would be one blob to OpenCV, so each
    label is cut out on its own and the crops are packed in shelves, one empty
    pixel apart, in one small canvas, which is traced at 2x in a single OpenCV
    pass like the other buildings. A label that meets itself only at a corner
    (a pinch once it stands alone) makes the canvas go through the 3x trace of
    :func:`_polygonize_cut` instead, which keeps such corners apart.
    ``pixels``: flat indices of ``traced``'s pixels and their labels, if known.
    """
    if pixels is None:
        at = np.flatnonzero(traced.view(bool))
        ids = labels.ravel()[at]
    else:
        at, ids = pixels
    table = np.zeros(max(int(labels.max()), int(touch.max())) + 1, bool)
    table[touch] = True
    chosen = table[ids]
    at, ids = at[chosen], ids[chosen]
    if at.size == 0:
        return traced, [], []
    traced = traced.copy()
    traced.ravel()[at] = 0
    rows, cols = np.divmod(at, labels.shape[1])
    # Crops in label order: crop_of[k] is the crop of pixel k.
    table[:] = False
    table[ids] = True
    crop_index = np.cumsum(table) - 1
    crop_of = crop_index[ids]
    top, left, bottom, right = _boxes(int(crop_index[-1]) + 1, crop_of, rows, cols)
    heights, widths = bottom - top + 1, right - left + 1
    canvas_rows, canvas_cols, spans = _shelves(heights, widths)
    canvas = np.zeros((canvas_rows, canvas_cols), np.int32)
    at_row, at_col = spans[:, 0], spans[:, 1]
    canvas[at_row[crop_of] + rows - top[crop_of], at_col[crop_of] + cols - left[crop_of]] = ids
    # Pixel corners of each crop (its box plus the right and bottom edges) -> its shift.
    crop_at = np.zeros((canvas_rows + 1, canvas_cols + 1), np.int64)
    for k, (r, c, h, w) in enumerate(
        zip(at_row.tolist(), at_col.tolist(), heights.tolist(), widths.tolist(), strict=True)
    ):
        crop_at[r : r + h + 1, c : c + w + 1] = k
    shifts = (crop_at, top - at_row + offset[0], left - at_col + offset[1])
    mask = (canvas > 0).view(np.uint8)
    a, b, c, d = mask[:-1, :-1], mask[:-1, 1:], mask[1:, :-1], mask[1:, 1:]
    if ((a & d & ~(b | c)) | (b & c & ~(a | d))).any():
        values, geoms = _polygonize_cut(mask, canvas, (0, 0), shifts)
    else:
        up = cv2.resize(mask, (2 * canvas_cols, 2 * canvas_rows), interpolation=cv2.INTER_NEAREST)
        values, geoms = _trace(np.asarray(up, dtype=np.uint8), canvas, (0, 0), 2, shifts)
    return traced, values, geoms


def _boxes(
    n: int, ids: NDArray[np.intp], rows: NDArray[np.intp], cols: NDArray[np.intp]
) -> tuple[NDArray[np.int64], ...]:
    """(top, left, bottom, right) of the pixels ``rows, cols`` of each of ``n`` ids ``0..n-1``."""
    big = np.iinfo(np.int64).max
    top, left = np.full(n, big, np.int64), np.full(n, big, np.int64)
    bottom, right = np.zeros(n, np.int64), np.zeros(n, np.int64)
    np.minimum.at(top, ids, rows)
    np.minimum.at(left, ids, cols)
    np.maximum.at(bottom, ids, rows)
    np.maximum.at(right, ids, cols)
    return top, left, bottom, right


def _shelves(
    heights: NDArray[np.int64], widths: NDArray[np.int64]
) -> tuple[int, int, NDArray[np.int64]]:
    """Pack boxes, in order, left to right in shelves, one empty pixel between any two.

    Returns the canvas rows and columns and each box's (row, column) in it.
    The shelf width is about the square root of the boxes' total area, so the
    canvas stays compact whatever mix of small and long buildings it holds.
    """
    area = int(((heights + 1) * (widths + 1)).sum())
    width = max(int(widths.max()), int(area**0.5) + 1)
    spans = np.zeros((len(heights), 2), np.int64)
    row = col = shelf = 0
    for k, (h, w) in enumerate(zip(heights.tolist(), widths.tolist(), strict=True)):
        if col and col + w > width:
            row, col, shelf = row + shelf + 1, 0, 0
        spans[k] = (row, col)
        col += w + 1
        shelf = max(shelf, h)
    return row + shelf, width, spans


def _polygonize_cut(
    mask: NDArray[np.uint8],
    labels: NDArray[np.int32],
    offset: tuple[int, int],
    shifts: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None = None,
) -> tuple[list[int], list[Polygon]]:
    """:func:`polygonize` of labels that touch each other, by tracing at 3x.

    At twice the size two touching labels are one blob to OpenCV. At three
    times, pixel ``c`` is sub-pixels ``3c .. 3c+2``, and sub-pixels are
    cleared so that no two labels are 8-neighbours any more: the last third
    (column ``3c + 2``) of a pixel whose right neighbour has another label,
    the last row of a pixel whose lower neighbour has, and one corner
    sub-pixel where two labels meet diagonally (the lower-right one of the
    upper-left pixel, or the lower-left one of the upper-right pixel; the
    same where one label meets itself only at a corner, which 4-connectivity
    makes two parts).
    An outline on sub-pixel ``x`` lies on pixel edge ``ceil(x / 3)``: ``3c``
    (a left edge, never cleared) on ``c``, ``3c + 2`` (an uncut right edge) and
    ``3c + 1`` (a cut one) on ``c + 1``; clearing only last rows and columns
    never moves an outline off its pixel edge, so both sides of a shared edge
    land on the same integer coordinates, as GDAL's polygonize puts them.

    Args:
        mask: building pixels to trace (uint8, no pinches).
        labels: instance labels of the block.
        offset: (row, col) of ``mask[0, 0]`` in the working grid.
        shifts: for packed crops, see :func:`_trace`.
    """
    h, w = mask.shape
    lab = np.where(mask > 0, labels, 0)

    def keep(a: NDArray[np.int32], b: NDArray[np.int32]) -> NDArray[np.uint8]:
        """1 unless ``a`` and ``b`` are two different labels."""
        return ((a == b) | (a == 0) | (b == 0)).view(np.uint8)

    up: NDArray[np.uint8] = np.asarray(
        cv2.resize(mask, (3 * w, 3 * h), interpolation=cv2.INTER_NEAREST), dtype=np.uint8
    )
    grid = up.reshape(h, 3, w, 3)
    tl, tr, bl, br = lab[:-1, :-1], lab[:-1, 1:], lab[1:, :-1], lab[1:, 1:]
    grid[:, :, :-1, 2] *= keep(lab[:, :-1], lab[:, 1:])[:, None, :]
    grid[:-1, 2, :, :] *= keep(lab[:-1, :], lab[1:, :])[:, :, None]
    grid[:-1, 2, :-1, 2] *= keep(tl, br)
    grid[:-1, 2, 1:, 0] *= keep(tr, bl)
    # One label meeting itself only at a corner is two parts under 4-connectivity.
    grid[:-1, 2, :-1, 2] *= ~((tl > 0) & (tl == br) & (tr != tl) & (bl != tl))
    grid[:-1, 2, 1:, 0] *= ~((tr > 0) & (tr == bl) & (tl != tr) & (br != tr))
    return _trace(up, labels, offset, 3, shifts)


def _without_straight_points(
    corners: NDArray[Any], point_order: NDArray[np.intp], ring_of_point: NDArray[np.int64]
) -> NDArray[np.intp]:
    """``point_order`` less the points on a straight run of their ring (pixel edges only).

    At 3x, the sub-pixel a label meeting itself at a corner loses (see
    :func:`_polygonize_cut`) makes OpenCV cut that corner diagonally; alone in
    its crop (no neighbour's pixels around it) the cut can end on a straight
    edge, one pixel from the corner: a point with its neighbours in one line,
    which the outline traced among its neighbours does not have.
    """
    ring = ring_of_point[point_order]
    here = corners[point_order]
    first = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    last = np.r_[first[1:], len(ring)] - 1
    before = np.roll(here, 1, axis=0)
    before[first] = here[last]
    after = np.roll(here, -1, axis=0)
    after[last] = here[first]
    straight = ((before[:, 0] == here[:, 0]) & (here[:, 0] == after[:, 0])) | (
        (before[:, 1] == here[:, 1]) & (here[:, 1] == after[:, 1])
    )
    return point_order[~straight]


def _trace(
    up: NDArray[np.uint8],
    labels: NDArray[np.int32],
    offset: tuple[int, int],
    scale: int,
    shifts: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None = None,
) -> tuple[list[int], list[Polygon]]:
    """Outlines of an upsampled mask as pixel-edge polygons (see :func:`polygonize`).

    ``shifts``: for crops packed in one canvas, (the crop each pixel corner of
    the canvas belongs to, each crop's row shift, each crop's column shift) that
    move its outlines back to their place.
    """
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return [], []
    n = len(contours)
    lengths = np.fromiter((len(k) for k in contours), np.int64, n)
    points = np.concatenate(contours).reshape(-1, 2)
    starts = np.cumsum(lengths) - lengths
    # Outlines: RETR_CCOMP gives each outer boundary parent -1 and its holes as children.
    parent = hierarchy[0][:, 3]
    outer = parent < 0
    polygon_of = np.where(outer, np.arange(n), parent)
    first = points[starts[outer]]
    values = labels[first[:, 1] // scale, first[:, 0] // scale]
    corners = (points + scale - 1) // scale
    previous = np.roll(corners, 1, axis=0)
    previous[starts] = corners[starts + lengths - 1]
    keep = np.any(corners != previous, axis=1)
    # Rings grouped by polygon, shell first, as shapely.polygons(indices=...) wants them.
    order = np.lexsort((~outer, polygon_of))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    ring_of_point = np.repeat(rank, lengths)
    point_order = np.argsort(ring_of_point, kind="stable")
    point_order = point_order[keep[point_order]]
    if scale == 3:
        point_order = _without_straight_points(corners, point_order, ring_of_point)
    xy = corners[point_order].astype(np.float64)
    xy += (offset[1], offset[0])
    if shifts is not None:
        # Packed crops (see _polygonize_touching): each moves back to its own place.
        crop_at, d_row, d_col = shifts
        crop = crop_at[corners[point_order, 1], corners[point_order, 0]]
        xy[:, 0] += d_col[crop]
        xy[:, 1] += d_row[crop]
    rings = shapely.linearrings(xy, indices=ring_of_point[point_order])
    polygons = shapely.polygons(rings, indices=np.cumsum(outer[order]) - 1)
    # Polygons come out ordered by their shell's contour index, as ``values`` is.
    return values.tolist(), list(polygons)


def _polygonize_gdal(
    labels: NDArray[np.int32], offset: tuple[int, int]
) -> tuple[list[int], list[Polygon]]:
    """:func:`polygonize` by GDAL (any mask); rings to polygons in one vectorized call."""
    values: list[int] = []
    coords: list[tuple[float, float]] = []
    ring_index: list[int] = []
    polygon_index: list[int] = []
    transform = Affine.translation(offset[1], offset[0])
    for geojson, value in rasterio.features.shapes(
        labels, mask=labels > 0, connectivity=4, transform=transform
    ):
        k = len(values)
        values.append(int(value))
        for ring in geojson["coordinates"]:
            ring_index.extend([len(polygon_index)] * len(ring))
            polygon_index.append(k)
            coords.extend(ring)
    if not values:
        return [], []
    rings = shapely.linearrings(np.asarray(coords, dtype=np.float64), indices=ring_index)
    polygons = shapely.polygons(rings, indices=polygon_index)
    return values, list(polygons)
