"""Building labels for chips: footprints from any OGR layer, or a raster mask.

A vector layer is read near the raster only (``bbox=``), repaired, split into
one polygon per building and reprojected to the raster's CRS; every failure is
one line naming the fix (no layer, no CRS, a bad ``--where``, no overlap).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from shapely.geometry import Polygon

from mapseg_core.errors import InputError
from mapseg_core.raster import parse_crs, reproject_geometries

#: File suffixes read as raster masks; anything else is read as a vector layer.
MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png")


def to_pixels(geometry: Any, transform: Affine) -> Any:
    """A geometry in the raster CRS -> pixel coordinates (x = column, y = row; corners at ints)."""
    inv = ~transform
    a, b, c, d, e, f = inv.a, inv.b, inv.c, inv.d, inv.e, inv.f

    def apply(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geometry, apply)


def is_mask_file(path: Path) -> bool:
    """True when ``path`` is read as a raster mask rather than a vector layer."""
    return path.suffix.lower() in MASK_SUFFIXES


def read_label_polygons(
    path: Path,
    raster_crs: CRS,
    raster_bounds: tuple[float, float, float, float],
    layer: str | None = None,
    where: str | None = None,
    labels_crs: str | None = None,
) -> list[Polygon]:
    """Footprints of a vector layer, in the raster's CRS, near the raster.

    Only features whose bounding box meets the raster's are read (``bbox=``
    in the layer's CRS), so a national layer costs what the raster covers.
    Multi-part features are split: each part is one building (one COCO
    instance). Invalid geometries are repaired (``make_valid``); points and
    lines are ignored.

    Args:
        layer: the layer to read (None: the only / first one).
        where: SQL WHERE clause handed to GDAL, e.g. ``"Niveau_2 = 'Building'"``.
        labels_crs: CRS to assume when the file declares none.

    Raises:
        InputFileNotFound, InputError: missing file, unknown layer, bad
            ``where``, no CRS, no feature left after the filter, or no
            feature on the raster.
    """
    import pyogrio
    from rasterio.warp import transform_bounds

    errors = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError)
    try:
        info = pyogrio.read_info(path, layer=layer)
    except errors as exc:
        if layer is not None:
            try:
                layers = [str(name) for name, _ in pyogrio.list_layers(path)]
            except errors:
                layers = []
            raise InputError(
                f"labels {path} have no layer {layer!r}; pass --layer with one of "
                f"{', '.join(layers) or 'its layers'}"
            ) from None
        raise InputError(
            f"labels {path} are not a vector layer GDAL can read "
            f"({str(exc).splitlines()[0][:80]}); pass a GeoPackage, GeoJSON or Shapefile, "
            "or a GeoTIFF mask"
        ) from None
    if info["crs"]:
        crs = CRS.from_user_input(info["crs"])
    elif labels_crs:
        crs = parse_crs(labels_crs, "--labels-crs")
    else:
        raise InputError(
            f"labels {path} have no CRS; pass --labels-crs EPSG:XXXX or assign one to the file"
        )
    bounds = transform_bounds(raster_crs, crs, *raster_bounds, densify_pts=21)
    read_kwargs: dict[str, Any] = {"layer": layer, "where": where}
    try:
        frame = pyogrio.read_dataframe(path, bbox=bounds, columns=[], **read_kwargs)
    except (*errors, ValueError) as exc:
        if where:
            raise InputError(
                f"--where {where!r} is not a valid filter of {path.name} "
                f"({str(exc).splitlines()[0][-60:]}); its fields are "
                f"{', '.join(str(f) for f in info['fields']) or 'none'}; use SQL such as "
                "\"Niveau_2 = 'Building'\""
            ) from None
        raise InputError(f"cannot read labels {path}: {str(exc).splitlines()[0]}") from None
    if len(frame) == 0:
        _explain_no_features(path, read_kwargs, info, raster_crs, raster_bounds, crs)
    geoms = shapely.make_valid(np.asarray(frame.geometry.values, dtype=object))
    polygons: list[Polygon] = []
    for geom in geoms:
        if geom is None:
            continue
        polygons.extend(p for p in shapely.get_parts(_polygonal(geom)) if p.geom_type == "Polygon")
    if not polygons:
        raise InputError(
            f"labels {path} have no polygon near the raster (only points or lines); "
            "pass building footprint polygons"
        )
    if crs != raster_crs:
        polygons = list(reproject_geometries(polygons, crs, raster_crs))
    return polygons


def _polygonal(geom: Any) -> Any:
    """The polygonal part of a geometry (make_valid may add lines or points)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
        return (
            shapely.multipolygons([p for g in parts for p in shapely.get_parts(g)])
            if parts
            else shapely.Polygon()
        )
    return shapely.Polygon()


def _explain_no_features(
    path: Path,
    read_kwargs: dict[str, Any],
    info: dict[str, Any],
    raster_crs: CRS,
    raster_bounds: tuple[float, float, float, float],
    labels_crs: CRS,
) -> None:
    """Raise the one-line reason why no label was read near the raster."""
    import pyogrio

    if read_kwargs.get("where"):
        total = len(pyogrio.read_dataframe(path, columns=[], **read_kwargs))
        if total == 0:
            raise InputError(
                f"no feature of {path.name} matches --where {read_kwargs['where']!r}; check the "
                f"field name and value (fields: {', '.join(str(f) for f in info['fields'])})"
            )
    elif info["features"] == 0:
        raise InputError(f"labels {path} have no features; pass a layer with building footprints")
    extent = info.get("total_bounds")
    where = ""
    if extent is not None:
        where = f" (labels cover {_fmt_bounds(extent)} in {labels_crs.to_string()}"
        where += f", the raster {_fmt_bounds(raster_bounds)} in {raster_crs.to_string()})"
    raise InputError(
        f"labels {path.name} do not overlap raster{where}; check that both cover the same "
        "area and that their CRSs are declared correctly"
    )


def _fmt_bounds(bounds: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in bounds) + "]"
