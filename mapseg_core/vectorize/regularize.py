"""Pure orthogonal regularization: square the corners of building outlines.

Pixel outlines of a roof that is not aligned with the raster are staircases;
simplification alone turns them into slanted, slightly wobbly edges. Most
buildings are made of right angles, so :func:`regularize` finds the
building's dominant direction (the longest side of its minimum rotated
rectangle), rotates the outline to align it with the axes, snaps each edge to
horizontal or vertical (whichever is closer), rebuilds the corners as the
intersections of consecutive snapped edges, and rotates back. A result that
is invalid or whose area differs by more than ``max_area_change`` from the
input is rejected and the input is returned unchanged: regularization must
never turn a plausible outline into a wrong one.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely import affinity
from shapely.geometry import Polygon


def dominant_angle(polygon: Polygon) -> float:
    """Angle in degrees of the longest side of the minimum rotated rectangle."""
    rect = shapely.minimum_rotated_rectangle(polygon)
    coords = np.asarray(rect.exterior.coords) if rect.geom_type == "Polygon" else None
    if coords is None or len(coords) < 4:
        return 0.0
    sides = np.diff(coords[:3], axis=0)
    longest = sides[int(np.argmax(np.hypot(sides[:, 0], sides[:, 1])))]
    return math.degrees(math.atan2(longest[1], longest[0]))


def orthogonalize_ring(coords: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Snap an axis-aligned-ish closed ring to horizontal and vertical edges.

    Each edge becomes horizontal (at the mean y of its ends) or vertical (at
    the mean x); consecutive edges of the same orientation are merged, and
    each corner is the crossing of two consecutive edges. Returns ``None``
    when fewer than four edges survive.
    """
    pts = coords[:-1]
    n = len(pts)
    if n < 4:
        return None
    edges: list[tuple[str, float, float]] = []  # (orientation, position, length)
    for k in range(n):
        p, q = pts[k], pts[(k + 1) % n]
        dx, dy = q[0] - p[0], q[1] - p[1]
        length = math.hypot(dx, dy)
        if length == 0:
            continue
        if abs(dx) >= abs(dy):
            edges.append(("h", (p[1] + q[1]) / 2, length))
        else:
            edges.append(("v", (p[0] + q[0]) / 2, length))
    merged: list[tuple[str, float, float]] = []
    for kind, pos, length in edges:
        if merged and merged[-1][0] == kind:
            k0, p0, l0 = merged[-1]
            merged[-1] = (kind, (p0 * l0 + pos * length) / (l0 + length), l0 + length)
        else:
            merged.append((kind, pos, length))
    if len(merged) > 1 and merged[0][0] == merged[-1][0]:
        k0, p0, l0 = merged.pop()
        k1, p1, l1 = merged[0]
        merged[0] = (k1, (p0 * l0 + p1 * l1) / (l0 + l1), l0 + l1)
    if len(merged) < 4 or len(merged) % 2:
        return None
    corners = []
    for k in range(len(merged)):
        a, b = merged[k], merged[(k + 1) % len(merged)]
        corners.append((b[1], a[1]) if a[0] == "h" else (a[1], b[1]))
    corners.append(corners[0])
    return np.asarray(corners, dtype=np.float64)


def regularize(polygon: Polygon, max_area_change: float = 0.2) -> Polygon:
    """Square the corners of ``polygon`` (holes included), or return it unchanged.

    Args:
        polygon: a building outline in a projected or geographic CRS.
        max_area_change: largest accepted relative area change.
    """
    if polygon.is_empty or polygon.geom_type != "Polygon":
        return polygon
    angle = dominant_angle(polygon)
    origin = polygon.centroid
    aligned = affinity.rotate(polygon, -angle, origin=origin)
    shell = orthogonalize_ring(np.asarray(aligned.exterior.coords))
    if shell is None:
        return polygon
    holes = []
    for ring in aligned.interiors:
        hole = orthogonalize_ring(np.asarray(ring.coords))
        if hole is not None:
            holes.append(hole)
    squared = Polygon(shell, holes)
    if not squared.is_valid or squared.area == 0:
        return polygon
    if abs(squared.area - aligned.area) > max_area_change * aligned.area:
        return polygon
    return affinity.rotate(squared, angle, origin=origin)
