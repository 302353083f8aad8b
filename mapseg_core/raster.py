"""Opening rasters: the one place that turns a path into a rasterio dataset.

Every engine module that reads rasters (tiling, chips) opens them here, so a
missing file, a folder or a file GDAL cannot read gets the same one-line
message wherever it is named.
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
import rasterio.errors
import shapely
from affine import Affine
from numpy.typing import ArrayLike, NDArray
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

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


# === Ground scale (pure: a CRS and coordinates in, metres out) ===


@dataclass(frozen=True)
class GroundScale:
    """Ground metres per CRS unit at a set of points (arrays of the points' shape).

    A CRS unit is not a ground metre: a degree of longitude is 111 km at the
    equator and 79 km at 45°, a Web Mercator "metre" is 1/cos(latitude) ground
    metres (1.41 at 45°), a UTM metre is 0.9996..1.001 of one. Every metre-based
    option (the model's GSD, ``--min-area``, ``--simplify``) and every measured
    area must go through these factors where the pixels are, not through the
    CRS's unit name.
    """

    # Ground metres per CRS unit along the CRS's x axis (easting, longitude).
    x: NDArray[np.float64]
    # Ground metres per CRS unit along the CRS's y axis (northing, latitude).
    y: NDArray[np.float64]
    # Ground square metres per square CRS unit (x * y * sin of the angle between the axes).
    area: NDArray[np.float64]

    @property
    def linear(self) -> NDArray[np.float64]:
        """Ground metres per CRS unit for lengths in no particular direction (sqrt of area)."""
        return np.sqrt(self.area)


def unit_metres(crs: CRS) -> float:
    """Metres per unit of a CRS's linear unit (1 for metres, 0.3048 for feet), 1 if it has none."""
    try:
        return float(crs.linear_units_factor[1])
    except Exception:  # CRSs without a linear unit (geographic, engineering): metres
        return 1.0


def reproject_geometries(geometries: ArrayLike, src: Any, dst: Any) -> NDArray[np.object_]:
    """Shapely geometries from CRS ``src`` to ``dst`` (anything pyproj reads), x/y in GIS order."""
    transformer = pyproj.Transformer.from_crs(src, dst, always_xy=True)

    def move(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    return np.asarray(shapely.transform(np.asarray(geometries, dtype=object), move), dtype=object)


@functools.lru_cache(maxsize=32)
def _geodesy(crs_wkt: str) -> tuple[pyproj.Transformer, pyproj.Geod] | None:
    """CRS -> longitude/latitude transformer and the ellipsoid, or None (no geodetic datum)."""
    try:
        crs = pyproj.CRS.from_wkt(crs_wkt)
        geodetic = crs.geodetic_crs
        if geodetic is None:
            return None
        geod = geodetic.get_geod()
        if geod is None:
            return None
        return pyproj.Transformer.from_crs(crs, geodetic, always_xy=True), geod
    except pyproj.exceptions.CRSError:
        return None


def ground_scale(
    crs: CRS, x: ArrayLike, y: ArrayLike, step: float, fallback: float | None = None
) -> GroundScale:
    """Ground metres per CRS unit at the points ``(x, y)``, measured on the ellipsoid.

    Each point's neighbours ``step / 2`` either side along x and along y are
    converted to longitude/latitude and their geodesic distance and azimuth
    measured: this is the projection's own scale factor (Mercator's 1/cos φ,
    UTM's 0.9996 at the central meridian, a degree's length at that latitude)
    for any CRS PROJ knows, with no per-projection formula. A central
    difference over a few pixels is exact to ~1e-9 for the smooth scale of a
    map projection.

    Args:
        crs: the coordinates' CRS.
        x: x coordinates (CRS units).
        y: y coordinates, same shape.
        step: distance in CRS units between the measured neighbours (a few pixels).
        fallback: metres per unit where no geodesic measure is possible (a CRS
            without datum, points outside the projection's domain); None:
            the CRS's linear unit (:func:`unit_metres`).

    Returns:
        The factors, arrays of the points' shape.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    shape = np.broadcast(xs, ys).shape
    xs, ys = np.broadcast_to(xs, shape).ravel(), np.broadcast_to(ys, shape).ravel()
    default = unit_metres(crs) if fallback is None else fallback
    mx = np.full(xs.shape, default)
    my = np.full(xs.shape, default)
    area = np.full(xs.shape, default * default)
    geodesy = _geodesy(crs.to_wkt())
    if geodesy is not None and xs.size:
        transformer, geod = geodesy
        h = step / 2
        px = np.concatenate([xs - h, xs + h, xs, xs])
        py = np.concatenate([ys, ys, ys - h, ys + h])
        lon, lat = transformer.transform(px, py, errcheck=False)
        lon, lat = np.split(np.asarray(lon), 4), np.split(np.asarray(lat), 4)
        ok = np.all([np.isfinite(v) for v in (*lon, *lat)], axis=0)
        if ok.any():
            with np.errstate(invalid="ignore"):
                az_x, _, dist_x = geod.inv(lon[0][ok], lat[0][ok], lon[1][ok], lat[1][ok])
                az_y, _, dist_y = geod.inv(lon[2][ok], lat[2][ok], lon[3][ok], lat[3][ok])
            sx, sy = np.asarray(dist_x) / step, np.asarray(dist_y) / step
            angle = np.radians(np.asarray(az_y) - np.asarray(az_x))
            good = (sx > 0) & (sy > 0) & np.isfinite(sx) & np.isfinite(sy)
            idx = np.flatnonzero(ok)[good]
            mx[idx], my[idx] = sx[good], sy[good]
            area[idx] = sx[good] * sy[good] * np.abs(np.sin(angle[good]))
    return GroundScale(mx.reshape(shape), my.reshape(shape), area.reshape(shape))


def raster_points(
    transform: Affine, width: int, height: int, n: int = 5
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """World coordinates of an ``n`` x ``n`` lattice over a raster, corners and centre included."""
    cols, rows = np.meshgrid(np.linspace(0, width, n), np.linspace(0, height, n))
    xs = transform.a * cols + transform.b * rows + transform.c
    ys = transform.d * cols + transform.e * rows + transform.f
    return xs.ravel(), ys.ravel()


def raster_gsd(crs: CRS, transform: Affine, width: int, height: int) -> tuple[float, float, float]:
    """Ground resolution of a raster in metres: at its centre, and its least and greatest.

    The centre's is the one the raster is resampled by; the range says how much
    a large mosaic in degrees or Web Mercator drifts from it (the GSD of a
    Mercator raster spanning 40°..45° N varies by 8 %).
    """
    px_units = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    xs, ys = raster_points(transform, width, height)
    step = 8 * px_units
    scale = ground_scale(crs, xs, ys, step)
    gsd = px_units * scale.linear
    centre = gsd[len(gsd) // 2]
    return float(centre), float(gsd.min()), float(gsd.max())


def pixel_ground_size(transform: Affine, scale_x: float, scale_y: float) -> tuple[float, float]:
    """Ground length in metres of one pixel step along its columns and along its rows.

    ``scale_x``/``scale_y`` are :class:`GroundScale` factors where the pixel is.
    A north-up raster in degrees has pixels cos(latitude) narrower than tall on
    the ground; resampling each axis to the model's GSD by its own length
    gives the model square pixels, as it was trained on.
    """
    a, b, d, e = transform.a, transform.b, transform.d, transform.e
    return math.hypot(a * scale_x, d * scale_y), math.hypot(b * scale_x, e * scale_y)


def working_grid(
    transform: Affine,
    width: int,
    height: int,
    raster_gsd: float | tuple[float, float],
    target_gsd: float | None,
    tolerance: float,
) -> tuple[Affine, int, int]:
    """Grid the model runs on: the raster's own, or resampled to ``target_gsd``.

    ``raster_gsd`` is the ground size of a pixel in metres, or its two sizes
    (along columns, along rows: see :func:`mapseg_core.raster.pixel_ground_size`),
    which differ for rasters in degrees; each axis is then resampled by its own
    factor so the model sees square ground pixels. A raster within
    ``tolerance`` of the target on both axes (or ``target_gsd=None``) is used
    as it is: resampling costs time and blurs edges for no gain.
    """
    gsd_x, gsd_y = raster_gsd if isinstance(raster_gsd, tuple) else (raster_gsd, raster_gsd)
    if target_gsd is None or all(abs(g / target_gsd - 1.0) <= tolerance for g in (gsd_x, gsd_y)):
        return transform, width, height
    new_w = max(1, round(width * gsd_x / target_gsd))
    new_h = max(1, round(height * gsd_y / target_gsd))
    return transform @ Affine.scale(width / new_w, height / new_h), new_w, new_h


def check_orientation(transform: Affine, name: str) -> None:
    """Refuse a geotransform with shear (non-perpendicular pixel axes).

    Rotated and south-up (row order reversed) transforms are fine: every
    pixel -> world step is the full affine, and areas use its determinant. A
    sheared one would make square pixels parallelograms on the ground, which
    the model never saw.

    Raises:
        RasterError: the pixel axes are not perpendicular.
    """
    a, b, d, e = transform.a, transform.b, transform.d, transform.e
    col = math.hypot(a, d)
    row = math.hypot(b, e)
    if col == 0 or row == 0:
        raise RasterError(f"raster {name} has a degenerate geotransform; georeference it again")
    if abs(a * b + d * e) / (col * row) > 1e-6:
        raise RasterError(
            f"raster {name} has a sheared geotransform; warp it to a north-up grid first "
            "(gdalwarp in.tif out.tif)"
        )


# === Valid pixels and the statistics sample ===


def finite_valid(data: NDArray[Any]) -> NDArray[np.bool_] | None:
    """Pixels of band-last ``data`` with a finite value in every band; None for integer data.

    NaN and ±inf are nodata in a float raster whatever it declares: GDAL has
    no way to say so for NaN besides ``nodata=nan``, and one NaN in a
    statistics sample makes the percentile stretch (and so every pixel) NaN.
    """
    if data.dtype.kind != "f":
        return None
    return np.asarray(np.isfinite(data).all(axis=-1))


def value_valid(data: NDArray[Any], nodata: float | None) -> NDArray[np.bool_]:
    """Pixels of band-last ``data`` that hold data by value: finite, not ``nodata`` in all bands.

    The one rule for what a pixel's values say about its validity, shared by
    the tiling engine and chips (masks and alpha bands are combined with it
    by the callers).
    """
    valid = np.ones(data.shape[:-1], dtype=bool)
    if nodata is not None:
        if math.isnan(nodata):
            pass  # NaN != NaN: covered by the finite test below
        else:
            valid &= ~np.all(data == nodata, axis=-1)
    finite = finite_valid(data)
    if finite is not None:
        valid &= finite
    return valid


def non_finite_note(name: str, data: NDArray[Any]) -> str | None:
    """The one warning for a float raster with NaN/inf pixels, or None."""
    finite = finite_valid(data)
    if finite is None or finite.all():
        return None
    return (
        f"{name} has NaN or infinite pixels; they are treated as nodata "
        "(never buildings, not in the statistics)"
    )


def sample_windows(height: int, width: int, side: int = 256, n: int = 4) -> list[Window]:
    """A spread of up to ``n`` x ``n`` windows of ``side`` px over a raster (corners included)."""
    rows = np.unique(np.linspace(0, max(0, height - side), n).astype(int))
    cols = np.unique(np.linspace(0, max(0, width - side), n).astype(int))
    return [Window(int(c), int(r), min(side, width), min(side, height)) for r in rows for c in cols]


def statistics_sample(
    ds: Any,
    bands: Sequence[int],
    valid_of: Callable[[NDArray[Any], Window | None, tuple[int, int] | None], NDArray[np.bool_]],
    max_side: int = 1024,
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Pixels for the normalization statistics: ``(valid (n, bands), all read (m, bands))``.

    Reads the overviews when the file has them (one decimated read of at most
    ``max_side`` px a side), a spread of 256 px windows otherwise: never the
    whole raster. ``valid_of(data, window, out_shape)`` says which pixels hold
    data (the caller's mask/alpha/nodata rule; :func:`value_valid` is applied
    on top, so NaN never reaches the statistics). The second array is every
    pixel read, for :func:`non_finite_note`.
    """
    unique = sorted(set(bands))
    order = [unique.index(b) for b in bands]
    parts, raw_parts = [], []
    if ds.overviews(bands[0]):
        scale = max(1.0, max(ds.height, ds.width) / max_side)
        shape = (max(1, int(ds.height / scale)), max(1, int(ds.width / scale)))
        raw = ds.read(unique, out_shape=(len(unique), *shape), resampling=Resampling.nearest)
        data = np.moveaxis(raw[order], 0, -1)
        valid = valid_of(data, None, shape) & value_valid(data, None)
        parts.append(data[valid])
        raw_parts.append(data.reshape(-1, len(bands)))
    else:
        for window in sample_windows(ds.height, ds.width):
            raw = ds.read(unique, window=window)
            data = np.moveaxis(raw[order], 0, -1)
            valid = valid_of(data, window, None) & value_valid(data, None)
            parts.append(data[valid])
            raw_parts.append(data.reshape(-1, len(bands)))
    return np.concatenate(parts), np.concatenate(raw_parts)
