"""A chip's buildings -> COCO instances, rasterized by the pixel-centre rule.

Pure functions (no I/O) behind ``mapseg chips``: a footprint in the chip's
pixel coordinates, or a chip of a building mask, becomes COCO
``segmentation`` / ``area`` / ``bbox`` records whose pixels are exactly those
GDAL's rasterizer (and the tiling engine's masks) would burn; the rule and the
encodings are described in :mod:`mapseg_core.data.chips`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray
from pycocotools import mask as mask_utils
from shapely.geometry import box

from mapseg_core.vectorize.components import components

Segmentation = Literal["polygon", "rle"]


def encode_instance(
    pixels: NDArray[np.bool_],
    offset: tuple[int, int],
    shape: tuple[int, int],
    segmentation: Segmentation = "polygon",
    min_pixels: int = 1,
) -> dict[str, Any] | None:
    """One building's pixels -> COCO ``segmentation``, ``area`` and ``bbox``.

    Args:
        pixels: the building's pixels in a window of the chip.
        offset: (row, col) of that window in the chip.
        shape: the chip's (height, width).
        segmentation: ``"polygon"`` (pixel outline; RLE when the building has a hole)
            or ``"rle"``.
        min_pixels: fewer pixels than this give ``None``.

    Returns:
        ``{"segmentation", "area", "bbox"}`` or ``None``. ``area`` is the exact
        pixel count and ``bbox`` the tight ``[x, y, w, h]`` of the pixels.
    """
    count = int(pixels.sum())
    if count < min_pixels:
        return None
    row0, col0 = offset
    rows = np.nonzero(pixels.any(axis=1))[0]
    cols = np.nonzero(pixels.any(axis=0))[0]
    bbox = [
        float(col0 + cols[0]),
        float(row0 + rows[0]),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    ]
    segment: Any = None
    if segmentation == "polygon":
        rings: list[list[float]] = []
        for geojson, _ in rasterio.features.shapes(
            pixels.astype(np.uint8),
            mask=pixels,
            connectivity=4,
            transform=Affine.translation(col0, row0),
        ):
            if len(geojson["coordinates"]) > 1:  # a hole: COCO polygons cannot say so
                rings = []
                break
            ring = np.asarray(geojson["coordinates"][0], dtype=np.float64)[:-1]
            rings.append([float(v) for v in ring.ravel()])
        if rings:
            segment = rings
    if segment is None:
        full = np.zeros(shape, dtype=np.uint8, order="F")
        full[row0 : row0 + pixels.shape[0], col0 : col0 + pixels.shape[1]] = pixels
        rle = mask_utils.encode(full)
        segment = {"size": [int(shape[0]), int(shape[1])], "counts": rle["counts"].decode("ascii")}
    return {"segmentation": segment, "area": float(count), "bbox": bbox}


def polygon_instances(
    polygons: Sequence[Any],
    shape: tuple[int, int],
    segmentation: Segmentation = "polygon",
    min_pixels: int = 1,
) -> list[dict[str, Any]]:
    """COCO instances of footprints given in the chip's pixel coordinates.

    Each footprint is clipped to the chip and rasterized by the pixel-centre
    rule over its own bounding window (cheap for small buildings on big
    chips). Footprints covering fewer than ``min_pixels`` pixel centres
    (slivers cut by the chip border, tiny sheds at a coarse GSD) are left out.
    """
    height, width = shape
    frame = box(0, 0, width, height)
    out: list[dict[str, Any]] = []
    for polygon in polygons:
        clipped = shapely.intersection(polygon, frame)
        if clipped.is_empty:
            continue
        minx, miny, maxx, maxy = clipped.bounds
        c0, r0 = max(0, math.floor(minx)), max(0, math.floor(miny))
        c1, r1 = min(width, math.ceil(maxx)), min(height, math.ceil(maxy))
        if c1 <= c0 or r1 <= r0:
            continue
        burned = rasterio.features.rasterize(
            [(clipped, 1)],
            out_shape=(r1 - r0, c1 - c0),
            transform=Affine.translation(c0, r0),
            dtype="uint8",
        ).astype(bool)
        instance = encode_instance(burned, (r0, c0), shape, segmentation, min_pixels)
        if instance is not None:
            instance["footprint"] = footprint_record(clipped)
            out.append(instance)
    return out


def footprint_record(geometry: Any) -> dict[str, Any]:
    """A clipped footprint as GeoJSON-like ``MultiPolygon`` coordinates in chip pixels.

    The ``segmentation`` of a vector label is its pixel outline (so masks
    match the labels bit for bit), a staircase with many more vertices than
    the footprint that was drawn. Polygon-quality metrics (N-ratio, C-IoU,
    PoLiS, MTA) compare outlines with the drawn ones, so each annotation also
    keeps the footprint's own vertices, clipped to the chip, rounded to 1/1000
    pixel. Only polygon parts are kept (a clip can leave slivers as lines).
    """
    parts = [g for g in shapely.get_parts(geometry) if g.geom_type == "Polygon" and g.area > 0]
    return {
        "type": "MultiPolygon",
        "coordinates": [
            [
                [[round(x, 3), round(y, 3)] for x, y in ring.coords]
                for ring in (part.exterior, *part.interiors)
            ]
            for part in parts
        ],
    }


def mask_instances(
    mask: NDArray[np.bool_],
    segmentation: Segmentation = "polygon",
    min_pixels: int = 1,
) -> list[dict[str, Any]]:
    """COCO instances of a chip's building mask: one per 4-connected component.

    4-connectivity is the rule of the vectorizer
    (:mod:`mapseg_core.vectorize.polygons`): two buildings touching at a corner
    stay two buildings.
    """
    labels, boxes = components(mask)
    out: list[dict[str, Any]] = []
    for k, window in enumerate(boxes, start=1):
        pixels = labels[window] == k
        instance = encode_instance(
            pixels, (window[0].start, window[1].start), mask.shape, segmentation, min_pixels
        )
        if instance is not None:
            out.append(instance)
    return out


def nodata_fraction(invalid: NDArray[np.bool_], covered: NDArray[np.bool_] | None) -> float:
    """Share of the chip that is nodata, pixels covered by a labelled building excepted."""
    if invalid.size == 0:
        return 0.0
    if covered is not None:
        invalid = invalid & ~covered
    return float(invalid.sum()) / invalid.size
