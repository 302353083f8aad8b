"""Opening rasters: the one place that turns a path into a rasterio dataset.

Every engine module that reads rasters (tiling, chips) opens them here, so a
missing file, a folder or a file GDAL cannot read gets the same one-line
message wherever it is named.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import rasterio
import rasterio.errors
from rasterio.crs import CRS

from mapseg_core.errors import ConfigError, InputFileNotFound, RasterError


def open_raster(path: str | os.PathLike[str], what: str = "raster") -> rasterio.DatasetReader:
    """``rasterio.open(path)`` with errors that say what to do.

    Args:
        path: the raster file.
        what: how messages name it ("raster", "labels mask"...).

    Raises:
        InputFileNotFound: ``path`` does not exist.
        RasterError: ``path`` is a folder or not a raster GDAL can read.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileNotFound(f"{what} {path} not found; check the path")
    if path.is_dir():
        raise RasterError(f"{what} {path} is a folder; pass a GeoTIFF file")
    try:
        with warnings.catch_warnings():
            # A raster without a CRS is a decision for the caller (--assume-crs), not a warning.
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError:
        raise RasterError(
            f"{what} {path} is not a raster GDAL can read; pass a GeoTIFF (or another GDAL raster)"
        ) from None


def parse_crs(value: str, option: str) -> CRS:
    """A CRS given by the user (``EPSG:32633``, WKT, PROJ) or a one-line error naming ``option``.

    Raises:
        ConfigError: ``value`` is not a CRS.
    """
    try:
        return CRS.from_user_input(value)
    except (rasterio.errors.CRSError, ValueError):  # "EPSG:abc" raises ValueError
        raise ConfigError(f"{option} {value!r} is not a CRS; pass e.g. EPSG:32633") from None
