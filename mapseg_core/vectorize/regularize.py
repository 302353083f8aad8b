"""Pure outline cleaning: GSD-aware simplification, then the right-angled outline a roof has.

A pixel outline of a roof is a staircase (17x the vertices of a drawn
footprint on a 1 m tile), and a predicted roof is a blob: simplified, it
still has 20-50 vertices where an analyst draws 4 to 8. :func:`clean_outline`
works in a **local metric frame** (the polygon's coordinates minus its
centroid, times ``metres_per_unit`` along x and y), so tolerances mean the
same on the ground in a UTM raster and in a raster in degrees:

1. *Simplify* (Douglas-Peucker, topology kept) with a tolerance in metres;
   the caller sets it from the model's GSD (a pixel staircase is at most one
   pixel off the edge it samples). This is the outline of a building that is
   not right-angled, and of every building with ``regularize=False``.
2. *Axes*: the minimum rotated rectangle's, and the simplified edges' own
   (their length-weighted circular mean modulo 90 degrees) when they differ:
   an L whose long wing is diagonal to its bounding box. Any orientation
   works; the building is never assumed to be aligned with the raster.
3. *Fit* (:mod:`~mapseg_core.vectorize.rectilinear`): the right-angled
   polygon along those axes that best trades IoU with the mask for corners:
   a rectangle, then wings and notches only where they add more IoU than
   their corners cost (``corner_penalty`` each), walls placed to a third of
   the tolerance.
4. *Check*: a building whose fit has an IoU with the mask below ``min_iou``
   (a round hut) keeps its simplified outline.

Holes smaller than ``min_hole_area`` (noise in the mask, not courtyards) are
dropped; larger ones are fitted with the building. The result is always a
valid polygon (its largest part).

The two constants below were chosen on the bundled model's validation chips
(docs/bundled-model.md): a larger corner penalty draws fewer wings, a smaller
one follows the blob.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon

from mapseg_core.vectorize.rectilinear import fit_rectilinear

#: IoU a corner of a right-angled outline must pay for: an L (6 corners) is drawn instead
#: of a rectangle when its wing adds 2 x this to the IoU with the mask.
CORNER_PENALTY = 0.02

#: Smallest IoU of the right-angled outline with the mask: below it the building is not
#: right-angled (a round hut) and keeps its simplified outline.
MIN_FIT_IOU = 0.6


def _to_local(polygon: Polygon, metres_per_unit: tuple[float, float]) -> tuple[Polygon, tuple]:
    """The polygon in metres around its centroid, and what undoes it."""
    c = polygon.centroid
    x0, y0 = c.x, c.y
    mx, my = metres_per_unit

    def fwd(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack([(xy[:, 0] - x0) * mx, (xy[:, 1] - y0) * my])

    return shapely.transform(polygon, fwd), (x0, y0, mx, my)


def _to_world(polygon: Polygon, frame: tuple) -> Polygon:
    x0, y0, mx, my = frame

    def back(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack([xy[:, 0] / mx + x0, xy[:, 1] / my + y0])

    return shapely.transform(polygon, back)


def _edges(ring: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Angles (radians, modulo pi) and lengths of a closed ring's edges."""
    d = np.diff(ring, axis=0)
    return np.mod(np.arctan2(d[:, 1], d[:, 0]), math.pi), np.hypot(d[:, 0], d[:, 1])


def dominant_direction(ring: NDArray[np.float64], angle_tolerance: float = 15.0) -> float:
    """Direction (radians, in [0, pi/2)) most of the ring's length is near, modulo 90 degrees."""
    angles, lengths = _edges(ring)
    keep = lengths > 0
    angles, lengths = np.mod(angles[keep], math.pi / 2), lengths[keep]
    if len(angles) == 0:
        return 0.0
    tol = math.radians(angle_tolerance)
    # Distance between directions modulo 90 degrees, for every candidate against every edge.
    diff = np.abs(angles[:, None] - angles[None, :])
    diff = np.minimum(diff, math.pi / 2 - diff)
    support = ((diff <= tol) * lengths[None, :]).sum(axis=1)
    best = angles[int(np.argmax(support))]
    near = np.minimum(np.abs(angles - best), math.pi / 2 - np.abs(angles - best)) <= tol
    # Circular mean of 4 x angle (period 90 degrees), weighted by length.
    z = np.sum(lengths[near] * np.exp(4j * angles[near]))
    return float(np.mod(np.angle(z) / 4, math.pi / 2))


def envelope_direction(polygon: Polygon) -> float:
    """Direction (radians, in [0, pi/2)) of the polygon's minimum rotated rectangle.

    A pixel staircase biases its own edges towards the grid (a 30 degree roof
    edge simplifies to segments at 26 degrees), while the smallest enclosing
    rectangle of the same outline is set by its extreme points and lands
    within a fraction of a degree of the roof's axes.
    """
    ring = np.asarray(shapely.oriented_envelope(polygon).exterior.coords, dtype=np.float64)
    if len(ring) < 3:
        return 0.0
    d = ring[1] - ring[0]
    return float(np.mod(math.atan2(d[1], d[0]), math.pi / 2))


def _largest(geom: shapely.Geometry) -> Polygon | None:
    if geom.geom_type == "Polygon" and geom.is_valid:
        return geom if geom.area > 0 else None
    parts = [p for p in shapely.get_parts(shapely.make_valid(geom)) if p.geom_type == "Polygon"]
    parts = [p for p in parts if not p.is_empty and p.area > 0]
    return max(parts, key=lambda p: p.area) if parts else None


def _simplified(local: Polygon, tolerance: float) -> Polygon:
    """Douglas-Peucker at ``tolerance``, topology kept, the largest part."""
    if tolerance <= 0:
        return local
    return _largest(shapely.simplify(local, tolerance, preserve_topology=True)) or local


def _axes(local: Polygon, simplified: Callable[[], Polygon]) -> Iterator[float]:
    """The building's candidate axes, likeliest first, each computed only when asked for.

    The enclosing rectangle's, then the simplified edges' own when they differ
    (an L whose long wing is diagonal to its bounding box):
    :func:`~mapseg_core.vectorize.rectilinear.fit_rectilinear` asks for the
    second only when the first one's rectangle fits poorly.
    """
    first = envelope_direction(local)
    yield first
    ring = np.asarray(simplified().exterior.coords)
    by_edges = dominant_direction(ring, 15.0)
    if abs(math.remainder(by_edges - first, math.pi / 2)) > math.radians(2.0):
        yield by_edges


def clean_outline(
    polygon: Polygon,
    tolerance: float,
    *,
    regularize: bool = True,
    metres_per_unit: tuple[float, float] = (1.0, 1.0),
    corner_penalty: float = CORNER_PENALTY,
    min_iou: float = MIN_FIT_IOU,
    min_hole_area: float = 0.0,
) -> Polygon:
    """The outline an analyst would draw for a pixel-exact ``polygon`` (see the module docstring).

    Args:
        polygon: a building outline in CRS units (holes allowed).
        tolerance: simplification tolerance in metres (0: no simplification);
            about one and a half pixels of the mask's resolution, which also sets
            the fitting grid (a third of it) and the thinnest wing or notch
            drawn (twice it).
        regularize: fit a right-angled outline when the building has one.
        metres_per_unit: metres per CRS unit along x and y at the building
            (1 for metre CRSs; the ground scale for degrees).
        corner_penalty: IoU each corner of the right-angled outline must pay
            for (:mod:`~mapseg_core.vectorize.rectilinear`).
        min_iou: smallest IoU of the right-angled outline with the mask for the
            building to count as right-angled (else it keeps the simplified one).
        min_hole_area: holes smaller than this (square metres) are dropped.

    Returns:
        A valid polygon in CRS units; the input (made valid) when it is empty.
    """
    if polygon.is_empty or polygon.geom_type != "Polygon":
        return polygon
    local, frame = _to_local(polygon, metres_per_unit)
    local = _largest(local) or local
    holes = [h for h in local.interiors if Polygon(h).area >= min_hole_area]
    if len(holes) != len(local.interiors):
        local = Polygon(local.exterior, holes)
    # Simplified once, when first needed: for the second axis, or as the outline.
    simplified = functools.cache(lambda: _simplified(local, tolerance))
    if regularize and tolerance > 0:
        best = fit_rectilinear(
            local,
            _axes(local, simplified),
            tolerance / 3,
            penalty=corner_penalty,
            min_side=2 * tolerance,
            min_hole_area=min_hole_area,
        )
        if best is not None and best.iou >= min_iou:
            return _to_world(_largest(best.polygon) or simplified(), frame)
    return _to_world(simplified(), frame)
