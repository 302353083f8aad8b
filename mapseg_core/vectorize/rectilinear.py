"""Pure rectilinear fitting: a mask outline -> the few-cornered outline an analyst would draw.

A roof predicted by a segmentation model is a blob: its pixel outline has
20-50 vertices even after simplification, where the footprint an analyst
draws has 4 to 8 (a rectangle, an L, a T). Snapping the blob's edges to the
building's axes keeps every wobble of the blob as a step. This module asks
another question: *which right-angled polygon with few corners covers the
mask best?* It scores a candidate ``C`` against the mask ``M`` by

    J(C) = IoU(C, M) - penalty x corners(C)

and keeps the best candidate it finds, in the building's own frame (its two
axes, found by the caller) on a grid of ``cell``-sized squares:

1. *Rectangle*: the axis-aligned rectangle of largest IoU with the mask,
   by coordinate descent over its four sides from the mask's bounding box
   (each side is set to its best position with the others fixed, using an
   integral image, until nothing moves).
2. *Edits*: the parts where the rectangle and the mask disagree (a wing it
   misses, a notch it covers) are connected regions; in each (the largest
   few, and only those big enough to pay for two corners) the rectangle that
   raises the outline's IoU most once added or cut is found the same way.
   The edit that raises ``J`` most is applied, and the search repeats until
   no edit raises it: an L costs two corners more than a rectangle, so the wing must
   add at least ``2 x penalty`` of IoU to be drawn. Edits thinner than
   ``min_side`` (a wobble, not a wall) are not tried, the outline stays one
   piece, and a hole is only cut when it is at least ``min_hole_area``.
3. *Walls*: each straight wall of the result moves to the position where
   the IoU is largest (the edits placed each wing's walls for the outline
   of their moment), as long as no corner is added.

The grid is only the search space: with ``cell`` half a model pixel the
walls are placed to half a pixel, finer than the mask they come from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import cv2
import numpy as np
import shapely
import shapely.affinity
from numpy.typing import NDArray
from shapely.geometry import Polygon

from mapseg_core.vectorize.trace import polygonize

#: Largest fitting grid side, cells: a huge building is fitted on a coarser grid.
MAX_GRID = 384

#: Disagreeing regions (largest first) that propose a wing or notch at each step.
MAX_REGIONS = 3

#: IoU of a best rectangle above which its axis is taken without trying the others.
GOOD_RECTANGLE = 0.8


@dataclass(frozen=True)
class RectilinearFit:
    """The outline :func:`fit_rectilinear` chose."""

    # The right-angled outline, in the input polygon's coordinates.
    polygon: Polygon
    # Its IoU with the input polygon, measured on the fitting grid.
    iou: float
    # Its corners (holes' included).
    corners: int
    # Its score J = iou - penalty x corners.
    score: float


def fit_rectilinear(
    polygon: Polygon,
    axes: Iterable[float],
    cell: float,
    *,
    penalty: float,
    min_side: float,
    min_hole_area: float = 0.0,
    max_edits: int = 6,
) -> RectilinearFit | None:
    """The right-angled outline that best trades IoU for corners.

    Args:
        polygon: a building outline in metric coordinates (holes allowed),
            best centred near the origin (the caller's local frame).
        axes: candidate directions of the building's walls, radians, likeliest
            first; the one whose best rectangle fits the polygon best is used
            (the first whose rectangle reaches ``GOOD_RECTANGLE`` IoU).
        cell: fitting grid step, same units as ``polygon`` (walls are placed to
            this precision); raised for buildings over ``MAX_GRID`` cells.
        penalty: IoU a corner must pay for (see the module docstring).
        min_side: thinnest wing or notch the outline may have.
        min_hole_area: smallest hole (courtyard) the outline may have, in
            squared units.
        max_edits: most wings, notches and holes added to the rectangle.

    Returns:
        The chosen outline, or None for an empty or degenerate polygon.
    """
    if polygon.is_empty or polygon.area <= 0:
        return None
    fitted = []
    rings = _rings(polygon)
    for theta in axes:
        g = _grid(rings, theta, cell)
        if g.mask.any():
            fitted.append((g, *best_rectangle(g.mask)))
            if fitted[-1][2] >= GOOD_RECTANGLE:  # the axis is right: no need to try another
                break
    if not fitted:
        return None
    grid, (r0, r1, c0, c1), _ = max(fitted, key=lambda f: f[2])
    mask = grid.mask
    outline = np.zeros_like(mask)
    outline[r0:r1, c0:c1] = True
    side = max(1, int(round(min_side / grid.cell)))
    hole = min_hole_area / (grid.cell * grid.cell)
    edited = _edit(mask, outline, penalty, side, hole, max_edits)
    if edited is not outline:  # a rectangle's walls are already where its IoU is largest
        outline = _refine_walls(mask, edited, penalty)
    iou, corners = _iou(outline, mask), count_corners(outline)
    if corners == 4:  # a rectangle (the usual case): its corners, no tracing
        r0, r1, c0, c1 = _bounds(outline)
        traced = Polygon([(c0, r0), (c1, r0), (c1, r1), (c0, r1)])
    else:
        traced = polygonize(outline.view(np.uint8), outline.astype(np.int32))[1][0]
    return RectilinearFit(grid.to_input(traced), iou, corners, iou - penalty * corners)


@dataclass(frozen=True)
class _Grid:
    """A polygon rasterized in its building's frame (rotated by ``-theta``)."""

    cos: float
    sin: float
    # Frame coordinates of the grid's corner (col 0, row 0), and its step.
    x0: float
    y0: float
    cell: float
    # Cells whose centre is inside the polygon.
    mask: NDArray[np.bool_]

    def to_input(self, polygon: Polygon) -> Polygon:
        """Grid corner coordinates -> frame (``x0 + col x cell``) -> input (rotate by theta)."""
        c, s, x0, y0, k = self.cos, self.sin, self.x0, self.y0, self.cell
        return shapely.affinity.affine_transform(
            polygon, [k * c, -k * s, k * s, k * c, x0 * c - y0 * s, x0 * s + y0 * c]
        )


def _rings(polygon: Polygon) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """The polygon's ring coordinates, one array, and which vertices start an edge.

    Vertex ``i`` starts an edge to vertex ``i + 1`` unless it closes its ring.
    """
    coords, ring = shapely.get_coordinates(shapely.get_rings(polygon), return_index=True)
    return coords, ring[:-1] == ring[1:]


def _grid(rings: tuple[NDArray[np.float64], NDArray[np.bool_]], theta: float, cell: float) -> _Grid:
    cos, sin = math.cos(theta), math.sin(theta)
    coords, edges = rings
    x, y = coords.T
    # The polygon in the building's frame: shapely.affinity.affine_transform's arithmetic
    # (cos, sin, -sin, cos), without building the polygon.
    frame = np.stack([cos * x + sin * y + 0.0, -sin * x + cos * y + 0.0]).T
    minx, miny = frame.min(axis=0)
    maxx, maxy = frame.max(axis=0)
    cell = max(cell, (maxx - minx) / MAX_GRID, (maxy - miny) / MAX_GRID)
    x0, y0 = minx - cell, miny - cell
    shape = (int(math.ceil((maxy - y0) / cell)) + 1, int(math.ceil((maxx - x0) / cell)) + 1)
    return _Grid(cos, sin, x0, y0, cell, _fill(frame, edges, x0, y0, cell, shape))


def best_rectangle(mask: NDArray[np.bool_]) -> tuple[tuple[int, int, int, int], float]:
    """Rows ``r0:r1`` and columns ``c0:c1`` of the rectangle of largest IoU with ``mask``.

    Coordinate descent from the mask's bounding box (see :func:`_descend`).
    Returns the rectangle and its IoU.
    """
    total = int(np.count_nonzero(mask))
    return _descend(_integral(mask), _integral(~mask), 0, total, _bounds(mask), mask.shape)


def _descend(
    gain: NDArray[np.int32],
    cost: NDArray[np.int32],
    inter: int,
    union: int,
    rect: tuple[int, int, int, int],
    limits: tuple[int, ...],
) -> tuple[tuple[int, int, int, int], float]:
    """The rectangle maximizing ``(inter + G(R)) / (union + C(R))``, and that value.

    ``gain`` and ``cost`` are integral images: ``G(R)`` is what the rectangle
    adds to the outline's intersection with the mask and ``C(R)`` what it adds
    to their union (both negative for a cut). Each side in turn moves to its
    best position within ``limits`` (``(rows, cols)`` or ``(r0, r1, c0, c1)``),
    all positions scored at once, until no side moves: a few passes.
    """
    lo_r, hi_r, lo_c, hi_c = (0, limits[0], 0, limits[1]) if len(limits) == 2 else limits
    r = list(rect)

    def score(r0: Any, r1: Any, c0: Any, c1: Any) -> NDArray[np.float64]:
        g = gain[r1, c1] - gain[r0, c1] - gain[r1, c0] + gain[r0, c0]
        c = cost[r1, c1] - cost[r0, c1] - cost[r1, c0] + cost[r0, c0]
        return np.asarray((inter + g) / np.maximum(union + c, 1), dtype=np.float64)

    best = float(score(*r))
    # Sides in turn, at most 8 passes, until a whole pass moves nothing. A side's best
    # place depends on the other three only, so once the three after a moved side stay,
    # that side would stay too: the pass is over early.
    still = 0
    for turn in range(32):
        side = turn % 4
        r0, r1, c0, c1 = r
        if side == 0:
            cand = np.arange(lo_r, r1)
            values = score(cand, r1, c0, c1)
        elif side == 1:
            cand = np.arange(r0 + 1, hi_r + 1)
            values = score(r0, cand, c0, c1)
        elif side == 2:
            cand = np.arange(lo_c, c1)
            values = score(r0, r1, cand, c1)
        else:
            cand = np.arange(c0 + 1, hi_c + 1)
            values = score(r0, r1, c0, cand)
        k = int(np.argmax(values))
        if values[k] > best + 1e-12:
            best, r[side], still = float(values[k]), int(cand[k]), 0
        else:
            still += 1
        if (still == 3 and turn >= 3) or still == 4:
            break
    return (r[0], r[1], r[2], r[3]), best


def _bounds(mask: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """Rows ``r0:r1`` and columns ``c0:c1`` of the mask's bounding box."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def count_corners(cells: NDArray[np.bool_]) -> int:
    """Corners of the outline(s) of a set of grid cells, holes' included.

    Every 2x2 window of cells holding one or three filled cells is a corner,
    one holding a diagonal pair is two.
    """
    p = np.zeros((cells.shape[0] + 2, cells.shape[1] + 2), dtype=np.uint8)
    p[1:-1, 1:-1] = cells
    a, b, c, d = p[:-1, :-1], p[:-1, 1:], p[1:, :-1], p[1:, 1:]
    s = a + b + c + d
    return int(np.count_nonzero(s & 1) + 2 * np.count_nonzero((s == 2) & (a == d)))


def _edit(
    mask: NDArray[np.bool_],
    outline: NDArray[np.bool_],
    penalty: float,
    side: int,
    hole: float,
    max_edits: int,
) -> NDArray[np.bool_]:
    """Greedy wings and notches (see the module docstring): the outline after them.

    Each region where outline and mask disagree proposes the rectangle that
    maximizes the whole outline's IoU once added (a wing) or cut (a notch),
    found by :func:`_descend` inside the region's bounding box, so a one-cell
    sliver along a wall does not bend the wing it is attached to.
    """
    inter = int(np.count_nonzero(outline & mask))
    union = int(np.count_nonzero(outline | mask))
    score = inter / union - penalty * count_corners(outline)
    for _ in range(max_edits):
        best: tuple[float, NDArray[np.bool_], int, int] | None = None
        for add in (True, False):
            # A wing or notch costs two corners or more: a region too small to pay for them
            # even if it were all gain is not tried. Adding x mask cells raises the IoU by
            # at most x / union, cutting x others by inter x / (union (union - x)).
            region = (mask & ~outline) if add else (outline & ~mask)
            floor = 2 * penalty * union * (1 if add else union / (inter + 2 * penalty * union))
            candidates = _regions(region, side, floor)
            if not candidates:
                continue
            if add:  # added cells: mask cells join the intersection, the others the union
                gain, cost = _integral(region), _integral(~mask & ~outline)
            else:  # cut cells: mask cells leave the intersection, the others the union
                gain, cost = -_integral(outline & mask), -_integral(region)
            for bounds in candidates:
                rect, _ = _descend(gain, cost, inter, union, bounds, bounds)
                r0, r1, c0, c1 = rect
                if r1 - r0 < side or c1 - c0 < side or (add and not _touches(outline, rect)):
                    continue
                trial = outline.copy()
                trial[r0:r1, c0:c1] = add
                if not add and not _one_piece_or_hole(trial, rect, hole):
                    continue
                t_inter = int(np.count_nonzero(trial & mask))
                t_union = int(np.count_nonzero(trial | mask))
                trial_score = t_inter / t_union - penalty * count_corners(trial)
                if trial_score > score + 1e-9 and (best is None or trial_score > best[0]):
                    best = (trial_score, trial, t_inter, t_union)
        if best is None:
            break
        score, outline, inter, union = best
    return outline


def _refine_walls(
    mask: NDArray[np.bool_], outline: NDArray[np.bool_], penalty: float, passes: int = 3
) -> NDArray[np.bool_]:
    """Each wall moved to where the outline's IoU with the mask is largest (in place).

    A wall is a straight run of the outline's boundary. Moving it by ``d``
    cells adds (outwards) or cuts (inwards) a ``d``-cell strip along it; all
    ``d`` are scored at once from integral images, and the best move is kept
    if it raises ``IoU - penalty x corners`` (corners counted around the strip
    only). Greedy edits place a wing's walls for the outline of the moment;
    this settles them once the whole shape is known. Horizontal walls are the
    vertical walls of the transposed grids (views, so moves land in ``outline``).
    """
    mask_sums = _integral(mask)
    inter = int(np.count_nonzero(outline & mask))
    union = int(np.count_nonzero(outline | mask))
    for _ in range(passes):
        moved = False
        for m, o, sums in ((mask, outline, mask_sums), (mask.T, outline.T, mask_sums.T)):
            for wall in _vertical_walls(o):
                step = _best_move(m, o, sums, wall, inter, union, penalty)
                if step is not None:
                    inter, union = step
                    moved = True
        if not moved:
            break
    return outline


def _vertical_walls(outline: NDArray[np.bool_]) -> list[tuple[int, int, int, bool]]:
    """Vertical walls ``(r0, r1, col, inside_left)``: rows ``r0:r1`` at column boundary ``col``."""
    p = np.pad(outline, ((0, 0), (1, 1)))
    left, right = p[:, :-1], p[:, 1:]
    walls = []
    for col in np.flatnonzero((left != right).any(axis=0)):
        side = left[:, col].astype(np.int8) - right[:, col].astype(np.int8)  # 1: inside left
        edges = np.flatnonzero(np.diff(np.concatenate([[0], side, [0]])))
        walls += [
            (int(a), int(b), int(col), bool(side[a] > 0)) for a, b in pairwise(edges) if side[a]
        ]
    return [w for w in walls if w[1] > w[0]]


def _best_move(
    mask: NDArray[np.bool_],
    outline: NDArray[np.bool_],
    mask_sums: NDArray[np.int32],
    wall: tuple[int, int, int, bool],
    inter: int,
    union: int,
    penalty: float,
) -> tuple[int, int] | None:
    """Apply the best move of one wall if it raises the score: the new (inter, union)."""
    r0, r1, col, inside_left = wall
    width = outline.shape[1]
    # Outwards adds the strip beyond the wall, inwards cuts the strip behind it.
    out_dir = 1 if inside_left else -1
    best: tuple[float, int, int, int, int] | None = None
    for grow in (True, False):
        direction = out_dir if grow else -out_dir
        start = col if direction > 0 else col - 1  # first cell column the strip takes
        limit = width - start if direction > 0 else start + 1
        if limit <= 0:
            continue
        cols = start + direction * np.arange(limit)
        band = outline[r0:r1, cols]
        ok = (~band).all(axis=0) if grow else band.all(axis=0)
        depth = int(np.argmin(ok)) if not ok.all() else int(ok.size)
        if depth == 0:
            continue
        steps = np.arange(1, depth + 1)
        if direction > 0:
            lo, hi = np.full(depth, start), start + steps
        else:
            lo, hi = start + 1 - steps, np.full(depth, start + 1)
        in_mask = mask_sums[r1, hi] - mask_sums[r0, hi] - mask_sums[r1, lo] + mask_sums[r0, lo]
        area = (r1 - r0) * (hi - lo)
        sign = 1 if grow else -1
        values = (inter + sign * in_mask) / np.maximum(union + sign * (area - in_mask), 1)
        k = int(np.argmax(values))
        if best is None or values[k] > best[0]:
            best = (float(values[k]), int(lo[k]), int(hi[k]), sign, int(in_mask[k]))
    if best is None or best[0] <= inter / union + 1e-12:
        return None
    value, low, high, sign, gained = best
    top, left = max(r0 - 1, 0), max(low - 1, 0)
    window = (slice(top, r1 + 1), slice(left, high + 1))
    before = count_corners(outline[window])
    trial = outline[window].copy()
    trial[r0 - top : r1 - top, low - left : high - left] = sign > 0
    added = count_corners(trial) - before
    if value - penalty * added <= inter / union + 1e-12:
        return None
    outline[window] = trial
    strip = (r1 - r0) * (high - low)
    return inter + sign * gained, union + sign * (strip - gained)


def _regions(region: NDArray[np.bool_], side: int, floor: float) -> list[tuple[int, int, int, int]]:
    """Bounding boxes ``(r0, r1, c0, c1)`` of the largest connected parts of ``region``.

    Parts thinner than ``side`` or smaller than ``floor`` cells are left out;
    of the rest, the ``MAX_REGIONS`` largest.
    """
    count, _, stats, _ = cv2.connectedComponentsWithStats(region.view(np.uint8), connectivity=4)
    if count <= 1:
        return []
    stats = stats[1:]
    keep = (stats[:, 2] >= side) & (stats[:, 3] >= side) & (stats[:, 4] >= max(floor, side * side))
    stats = stats[keep]
    stats = stats[np.argsort(-stats[:, 4])[:MAX_REGIONS]]
    return [(int(r), int(r + h), int(c), int(c + w)) for c, r, w, h, _ in stats]


def _touches(outline: NDArray[np.bool_], rect: tuple[int, int, int, int]) -> bool:
    """True when the rectangle shares an edge with the outline (adding it keeps one piece)."""
    r0, r1, c0, c1 = rect
    height, width = outline.shape
    ring = outline[max(r0 - 1, 0) : min(r1 + 1, height), max(c0 - 1, 0) : min(c1 + 1, width)]
    inner = ring.copy()
    # Corner cells only touch diagonally: they do not join the rectangle to the outline.
    for r in (0, -1):
        for c in (0, -1):
            inner[r, c] = False
    return bool(inner.any())


def _one_piece_or_hole(
    trial: NDArray[np.bool_], rect: tuple[int, int, int, int], hole: float
) -> bool:
    """A cut keeps the outline one piece, and a hole it opens is big enough."""
    count, _ = cv2.connectedComponents(trial.view(np.uint8), connectivity=4)
    if count != 2:
        return False
    r0, r1, c0, c1 = rect
    height, width = trial.shape
    ring = trial[max(r0 - 1, 0) : min(r1 + 1, height), max(c0 - 1, 0) : min(c1 + 1, width)]
    opens_hole = bool(ring[0].all() and ring[-1].all() and ring[:, 0].all() and ring[:, -1].all())
    return not opens_hole or (r1 - r0) * (c1 - c0) >= hole


def _rasterize(
    polygon: Polygon, x0: float, y0: float, cell: float, shape: tuple[int, int]
) -> NDArray[np.bool_]:
    """Cells of the grid (origin ``x0, y0``, step ``cell``) whose centre is in ``polygon``.

    A scanline fill (even-odd, so holes stay empty) of every row's centre line,
    exact to the pixel-centre rule GDAL's rasterize follows, at a fraction of
    its per-call cost on these small grids.
    """
    return _fill(*_rings(polygon), x0, y0, cell, shape)


def _fill(
    coords: NDArray[np.float64],
    edges: NDArray[np.bool_],
    x0: float,
    y0: float,
    cell: float,
    shape: tuple[int, int],
) -> NDArray[np.bool_]:
    """:func:`_rasterize` of rings given as :func:`_rings` gives them."""
    height, width = shape
    grid = (coords - (x0, y0)) / cell
    start, end = grid[:-1][edges], grid[1:][edges]
    # Rows whose centre (row + 0.5) each edge crosses, half-open at the top: lo <= row < hi.
    low = np.ceil(np.minimum(start[:, 1], end[:, 1]) - 0.5).astype(np.int64)
    high = np.ceil(np.maximum(start[:, 1], end[:, 1]) - 0.5).astype(np.int64)
    low, high = np.clip(low, 0, height), np.clip(high, 0, height)
    counts = high - low
    edge = np.repeat(np.arange(len(start)), counts)
    row = low[edge] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    y = row + 0.5
    x = start[edge, 0] + (y - start[edge, 1]) * (end[edge, 0] - start[edge, 0]) / (
        end[edge, 1] - start[edge, 1]
    )
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # Crossings pair up along each row: cells whose centre lies in [x_in, x_out) are inside.
    col = np.clip(np.ceil(x - 0.5).astype(np.int64), 0, width)
    flat = row * (width + 1) + col
    size = height * (width + 1)
    diff = np.bincount(flat[0::2], minlength=size) - np.bincount(flat[1::2], minlength=size)
    return np.cumsum(diff.reshape(height, width + 1)[:, :width], axis=1) > 0


def _integral(mask: NDArray[np.bool_]) -> NDArray[np.int32]:
    """Summed-area table of a boolean grid, ``(rows + 1, cols + 1)`` (OpenCV's)."""
    return np.asarray(cv2.integral(mask.view(np.uint8)), dtype=np.int32)


def _iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0
