"""One path from probabilities to the polygons a user gets, for every door.

``mapseg tile-infer`` (block by block, :mod:`mapseg_core.inference.engine`),
``mapseg evaluate`` (one image at a time) and the Python API all turn
probabilities into polygons with the two stages defined here, so a score is
a score of what tile-infer writes:

1. :func:`block_buildings`: the probabilities of one block -> buildings and
   border pieces (threshold, connected components, pixel outlines). This is
   where instance separation plugs in: whatever splits touching buildings
   must return a :class:`~mapseg_core.vectorize.polygons.BlockPolygons`.
2. :func:`finished_polygons`: whole buildings -> world polygons with their
   attributes (min area, GSD-aware simplification, regularization, always valid).

:func:`polygons_from_probability` is both stages on a single block: the entry
point for an image held in memory.

The outline options a model was tuned with live in its metadata (``polish``,
see :mod:`mapseg_core.models.artifact`); :func:`model_polish` fills the
options a user left unset from them, so the CLI, Python and QGIS write the
same polygons for the same model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from shapely.geometry import Polygon

from mapseg_core.errors import ConfigError
from mapseg_core.vectorize.merge import merge_blocks
from mapseg_core.vectorize.polish import PolishOptions, mean_score, pixel_area, polish
from mapseg_core.vectorize.polygons import BlockPolygons, Building, vectorize_block
from mapseg_core.vectorize.separate import SeparationOptions, separate_touching

#: Outline styles: "clean" simplifies and squares corners, "simple" only simplifies,
#: "pixel" keeps the pixel-exact outline (pixel corners, the mask exactly).
OUTLINES: tuple[str, ...] = ("clean", "simple", "pixel")

#: Outline options of a model whose metadata has none (every model saved before them).
DEFAULT_POLISH: dict[str, Any] = {
    # Outline style, one of OUTLINES.
    "outline": "clean",
    # Simplification tolerance in pixels of the grid the model runs on (its GSD).
    "simplify_px": 1.5,
    # Smallest building kept, square metres.
    "min_area_m2": 2.0,
}


@dataclass(frozen=True)
class Feature:
    """One output polygon and its attributes (as written to the GeoPackage)."""

    # Polygon in the CRS of the transform it was made with.
    geometry: Polygon
    # Area in square metres.
    area_m2: float
    # Mean probability over the building's pixels.
    score: float


def block_buildings(
    prob: NDArray[np.floating],
    threshold: float,
    block: tuple[int, int] = (0, 0),
    offset: tuple[int, int] = (0, 0),
    n_blocks: tuple[int, int] = (1, 1),
    valid: NDArray[np.bool_] | None = None,
    *,
    separators: NDArray[np.floating] | None = None,
    separation: SeparationOptions | None = None,
    core: tuple[int, int, int, int] | None = None,
) -> BlockPolygons:
    """Buildings and border pieces of one block's probabilities (stage 1).

    Without ``separation`` a building is a connected component of the
    thresholded mask. With it, touching buildings are told apart first
    (:func:`~mapseg_core.vectorize.separate.separate`: markers where the
    ``separators`` channels say no contact/boundary, grown a bounded distance
    inside the mask), which needs a halo of context around the block: then
    ``prob`` covers the block *and* its halo, and ``core`` says where the block
    lies in it.

    Args:
        prob: ``(rows, cols)`` building probabilities of the block (and halo).
        threshold: probability at or above which a pixel is a building.
        block, offset, n_blocks: the block's index, first pixel (row, col)
            and the block grid's size (a single block: the defaults).
        valid: pixels holding data, same shape as ``prob`` (None: all).
        separators: ``(rows, cols, k)`` contact/boundary probabilities, same grid.
        separation: how to separate (None: connected components).
        core: ``(row, col, height, width)`` of the block inside ``prob``
            (None: all of it).
    """
    area_mask = prob >= threshold
    if valid is not None:
        area_mask &= valid
    r, c, h, w = core if core is not None else (0, 0, *prob.shape[:2])
    mask = area_mask[r : r + h, c : c + w]
    building = np.ascontiguousarray(prob[r : r + h, c : c + w])
    instances = touching = None
    if separation is not None:
        # Labels are used on the block and the one-pixel ring around it (0 beyond the
        # raster edge).
        bordered, touching = separate_touching(
            area_mask, separators, separation, core=(r - 1, c - 1, h + 2, w + 2)
        )
        # The block and its ring (the border's 0s where the block meets the raster edge).
        instances = bordered[r : r + h + 2, c : c + w + 2]
    return vectorize_block(mask, building, block, offset, n_blocks, instances, touching)


def finished_polygons(
    buildings: Iterable[Building], transform: Affine, options: PolishOptions
) -> list[Feature]:
    """World polygons of whole buildings after polish (stage 2), in building order."""
    px_area_m2 = pixel_area(transform) * options.m2_per_unit2
    out: list[Feature] = []
    for building in buildings:
        parts, _ = polish(building, transform, px_area_m2, options)
        score = round(mean_score(building), 4)
        for part in parts:
            out.append(Feature(part, round(part.area * options.m2_per_unit2, 3), score))
    return out


def polygons_from_probability(
    prob: NDArray[np.floating],
    transform: Affine,
    options: PolishOptions,
    threshold: float = 0.5,
    valid: NDArray[np.bool_] | None = None,
    separators: NDArray[np.floating] | None = None,
    separation: SeparationOptions | None = None,
) -> list[Feature]:
    """The polygons tile-infer writes for a probability map held in memory (both stages).

    Args:
        prob: ``(rows, cols)`` building probabilities on the grid of ``transform``.
        transform: pixel -> CRS ``Affine`` (identity: pixel coordinates).
        options: polish options in metres (see :func:`polish_options`).
        threshold: building probability.
        valid: pixels holding data (None: all).
        separators, separation: contact/boundary probabilities ``(rows, cols, k)``
            and how to separate touching buildings with them (None: don't).
    """
    result = block_buildings(
        prob, threshold, valid=valid, separators=separators, separation=separation
    )
    return finished_polygons(merge_blocks([result]), transform, options)


def polish_options(
    polish_config: Mapping[str, Any],
    metres_per_unit: tuple[float, float],
    work_gsd: float,
) -> PolishOptions:
    """:class:`PolishOptions` from resolved outline settings (see :func:`model_polish`).

    Args:
        polish_config: ``outline``, ``simplify`` (metres, or None: ``simplify_px``
            pixels of ``work_gsd``) and ``min_area`` (square metres).
        metres_per_unit: metres per CRS unit along x and y.
        work_gsd: metres per pixel of the outlines' real resolution: the coarser of
            the raster's and the model's GSD (a 1 m raster run at 0.3 m still has
            1 m detail; its staircases are 1 m steps, smoothed).
    """
    outline = polish_config.get("outline") or DEFAULT_POLISH["outline"]
    simplify = polish_config.get("simplify")
    if simplify is None:
        px = float(polish_config.get("simplify_px", DEFAULT_POLISH["simplify_px"]))
        simplify = px * work_gsd
    min_area = polish_config.get("min_area")
    return PolishOptions(
        min_area_m2=float(DEFAULT_POLISH["min_area_m2"] if min_area is None else min_area),
        simplify=0.0 if outline == "pixel" else float(simplify),
        regularize=outline == "clean",
        metres_per_unit=metres_per_unit,
    )


def model_polish(config: Any, metadata: Mapping[str, Any]) -> Any:
    """``config`` (a TileConfig) with unset outline options taken from the model's metadata.

    ``regularize=True`` (the older flag) means ``outline="clean"``. Raises
    :class:`ConfigError` for an unknown outline in the model file.
    """
    tuned = {**DEFAULT_POLISH, **dict(metadata.get("polish") or {})}
    outline = config.outline or ("clean" if config.regularize else tuned["outline"])
    if outline not in OUTLINES:
        raise ConfigError(
            f"the model's polish outline {outline!r} is unknown; pass --outline "
            + "|".join(OUTLINES)
        )
    return dataclasses.replace(
        config,
        outline=outline,
        min_area=float(tuned["min_area_m2"]) if config.min_area is None else config.min_area,
        simplify_px=float(tuned["simplify_px"]),
    )


def pixel_size_m(transform: Affine, metres_per_unit: tuple[float, float]) -> float:
    """Side of a pixel in metres (geometric mean of its two sides)."""
    return math.sqrt(pixel_area(transform) * metres_per_unit[0] * metres_per_unit[1])
