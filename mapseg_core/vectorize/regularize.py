"""Pure outline cleaning: GSD-aware simplification, then right angles where a building has them.

A pixel outline of a roof is a staircase (17x the vertices of a drawn
footprint on a 1 m tile). :func:`clean_outline` turns it into what an analyst
would draw, in five steps, all in a **local metric frame** (the polygon's
coordinates minus its centroid, times ``metres_per_unit`` along x and y), so
tolerances mean the same on the ground in a UTM raster and in a raster in
degrees:

1. *Simplify* (Douglas-Peucker, topology kept) with a tolerance in metres;
   the caller sets it from the model's GSD (a pixel staircase is at most one
   pixel off the edge it samples), so the steps go and the corners stay.
2. *Dominant direction*: the axes of the outline's minimum rotated
   rectangle, unless clearly more of the simplified edges' length follows
   the orientation (modulo 90 degrees) they agree on most (their
   length-weighted circular mean). Any orientation works: the building is
   never assumed to be aligned with the raster.
3. *Snap*: each simplified edge within ``angle_tolerance`` of the dominant
   direction or its perpendicular becomes exactly parallel to it, placed at
   the mean offset of the raw outline's vertices it replaces (a staircase's
   inner and outer corners alternate, so their mean lies on the roof edge).
   Consecutive parallel edges closer than the tolerance merge; farther apart,
   a perpendicular step joins them. Other edges (a bay window at 45 degrees)
   keep their direction.
4. *Corners* are the intersections of consecutive edge lines (the original
   vertex where two lines are nearly parallel).
5. *Check*: a building whose snapped share of the outline is below
   ``min_rectilinear``, or whose result is not valid, or whose IoU with the
   raw outline drops below ``min_iou``, gets the simplified outline instead:
   regularization must never turn a plausible outline into a wrong one.

Holes are cleaned with the building's direction; holes smaller than
``min_hole_area`` (noise in the mask, not courtyards) are dropped. The result
is always a valid polygon (``shapely.make_valid``; its largest part).
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon


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


def _support(ring: NDArray[np.float64], theta: float, angle_tolerance: float = 10.0) -> float:
    """Length of the ring's edges within ``angle_tolerance`` degrees of ``theta`` modulo 90."""
    angles, lengths = _edges(ring)
    diff = np.abs(np.mod(angles - theta, math.pi / 2))
    diff = np.minimum(diff, math.pi / 2 - diff)
    return float(lengths[diff <= math.radians(angle_tolerance)].sum())


def _cross(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _regularize_ring(
    simple: NDArray[np.float64],
    raw: NDArray[np.float64],
    theta: float,
    tolerance: float,
    angle_tolerance: float,
    corner_cut: float,
) -> tuple[NDArray[np.float64] | None, float]:
    """Snapped ring of a simplified ring (both closed), and the share of its length snapped."""
    pts = simple[:-1]
    n = len(pts)
    if n < 3:
        return None, 0.0
    raw_pts = raw[:-1]
    # Simplified vertices are raw vertices (Douglas-Peucker keeps a subset): find each one.
    index = [int(np.argmin(np.hypot(*(raw_pts - p).T))) for p in pts]
    tol = math.radians(angle_tolerance)
    axes = (
        np.array([math.cos(theta), math.sin(theta)]),
        np.array([-math.sin(theta), math.cos(theta)]),
    )
    lines: list[_Line] = []  # each edge as a line (see _Line)
    snapped_length = total = 0.0
    for k in range(n):
        p, q = pts[k], pts[(k + 1) % n]
        d = q - p
        length = float(np.hypot(*d))
        if length == 0:
            continue
        total += length
        rel = math.atan2(d[1], d[0]) - theta
        rel = math.fmod(rel, math.pi / 2)
        rel = min(abs(rel), math.pi / 2 - abs(rel))
        i0, i1 = index[k], index[(k + 1) % n]
        span = (
            raw_pts[i0 : i1 + 1] if i0 <= i1 else np.concatenate([raw_pts[i0:], raw_pts[: i1 + 1]])
        )
        if rel <= tol:
            along = [abs(float(np.dot(d, a))) for a in axes]
            kind = 0 if along[0] >= along[1] else 1
            u = axes[kind] if np.dot(d, axes[kind]) >= 0 else -axes[kind]
            normal = np.array([-u[1], u[0]])
            offset = float(np.mean(span @ normal)) if len(span) > 2 else float(np.dot(p, normal))
            snapped_length += length
        elif length < corner_cut:
            continue  # a rounded corner cut diagonally: the corner is where its neighbours meet
        else:
            kind, u = -1, d / length
            normal = np.array([-u[1], u[0]])
            offset = float(np.dot(p, normal))
        # Merge with the previous line when parallel and close, else step between them.
        if lines and kind >= 0 and lines[-1][0] == kind and float(np.dot(lines[-1][1], u)) > 0:
            pk, pu, po, pl, _ = lines[-1]
            if abs(po - offset) < tolerance:
                lines[-1] = (kind, pu, (po * pl + offset * length) / (pl + length), pl + length, q)
                continue
            step = np.array([-pu[1], pu[0]]) * (1.0 if offset > po else -1.0)
            lines.append((1 - kind, step, float(np.dot(p, np.array([-step[1], step[0]]))), 0.0, p))
        lines.append((kind, u, offset, length, q))
    _join_ends(lines, tolerance)
    if len(lines) < 3:
        return None, 0.0
    return _corners(lines, tolerance), snapped_length / total if total else 0.0


#: An edge as a line: (kind 0/1 = along the first/second axis, -1 = free; unit direction;
#: offset along the normal; length; end vertex).
_Line = tuple[int, NDArray[np.float64], float, float, NDArray[np.float64]]


def _join_ends(lines: list[_Line], tolerance: float) -> None:
    """Merge the ring's last line into its first when they are parallel and close (in place)."""
    if len(lines) > 1 and lines[0][0] >= 0 and lines[0][0] == lines[-1][0]:
        first, last = lines[0], lines[-1]
        if float(np.dot(first[1], last[1])) > 0 and abs(first[2] - last[2]) < tolerance:
            w = first[3] + last[3]
            offset = (first[2] * first[3] + last[2] * last[3]) / w if w else first[2]
            lines[0] = (first[0], first[1], offset, w, first[4])
            lines.pop()


def _corners(lines: list[_Line], tolerance: float) -> NDArray[np.float64]:
    """The closed ring through the intersections of consecutive lines."""
    corners = []
    for k in range(len(lines)):
        a, b = lines[k], lines[(k + 1) % len(lines)]
        det = _cross(a[1], b[1])
        na = np.array([-a[1][1], a[1][0]])
        nb = np.array([-b[1][1], b[1][0]])
        if abs(det) < math.sin(math.radians(10)):
            corners.append(a[4])  # nearly parallel: keep the shared vertex
            continue
        # Solve na . x = a.offset, nb . x = b.offset (Cramer's rule).
        den = na[0] * nb[1] - na[1] * nb[0]
        x = np.array([(a[2] * nb[1] - na[1] * b[2]) / den, (na[0] * b[2] - a[2] * nb[0]) / den])
        if np.hypot(*(x - a[4])) > 4 * tolerance + 0.5 * max(a[3], b[3]):
            x = a[4]
        corners.append(x)
    corners.append(corners[0])
    return np.asarray(corners, dtype=np.float64)


def _largest(geom: shapely.Geometry) -> Polygon | None:
    if geom.geom_type == "Polygon" and geom.is_valid:
        return geom if geom.area > 0 else None
    parts = [p for p in shapely.get_parts(shapely.make_valid(geom)) if p.geom_type == "Polygon"]
    parts = [p for p in parts if not p.is_empty and p.area > 0]
    return max(parts, key=lambda p: p.area) if parts else None


def _iou(a: Polygon, b: Polygon) -> float:
    inter = shapely.area(shapely.intersection(a, b))
    union = a.area + b.area - inter
    return float(inter / union) if union > 0 else 0.0


def clean_outline(
    polygon: Polygon,
    tolerance: float,
    *,
    regularize: bool = True,
    metres_per_unit: tuple[float, float] = (1.0, 1.0),
    angle_tolerance: float = 30.0,
    min_iou: float = 0.75,
    min_rectilinear: float = 0.0,
    min_hole_area: float = 0.0,
    corner_cut: float = 3.0,
) -> Polygon:
    """The outline an analyst would draw for a pixel-exact ``polygon`` (see the module docstring).

    Args:
        polygon: a building outline in CRS units (holes allowed).
        tolerance: simplification tolerance in metres (0: no simplification).
        regularize: square the corners of rectilinear buildings.
        metres_per_unit: metres per CRS unit along x and y at the building
            (1 for metre CRSs; the ground scale for degrees).
        angle_tolerance: degrees within which an edge is snapped to the
            dominant direction or its perpendicular.
        min_iou: smallest accepted IoU of the regularized outline with the raw one.
        min_rectilinear: smallest share of the simplified outline's length
            near the two directions for a building to count as rectilinear.
        min_hole_area: holes smaller than this (square metres) are dropped.
        corner_cut: edges off the two directions shorter than this many
            tolerances are rounded corners; they are dropped and the corner
            rebuilt from its neighbours.

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
    simple = shapely.simplify(local, tolerance, preserve_topology=True) if tolerance > 0 else local
    simple = _largest(simple) or local
    out = simple
    if regularize and tolerance > 0:
        shell_raw = np.asarray(local.exterior.coords, dtype=np.float64)
        shell_simple = np.asarray(simple.exterior.coords, dtype=np.float64)
        # The enclosing rectangle's axes unless the edges clearly follow other ones
        # (an L whose long wing is diagonal to its bounding box).
        theta = envelope_direction(local)
        by_edges = dominant_direction(shell_simple, min(angle_tolerance, 15.0))
        if _support(shell_simple, by_edges) > 1.25 * _support(shell_simple, theta):
            theta = by_edges
        shell, share = _regularize_ring(
            shell_simple, shell_raw, theta, tolerance, angle_tolerance, corner_cut * tolerance
        )
        if shell is not None and share >= min_rectilinear:
            rings = []
            for ring in simple.interiors:
                hole_simple = np.asarray(ring.coords, dtype=np.float64)
                hole, _ = _regularize_ring(
                    hole_simple,
                    hole_simple,
                    theta,
                    tolerance,
                    angle_tolerance,
                    corner_cut * tolerance,
                )
                rings.append(hole if hole is not None else hole_simple)
            squared = _largest(Polygon(shell, rings))
            if squared is not None and _iou(squared, local) >= min_iou:
                out = squared
    return _to_world(out, frame)
