"""Pure vectorization: a block's building mask -> polygons, merged exactly across blocks.

Everything here works in **global pixel coordinates** (x = column, y = row of
the working raster, pixel corners at integers). Integers are exact in
float64, so the edge a building shares across a block border has the same
coordinates on both sides and a union of the two pieces is exact, with no
sliver from two blocks computing ``origin + k * res`` differently. The
raster's ``Affine`` is applied once, to finished buildings
(:func:`to_world`), so a pixel corner has one world coordinate whatever the
block layout.

Merge rule. Buildings are 4-connected components of the mask (pixels sharing
an edge, as ``rasterio.features.shapes(connectivity=4)`` and
``cv2.connectedComponents(connectivity=4)`` see them). Within a block each component is one
polygon, holes kept. A component that reaches an *internal* block border is a
:class:`Piece`; two pieces in neighbouring blocks belong to the same building
exactly when a pixel of one and a pixel of the other face each other across
the border (they share a pixel edge). :class:`BorderMerger` records those
border pixels by position, so matching is an exact integer lookup that works
whatever order the blocks complete in, and a building is emitted as soon as
every block next to its border pieces is done: memory grows with the number
of buildings on unfinished block borders, not with the raster size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
import rasterio.features
import scipy.ndimage
import shapely
from affine import Affine
from numpy.typing import NDArray
from shapely.geometry import Polygon

from mapseg_core.vectorize.regularize import clean_outline

BorderKey = tuple[str, int, int]  # ("h" | "v", block row, block col) of the border's first block
Slot = tuple[BorderKey, int, int]  # (border, position along it, 0 = before / 1 = after)


@dataclass(frozen=True)
class Building:
    """One finished building in global pixel coordinates."""

    # Polygon (holes kept), pixel corners at integer (column, row).
    geometry: Polygon
    # Number of mask pixels of the building.
    pixels: int
    # Sum of the probabilities of those pixels (score = prob_sum / pixels).
    prob_sum: float


@dataclass(frozen=True)
class Piece:
    """Part of a building that reaches an internal block border."""

    # Polygon of the part inside its block, global pixel coordinates.
    geometry: Polygon
    # Block (row, col) the part comes from.
    block: tuple[int, int]
    # Mask pixels of the part.
    pixels: int
    # Sum of their probabilities.
    prob_sum: float
    # Border pixels: (border, global position along the border, side) for each edge pixel.
    slots: tuple[Slot, ...]
    # Neighbouring blocks across the borders the part touches.
    neighbours: frozenset[tuple[int, int]]


@dataclass(frozen=True)
class BlockPolygons:
    """What vectorizing one block gives: whole buildings and border pieces."""

    # Block (row, col).
    block: tuple[int, int]
    # Buildings that touch no internal border: final as they are.
    complete: tuple[Building, ...]
    # Parts that reach an internal border and wait for their neighbours.
    pieces: tuple[Piece, ...]


def vectorize_block(
    mask: NDArray[np.bool_],
    prob: NDArray[np.floating],
    block: tuple[int, int],
    offset: tuple[int, int],
    n_blocks: tuple[int, int],
    instances: NDArray[np.integer] | None = None,
) -> BlockPolygons:
    """Polygons of one block's mask, split into complete buildings and border pieces.

    Args:
        mask: ``(rows, cols)`` True where a pixel is a building.
        prob: probabilities of the same pixels (for the ``score`` attribute).
        block: block (row, col) in the block grid.
        offset: (row, col) of the block's first pixel in the working grid.
        n_blocks: blocks down and across; a side on the raster edge is no border.
        instances: separated buildings (see :mod:`mapseg_core.vectorize.separate`):
            ``(rows + 2, cols + 2)`` local instance labels of the block and the
            one-pixel ring around it (0 off the mask and outside the raster).
            Each label is then one building (its pixels may meet only in the
            halo: it then reaches a border and waits as a piece), and a border
            pixel is linked to the pixel facing it only when their labels are
            equal. None: buildings are the mask's 4-connected components, as
            without separation.
    """
    mask8 = np.ascontiguousarray(mask, dtype=np.uint8)
    if instances is None:
        count, found = cv2.connectedComponents(mask8, connectivity=4, ltype=cv2.CV_32S)
        labels: NDArray[np.int32] = np.asarray(found, dtype=np.int32)
        count -= 1  # label 0 is the background
        ring = None
    else:
        ring = np.asarray(instances)
        if ring.shape != (mask.shape[0] + 2, mask.shape[1] + 2):
            raise ValueError(f"instances {ring.shape} must be the mask {mask.shape} plus 2")
        # Local instance labels are the buildings' names inside the block: a label's
        # pixels are one building (see separate.py), even where they only connect
        # through the halo (then the building reaches a border and is a piece).
        labels = np.ascontiguousarray(np.where(mask8 > 0, ring[1:-1, 1:-1], 0), dtype=np.int32)
        count = int(labels.max()) if labels.size else 0
    if count == 0:
        return BlockPolygons(block, (), ())
    # Per-label pixel counts and probability sums over the building pixels only.
    fg = np.flatnonzero(mask8)
    fg_labels = labels.ravel()[fg]
    pixels = np.bincount(fg_labels, minlength=count + 1)
    sums = np.bincount(
        fg_labels,
        weights=np.asarray(prob).ravel()[fg].astype(np.float64),
        minlength=count + 1,
    )
    row0, col0 = offset
    i, j = block

    # Border pixels per label for each internal side: (border, side) and positions.
    edge_slots: dict[int, list[Slot]] = {}
    neighbours: dict[int, set[tuple[int, int]]] = {}
    edges = {
        "top": (labels[0, :], ("h", i - 1, j), 1, (i - 1, j), col0, i > 0),
        "bottom": (labels[-1, :], ("h", i, j), 0, (i + 1, j), col0, i + 1 < n_blocks[0]),
        "left": (labels[:, 0], ("v", i, j - 1), 1, (i, j - 1), row0, j > 0),
        "right": (labels[:, -1], ("v", i, j), 0, (i, j + 1), row0, j + 1 < n_blocks[1]),
    }
    facing = {}
    if ring is not None:
        inner = ring[1:-1, 1:-1]
        facing = {
            "top": (inner[0, :], ring[0, 1:-1]),
            "bottom": (inner[-1, :], ring[-1, 1:-1]),
            "left": (inner[:, 0], ring[1:-1, 0]),
            "right": (inner[:, -1], ring[1:-1, -1]),
        }
    for name, (line, border, side, neighbour, start, internal) in edges.items():
        if not internal:
            continue
        if name in facing:
            here, there = facing[name]
            hit = np.nonzero((line > 0) & (here == there))[0]
        else:
            hit = np.nonzero(line)[0]
        for pos, lab in zip((hit + start).tolist(), line[hit].tolist(), strict=True):
            edge_slots.setdefault(lab, []).append((border, pos, side))
            neighbours.setdefault(lab, set()).add(neighbour)

    complete: list[Building] = []
    pieces: list[Piece] = []
    values, geoms = polygonize(mask8, labels, (row0, col0), touching=ring is not None)
    if ring is not None:
        values, geoms = _by_label(values, geoms)
    for lab, geom in zip(values, geoms, strict=True):
        if lab in edge_slots:
            pieces.append(
                Piece(
                    geometry=geom,
                    block=block,
                    pixels=int(pixels[lab]),
                    prob_sum=float(sums[lab]),
                    slots=tuple(edge_slots[lab]),
                    neighbours=frozenset(neighbours[lab]),
                )
            )
        else:
            complete.append(Building(geom, int(pixels[lab]), float(sums[lab])))
    return BlockPolygons(block, tuple(complete), tuple(pieces))


def _by_label(values: list[int], geoms: list[Polygon]) -> tuple[list[int], list[Polygon]]:
    """One geometry per label: the parts of a label that meet outside the block, as one."""
    parts: dict[int, list[Polygon]] = {}
    for lab, geom in zip(values, geoms, strict=True):
        parts.setdefault(lab, []).append(geom)
    out_values = list(parts)
    out_geoms = [g[0] if len(g) == 1 else shapely.multipolygons(g) for g in parts.values()]
    return out_values, out_geoms


def polygonize(
    mask: NDArray[np.uint8],
    labels: NDArray[np.int32],
    offset: tuple[int, int] = (0, 0),
    touching: bool = False,
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
    labels that share an edge are traced at 3x with a gap between them
    (:func:`_polygonize_cut`), which keeps each label's own outline.
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
    in_touching: NDArray[np.bool_] | None = None
    if touching:
        # Separated buildings that share an edge: traced apart at 3x (see _polygonize_cut).
        right = (labels[:, :-1] != labels[:, 1:]) & (labels[:, :-1] > 0) & (labels[:, 1:] > 0)
        below = (labels[:-1, :] != labels[1:, :]) & (labels[:-1, :] > 0) & (labels[1:, :] > 0)
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
            in_touching = np.isin(labels, touch)
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
    if in_touching is not None:
        group_mask = (in_touching & (traced > 0)).astype(np.uint8)
        traced = np.where(group_mask > 0, 0, traced).astype(np.uint8)
        _, groups = cv2.connectedComponents(group_mask, connectivity=4, ltype=cv2.CV_32S)
        # Each group of touching buildings is cut out and the crops are stacked, one
        # empty row apart, in one canvas: the 3x trace costs nine times the pixels, so it
        # sees only the groups, in a single OpenCV pass.
        boxes = scipy.ndimage.find_objects(groups)
        if boxes:
            width = max(cols.stop - cols.start for _, cols in boxes)
            heights = np.array([rows.stop - rows.start for rows, _ in boxes], np.int64)
            starts = np.concatenate([[0], np.cumsum(heights + 1)[:-1]]).astype(np.int64)
            canvas = np.zeros((int(starts[-1] + heights[-1]), width), np.int32)
            for g, ((rows, cols), top) in enumerate(zip(boxes, starts.tolist(), strict=True), 1):
                own = groups[rows, cols] == g
                canvas[top : top + own.shape[0], : own.shape[1]] = np.where(
                    own, labels[rows, cols], 0
                )
            d_row = np.array([r.start for r, _ in boxes], np.int64) - starts + offset[0]
            d_col = np.array([c.start for _, c in boxes], np.int64) + offset[1]
            v, gs = _polygonize_cut(
                (canvas > 0).view(np.uint8), canvas, (0, 0), (starts, d_row, d_col)
            )
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


def _polygonize_cut(
    mask: NDArray[np.uint8],
    labels: NDArray[np.int32],
    offset: tuple[int, int],
    bands: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None = None,
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
        bands: for stacked crops, (first canvas row, row shift, column shift) of each.
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
    return _trace(up, labels, offset, 3, bands)


def _trace(
    up: NDArray[np.uint8],
    labels: NDArray[np.int32],
    offset: tuple[int, int],
    scale: int,
    bands: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None = None,
) -> tuple[list[int], list[Polygon]]:
    """Outlines of an upsampled mask as pixel-edge polygons (see :func:`polygonize`)."""
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
    xy = corners[point_order].astype(np.float64)
    xy += (offset[1], offset[0])
    if bands is not None:
        # Stacked crops (see polygonize): each row band moves back to its own place.
        starts, d_row, d_col = bands
        band = np.searchsorted(starts, xy[:, 1], side="right") - 1
        xy[:, 0] += d_col[band]
        xy[:, 1] += d_row[band]
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


@dataclass
class _Group:
    keys: list[int] = field(default_factory=list)
    pieces: list[Piece] = field(default_factory=list)


class BorderMerger:
    """Merge border pieces of blocks that arrive in any order into whole buildings.

    ``add`` takes one block's :class:`BlockPolygons` and returns the buildings
    that are now final: the block's complete ones, plus every merged group
    whose pieces have no unfinished neighbour block left. ``finish`` returns
    whatever is still pending (only non-empty if some blocks never came).
    """

    def __init__(self) -> None:
        self._done: set[tuple[int, int]] = set()
        self._slots: dict[Slot, int] = {}
        self._parent: dict[int, int] = {}
        self._groups: dict[int, _Group] = {}
        self._by_block: dict[tuple[int, int], set[int]] = {}
        self._next = 0

    @property
    def pending(self) -> int:
        """Border pieces held in memory, waiting for a neighbour block."""
        return sum(len(g.pieces) for g in self._groups.values())

    def _find(self, k: int) -> int:
        root = k
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[k] != root:
            self._parent[k], k = root, self._parent[k]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        if len(self._groups[ra].pieces) < len(self._groups[rb].pieces):
            ra, rb = rb, ra
        self._parent[rb] = ra
        absorbed = self._groups.pop(rb)
        self._groups[ra].keys.extend(absorbed.keys)
        self._groups[ra].pieces.extend(absorbed.pieces)

    def add(self, result: BlockPolygons) -> list[Building]:
        """Register one block's result; return the buildings finished by it."""
        self._done.add(result.block)
        finished = list(result.complete)
        for piece in result.pieces:
            key = self._next
            self._next += 1
            self._parent[key] = key
            self._groups[key] = _Group([key], [piece])
            self._by_block.setdefault(piece.block, set()).add(key)
            for border, pos, side in piece.slots:
                self._slots[(border, pos, side)] = key
                other = self._slots.get((border, pos, 1 - side))
                if other is not None:
                    self._union(key, other)
        candidates = {self._find(k) for k in self._by_block.get(result.block, ())}
        i, j = result.block
        for nb in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
            candidates.update(self._find(k) for k in self._by_block.get(nb, ()))
        for root in candidates:
            group = self._groups.get(root)
            if group is None:
                continue
            if all(n in self._done for p in group.pieces for n in p.neighbours):
                finished.append(self._close(root))
        return finished

    def finish(self) -> list[Building]:
        """Close every pending group (blocks that never arrived count as empty)."""
        return [self._close(root) for root in list(self._groups)]

    def _close(self, root: int) -> Building:
        group = self._groups.pop(root)
        for key, piece in zip(group.keys, group.pieces, strict=True):
            for slot in piece.slots:
                self._slots.pop(slot, None)
            keys = self._by_block[piece.block]
            keys.discard(key)
            if not keys:
                del self._by_block[piece.block]
        for key in group.keys:
            del self._parent[key]
        geoms = [p.geometry for p in group.pieces]
        merged = shapely.union_all(geoms) if len(geoms) > 1 else geoms[0]
        merged = shapely.simplify(merged, 0.0)  # drop the vertices the cut left on the border
        return Building(
            geometry=merged,
            pixels=sum(p.pixels for p in group.pieces),
            prob_sum=sum(p.prob_sum for p in group.pieces),
        )


def merge_blocks(results: Iterable[BlockPolygons]) -> list[Building]:
    """All buildings of a set of block results (any order), for tests and batch use."""
    merger = BorderMerger()
    out: list[Building] = []
    for result in results:
        out.extend(merger.add(result))
    out.extend(merger.finish())
    return out


def to_world(geometry: Polygon, transform: Affine) -> Polygon:
    """Apply a raster's ``Affine`` to a polygon in pixel coordinates."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f

    def apply(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geometry, apply)


#: Simplification tolerance of ``regularize`` without ``simplify``, pixels: a staircase is
#: up to one pixel diagonal (1.41 px) off the edge it samples.
REGULARIZE_TOLERANCE_PX = 1.5


@dataclass(frozen=True)
class PolishOptions:
    """Post-processing of finished buildings (lengths and areas in metres on the ground)."""

    # Buildings smaller than this many square metres are dropped (holes smaller too).
    min_area_m2: float = 0.0
    # Douglas-Peucker tolerance in metres (0 without regularize: pixel-exact outlines).
    simplify: float = 0.0
    # Square the corners of rectilinear buildings (see regularize.py); with simplify 0
    # the tolerance is REGULARIZE_TOLERANCE_PX pixels, so the flag works on its own.
    regularize: bool = False
    # Metres per CRS unit along x and y (1 for metre CRSs; the ground scale for degrees).
    metres_per_unit: tuple[float, float] = (1.0, 1.0)

    @property
    def m2_per_unit2(self) -> float:
        """Square metres per square CRS unit."""
        return self.metres_per_unit[0] * self.metres_per_unit[1]


def polish(
    building: Building, transform: Affine, pixel_area_m2: float, options: PolishOptions
) -> tuple[list[Polygon], float]:
    """World polygons of a building after min-area, simplify, regularize; always valid.

    Returns ``([], area)`` when the building is below ``min_area_m2``; the area
    test uses the exact pixel count, so it does not depend on simplification,
    and cleaned parts below it are dropped too.
    Cleaning (:func:`~mapseg_core.vectorize.regularize.clean_outline`) works in
    metres around the building, never in degrees.
    """
    area = building.pixels * pixel_area_m2
    if area < options.min_area_m2:
        return [], area
    geom = to_world(building.geometry, transform)
    if options.simplify > 0 or options.regularize:
        tolerance = options.simplify or REGULARIZE_TOLERANCE_PX * math.sqrt(pixel_area_m2)
        if options.regularize:
            # A pixel staircase is only removed by a tolerance above one pixel: below it
            # the simplified edges follow the steps and squaring would square the steps.
            tolerance = max(tolerance, REGULARIZE_TOLERANCE_PX * math.sqrt(pixel_area_m2))
        geom = clean_outline(
            geom,
            tolerance,
            regularize=options.regularize,
            metres_per_unit=options.metres_per_unit,
            min_hole_area=options.min_area_m2,
        )
    parts = [g for g in shapely.get_parts(shapely.make_valid(geom)) if g.geom_type == "Polygon"]
    # A part the cleaning shrank (or split off) below the minimum is not written either:
    # every polygon written has at least min_area_m2 of ground, as its area_m2 says.
    parts = [
        g for g in parts if g.area > 0 and g.area * options.m2_per_unit2 >= options.min_area_m2
    ]
    return parts, area


def pixel_area(transform: Affine) -> float:
    """Area of one pixel in squared CRS units."""
    return float(abs(transform.a * transform.e - transform.b * transform.d))


def mean_score(building: Building) -> float:
    """Mean probability over the building's pixels."""
    return building.prob_sum / building.pixels if building.pixels else math.nan
