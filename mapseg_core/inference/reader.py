"""Reading a planned raster: the working dataset, block pixels and their validity.

The only inference module that reads pixels. A pixel holds data when the plan's
nodata rule says so (GDAL mask, nodata value or alpha band) and its values are
finite.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from mapseg_core.raster import open_raster, statistics_sample, value_valid

if TYPE_CHECKING:
    from mapseg_core.inference.plan import RasterPlan


@contextlib.contextmanager
def open_working(plan: RasterPlan) -> Iterator[Any]:
    """The raster as the model sees it: the file itself or a resampling VRT."""
    with open_raster(plan.path) as src:
        if not plan.resampled:
            yield src
            return
        kwargs: dict[str, Any] = {
            "crs": plan.crs,
            "transform": plan.transform,
            "width": plan.width,
            "height": plan.height,
            "resampling": Resampling.bilinear,
            # One resampling for every window: GDAL otherwise derives the kernel's scale
            # from each read's own source/destination window sizes (and approximates the
            # transform per read), so a pixel's value would depend on the block it is read
            # with (up to 1 grey level here), and so would its prediction.
            "XSCALE": str(plan.width / plan.src_width),
            "YSCALE": str(plan.height / plan.src_height),
            "tolerance": 1e-9,
        }
        if src.crs is None:
            kwargs["src_crs"] = plan.crs
            kwargs["src_transform"] = src.transform
        if plan.nodata is not None and not plan.use_gdal_mask:
            kwargs["src_nodata"] = plan.nodata
            kwargs["nodata"] = plan.nodata
        elif plan.nodata is None and not plan.use_gdal_mask and _is_float(src, plan):
            # NaN as the warper's nodata: it then never blends NaN into its neighbours.
            kwargs["src_nodata"] = math.nan
            kwargs["nodata"] = math.nan
        with WarpedVRT(src, **kwargs) as vrt:
            yield vrt


def _is_float(ds: Any, plan: RasterPlan) -> bool:
    return any(np.dtype(ds.dtypes[b - 1]).kind == "f" for b in set(plan.bands))


def valid_mask(
    ds: Any,
    plan: RasterPlan,
    data: NDArray[Any],
    window: Window | None,
    out_shape: tuple[int, int] | None = None,
) -> NDArray[np.bool_]:
    """True where a pixel holds data: the plan's nodata rule, and finite values.

    NaN and ±inf are nodata whatever the file declares (:func:`value_valid`).
    ``window`` or ``out_shape`` (a decimated read of the whole raster) says
    where ``data`` came from.
    """
    read = {"window": window} if window is not None else {"out_shape": out_shape}
    if plan.use_gdal_mask:
        unique = sorted(set(plan.bands))
        if out_shape is not None:
            read = {"out_shape": (len(unique), *out_shape)}
        masks = ds.read_masks(unique, **read)
        return np.asarray(masks.any(axis=0)) & value_valid(data, None)
    valid = value_valid(data, plan.nodata)
    if plan.alpha_band:
        valid &= ds.read(plan.alpha_band, **read) > 0
    return valid


def read_pixels(
    ds: Any, plan: RasterPlan, window: Window
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Band-last pixels of ``window`` in model band order, and their validity."""
    unique = sorted(set(plan.bands))
    if isinstance(ds, WarpedVRT):
        # One band per read: GDAL's multi-band bilinear warp rounds a few pixels differently
        # depending on the window's width, band by band it does not (tested).
        raw = np.stack([ds.read(b, window=window) for b in unique])
    else:
        raw = ds.read(unique, window=window)
    order = [unique.index(b) for b in plan.bands]
    data = np.moveaxis(raw[order], 0, -1)
    return data, valid_mask(ds, plan, data, window)


def sample_pixels(ds: Any, plan: RasterPlan) -> tuple[NDArray[Any], NDArray[Any]]:
    """Valid pixels ``(n, bands)`` for the normalization statistics, and all pixels read.

    :func:`mapseg_core.raster.statistics_sample` (shared with chips) with the
    plan's nodata rule; never the whole raster.
    """
    return statistics_sample(
        ds,
        plan.bands,
        lambda data, window, shape: valid_mask(ds, plan, data, window, shape),
    )


__all__ = ["open_working", "read_pixels", "sample_pixels", "valid_mask"]
