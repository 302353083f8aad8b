"""Pure vectorization: a block's building mask -> polygons, merged exactly across blocks.

Everything here works in **global pixel coordinates** (x = column, y = row of
the working raster, pixel corners at integers). Integers are exact in
float64, so the edge a building shares across a block border has the same
coordinates on both sides and a union of the two pieces is exact, with no
sliver from two blocks computing ``origin + k * res`` differently. The
raster's ``Affine`` is applied once, to finished buildings
(:func:`to_world`), so a pixel corner has one world coordinate whatever the
block layout.

Buildings are 4-connected components of the mask (pixels sharing an edge, as
``rasterio.features.shapes(connectivity=4)`` and
``cv2.connectedComponents(connectivity=4)`` see them), or the labels of
:mod:`~mapseg_core.vectorize.separate`. Within a block each building is one
polygon, holes kept (:mod:`~mapseg_core.vectorize.trace`); one that reaches
an internal block border is a :class:`Piece`, joined to its other parts by
:class:`~mapseg_core.vectorize.merge.BorderMerger`; finished buildings are
cleaned and put in world coordinates by :mod:`~mapseg_core.vectorize.polish`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon

from mapseg_core.vectorize.trace import polygonize

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
    touching: NDArray[np.integer] | None = None,
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
        touching: with ``instances``, labels that may share an edge with
            another (any superset, e.g. from
            :func:`~mapseg_core.vectorize.separate.separate_touching`); None:
            found by scanning the block.
    """
    mask8 = np.ascontiguousarray(mask, dtype=np.uint8)
    labels, count, ring = _block_labels(mask8, instances)
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
    edge_slots, neighbours = _border_slots(labels, ring, block, offset, n_blocks)
    complete: list[Building] = []
    pieces: list[Piece] = []
    values, geoms = polygonize(
        mask8,
        labels,
        (row0, col0),
        touching=ring is not None,
        pixels=(fg, fg_labels),
        candidates=touching,
    )
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


def _block_labels(
    mask8: NDArray[np.uint8], instances: NDArray[np.integer] | None
) -> tuple[NDArray[np.int32], int, NDArray[np.integer] | None]:
    """The block's building labels (0 background), their count, and the instance ring if any."""
    if instances is None:
        count, found = cv2.connectedComponents(mask8, connectivity=4, ltype=cv2.CV_32S)
        return np.asarray(found, dtype=np.int32), count - 1, None  # label 0 is the background
    ring = np.asarray(instances)
    if ring.shape != (mask8.shape[0] + 2, mask8.shape[1] + 2):
        raise ValueError(f"instances {ring.shape} must be the mask {mask8.shape} plus 2")
    # Local instance labels are the buildings' names inside the block: a label's
    # pixels are one building (see separate.py), even where they only connect
    # through the halo (then the building reaches a border and is a piece).
    labels = np.multiply(ring[1:-1, 1:-1], mask8, dtype=np.int32)  # 0 off the mask
    return labels, int(labels.max()) if labels.size else 0, ring


def _border_slots(
    labels: NDArray[np.int32],
    ring: NDArray[np.integer] | None,
    block: tuple[int, int],
    offset: tuple[int, int],
    n_blocks: tuple[int, int],
) -> tuple[dict[int, list[Slot]], dict[int, set[tuple[int, int]]]]:
    """Per label: its pixels on each internal block side (slots) and the blocks across them.

    With separation (``ring``), a border pixel is a slot only where the pixel
    facing it across the border has the same label.
    """
    row0, col0 = offset
    i, j = block
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
    return edge_slots, neighbours


def _by_label(values: list[int], geoms: list[Polygon]) -> tuple[list[int], list[Polygon]]:
    """One geometry per label: the parts of a label that meet outside the block, as one."""
    parts: dict[int, list[Polygon]] = {}
    for lab, geom in zip(values, geoms, strict=True):
        parts.setdefault(lab, []).append(geom)
    out_values = list(parts)
    out_geoms = [g[0] if len(g) == 1 else shapely.multipolygons(g) for g in parts.values()]
    return out_values, out_geoms
