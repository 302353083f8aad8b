"""Pure polishing: a finished building -> world polygons (min area, simplify, regularize), valid.

Lengths and areas are on the ground (metres), never in degrees: see
:class:`PolishOptions` and :func:`~mapseg_core.vectorize.regularize.clean_outline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from shapely.geometry import Polygon

from mapseg_core.vectorize.polygons import Building
from mapseg_core.vectorize.regularize import clean_outline


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
    # One vertex sequence per shape: a building merged across block borders comes with its
    # ring starting elsewhere and seam points on straight edges, and simplification
    # depends on both; without them the outline is the same for any block layout.
    geom = to_world(shapely.normalize(shapely.simplify(building.geometry, 0.0)), transform)
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
