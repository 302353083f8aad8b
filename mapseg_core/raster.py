"""Opening rasters: the one place that turns a path into a rasterio dataset.

Every engine module that reads rasters (tiling, chips) opens them here, so a
missing file, a folder or a file GDAL cannot read gets the same one-line
message wherever it is named.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import rasterio
import rasterio.errors
from rasterio.crs import CRS

from mapseg_core.errors import ConfigError, InputFileNotFound, RasterError

#: GDAL connection strings that name a driver first (``GPKG:file.gpkg:table``, ``NETCDF:...``).
_DRIVER_PREFIX = re.compile(r"^[A-Z][A-Z0-9_]+:")


def is_gdal_path(path: str | os.PathLike[str]) -> bool:
    """True for a name only GDAL resolves: a virtual file system path or a connection string.

    ``/vsimem/``, ``/vsis3/``, ``/vsicurl/https://...``, ``/vsizip/...`` and
    ``GPKG:tiles.gpkg:ortho`` (the raster sources QGIS passes) are not files on
    disk, so they skip the existence checks and go to GDAL as they are; they
    must stay strings, since ``pathlib`` folds the ``//`` of a URL.
    """
    text = os.fspath(path)
    return text.startswith("/vsi") or bool(_DRIVER_PREFIX.match(text))


def open_raster(path: str | os.PathLike[str], what: str = "raster") -> rasterio.DatasetReader:
    """``rasterio.open(path)`` with errors that say what to do.

    Args:
        path: the raster file, a GDAL virtual path (``/vsis3/bucket/x.tif``) or
            a GDAL raster connection string (``GPKG:file.gpkg:table``).
        what: how messages name it ("raster", "labels mask"...).

    Raises:
        InputFileNotFound: ``path`` does not exist.
        RasterError: ``path`` is a folder or not a raster GDAL can read.
    """
    text = os.fspath(path)
    if not is_gdal_path(text):
        local = Path(text)
        if not local.exists():
            raise InputFileNotFound(f"{what} {local} not found; check the path")
        if local.is_dir():
            raise RasterError(f"{what} {local} is a folder; pass a GeoTIFF file")
    try:
        with warnings.catch_warnings():
            # A raster without a CRS is a decision for the caller (--assume-crs), not a warning.
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(text)
    except rasterio.errors.RasterioIOError as exc:
        if is_gdal_path(text):
            raise RasterError(
                f"{what} {text} cannot be opened by GDAL ({str(exc).strip()[:200]}); "
                "check the path, the credentials (e.g. AWS_* for /vsis3/) or the table name"
            ) from None
        raise RasterError(
            f"{what} {text} is not a raster GDAL can read; pass a GeoTIFF (or another GDAL raster)"
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
