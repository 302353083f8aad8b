"""The raster as chips see it: the working grid, a resampled view, nodata and scaling.

``mapseg chips`` cuts chips on a *working grid*: the raster's own, or the
raster resampled to a target GSD measured as the tiling engine measures it
(:func:`mapseg_core.raster.working_grid`), so chips and tile-infer put the same
ground metres in a model pixel and stretch non-uint8 rasters the same way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from mapseg_core.errors import RasterError
from mapseg_core.inference.normalize import apply_scaling, choose_scaling
from mapseg_core.raster import (
    check_orientation,
    ground_scale,
    non_finite_note,
    pixel_ground_size,
    raster_gsd,
    statistics_sample,
    value_valid,
    working_grid,
)

#: Largest side of the decimated read the percentile statistics come from.
_SAMPLE_SIDE = 1024


@dataclass(frozen=True)
class ChipGrid:
    """The grid chips are cut from: the raster's, or resampled to the target GSD."""

    transform: Affine
    width: int
    height: int
    crs: CRS
    gsd: float
    resampled: bool


def chip_grid(src: Any, gsd: float | None, tolerance: float) -> ChipGrid:
    """The raster's grid, or resampled to ``gsd`` by its true ground scale.

    ``tolerance`` is the relative GSD difference under which the raster's own
    grid is kept (no resampling).

    The same measure as tiling (:func:`mapseg_core.raster.ground_scale` at the
    raster's centre, each pixel axis by its own length), so chips and tiling
    put the same ground metres in a model pixel.
    """
    t = src.transform
    check_orientation(t, str(src.name))
    own_gsd, _, _ = raster_gsd(src.crs, t, src.width, src.height)
    centre = t @ (src.width / 2, src.height / 2)
    scale = ground_scale(src.crs, centre[0], centre[1], 8 * math.sqrt(abs(t.a * t.e - t.b * t.d)))
    transform, width, height = working_grid(
        t,
        src.width,
        src.height,
        pixel_ground_size(t, float(scale.x), float(scale.y)),
        gsd,
        tolerance,
    )
    resampled = (width, height) != (src.width, src.height)
    work_gsd = float(gsd) if resampled and gsd else own_gsd
    return ChipGrid(transform, width, height, src.crs, work_gsd, resampled)


@contextlib.contextmanager
def on_grid(
    src: Any, grid: ChipGrid, resampling: Resampling, nodata: float | None
) -> Iterator[Any]:
    """``src`` as seen on ``grid``: itself when the grids agree, a WarpedVRT otherwise."""
    same = (
        src.crs == grid.crs
        and src.transform.almost_equals(grid.transform)
        and (src.width, src.height) == (grid.width, grid.height)
    )
    if same:
        yield src
        return
    with WarpedVRT(
        src,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=resampling,
        src_nodata=warp_nodata(src, nodata),
        nodata=warp_nodata(src, nodata),
    ) as vrt:
        yield vrt


def warp_nodata(src: Any, nodata: float | None) -> float | None:
    """The warper's nodata: the raster's, or NaN for a float raster without one (never blended)."""
    if nodata is None and any(np.dtype(d).kind == "f" for d in src.dtypes):
        return math.nan
    return nodata


def nodata_value(src: Any, nodata: float | Literal["auto", "none"]) -> float | None:
    """The nodata value chips use: ``"auto"`` the raster's declared one, ``"none"`` none."""
    if nodata == "none":
        return None
    if nodata == "auto":
        return None if src.nodata is None else float(src.nodata)
    return float(nodata)


def raster_scaling(ds: Any, bands: tuple[int, ...], nodata: float | None) -> tuple[Any, str | None]:
    """One per-raster scaling (identity for uint8; 2/98 % stretch otherwise), and a NaN note.

    The sample is the tiling engine's (:func:`mapseg_core.raster.statistics_sample`),
    so training chips and tile-infer stretch a raster the same way.
    """
    dtype = ds.dtypes[bands[0] - 1]
    if dtype == "uint8":
        return choose_scaling(dtype, len(bands), {"min": 0, "max": 255}, None), None
    sample, read = statistics_sample(
        ds, bands, lambda data, window, shape: value_valid(data, nodata), _SAMPLE_SIDE
    )
    note = non_finite_note(Path(str(ds.name)).name, read)
    return choose_scaling(dtype, len(bands), {"min": 0, "max": 255}, sample), note


@contextlib.contextmanager
def mask_on_grid(mask_src: Any, src: Any, grid: ChipGrid) -> Iterator[Any]:
    """The label mask on the working grid (``mode`` resampling keeps it binary)."""
    if mask_src.crs is None or not mask_src.crs.to_wkt():
        if (mask_src.width, mask_src.height) != (src.width, src.height):
            raise RasterError(
                f"labels mask {mask_src.name} has no CRS and another size than the raster; "
                "georeference it or cut it on the raster's grid"
            )
        # An ungeoreferenced mask of the raster's size is taken as drawn on the raster's grid.
        vrt = WarpedVRT(
            mask_src,
            src_crs=src.crs,
            src_transform=src.transform,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling.mode,
            src_nodata=None,
            nodata=None,
        )
        with vrt:
            yield vrt
        return
    with on_grid(mask_src, grid, Resampling.mode, None) as view:
        yield view


def to_uint8(data: NDArray[Any], scaling: Any) -> NDArray[np.uint8]:
    """Band-last pixels -> uint8 RGB with the raster's one scaling (identity for uint8)."""
    if scaling.kind == "identity" and data.dtype == np.uint8:
        return np.ascontiguousarray(data)
    scaled = apply_scaling(data, scaling)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
