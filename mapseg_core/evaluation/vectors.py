"""A predicted building layer against a reference footprint layer (vector I/O at the edge).

:func:`evaluate_vectors` reads both layers, reprojects the reference to the
prediction's CRS, restricts both to one area and scores them with the pure
functions of :mod:`mapseg_core.evaluation.polygons`.

Area. Without ``aoi`` both layers are clipped to the intersection of their
bounding boxes: buildings outside the area the other layer covers would
otherwise count as misses or inventions that say nothing about the model. A
prediction layer's bounding box is that of its buildings, not of the raster,
so pass ``aoi`` (the raster footprint, a tile grid cell...) when predictions
are sparse near the edges. Clipping cuts both layers along the same line, so a
building crossing it keeps a fair IoU.

Quality. Besides the matching, the layer is scored as one image with the
polygon-quality metrics of :mod:`mapseg_core.evaluation.quality`: mask IoU
(from areas: the union IoU), boundary IoU with a band of
``boundary_width`` metres, C-IoU, N-ratio, PoLiS in metres and MTA with the
contour sampled every ``mta_step`` metres. Lengths are converted to CRS units
with the CRS's ground scale at the area's centre (degrees included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box

from mapseg_core.errors import ConfigError, InputError, InputFileNotFound
from mapseg_core.evaluation.polygons import MatchResult, match_buildings, union_iou
from mapseg_core.evaluation.quality import QUALITY_KEYS, boundary_iou_geometry, image_quality

#: Band of boundary IoU on a layer, metres (0.02 x the diagonal of a 70 m chip).
BOUNDARY_WIDTH_M = 2.0
#: Contour sampling step of MTA, metres (FFL: 2 px at 0.3 m is 0.6 m).
MTA_STEP_M = 1.0


@dataclass(frozen=True)
class VectorEvaluation:
    """Figures of one prediction layer against one reference layer."""

    # Building matching at the IoU threshold.
    match: MatchResult = field(repr=False)
    # IoU threshold of the matching.
    iou_threshold: float
    # IoU of the union of predictions with the union of references.
    union_iou: float
    # Buildings compared after restricting to the area.
    predicted: int
    reference: int
    # CRS of the comparison (the prediction's), as "EPSG:XXXX" or WKT.
    crs: str
    # The area compared (minx, miny, maxx, maxy) in that CRS.
    bounds: tuple[float, float, float, float]
    # Polygon-quality figures (quality.QUALITY_KEYS, PoLiS as "PoLiS_m", vertex counts).
    quality: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            **self.match.to_dict(),
            "iou_threshold": self.iou_threshold,
            "union_iou": self.union_iou,
            "predicted": self.predicted,
            "reference": self.reference,
            "crs": self.crs,
            "bounds": list(self.bounds),
            **self.quality,
        }


def read_polygons(
    path: str | os.PathLike[str],
    layer: str | None = None,
    where: str | None = None,
    what: str = "layer",
) -> tuple[list[Any], Any]:
    """Polygons of a vector layer (multi-parts split, invalid ones repaired) and its CRS."""
    import pyogrio

    path = Path(path)
    if not path.exists():
        raise InputFileNotFound(f"{what} {path} not found; check the path")
    errors = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError)
    try:
        frame = pyogrio.read_dataframe(path, layer=layer, where=where, columns=[])
    except (*errors, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if where:
            raise InputError(
                f"cannot read {what} {path.name} with --ref-where {where!r} ({first[-60:]}); "
                "use SQL such as \"Niveau_2 = 'Building'\""
            ) from None
        raise InputError(
            f"cannot read {what} {path} ({first[:80]}); pass a GeoPackage, GeoJSON or "
            "Shapefile (and --pred-layer / --ref-layer for multi-layer files)"
        ) from None
    if frame.crs is None:
        raise InputError(f"{what} {path} has no CRS; assign one to the file (e.g. ogr2ogr -a_srs)")
    geoms = shapely.make_valid(np.asarray(frame.geometry.values, dtype=object))
    polygons = [
        p
        for g in geoms
        if g is not None
        for p in shapely.get_parts(g)
        if p.geom_type in ("Polygon", "MultiPolygon")
        for p in shapely.get_parts(p)
    ]
    return [p for p in polygons if not p.is_empty and p.area > 0], frame.crs


def _aoi_geometry(aoi: str, crs: Any) -> Any:
    """``minx,miny,maxx,maxy`` in the prediction CRS, or a polygon layer (any CRS)."""
    parts = aoi.split(",")
    if len(parts) == 4:
        try:
            minx, miny, maxx, maxy = (float(v) for v in parts)
        except ValueError:
            pass
        else:
            if maxx <= minx or maxy <= miny:
                raise ConfigError(f"--aoi {aoi} is empty; give minx,miny,maxx,maxy")
            return box(minx, miny, maxx, maxy)
    polygons, aoi_crs = read_polygons(aoi, what="AOI")
    if not polygons:
        raise InputError(f"AOI {aoi} holds no polygon; pass a polygon layer or minx,miny,maxx,maxy")
    import geopandas as gpd

    return shapely.union_all(gpd.GeoSeries(polygons, crs=aoi_crs).to_crs(crs).values)


def clip_to(geoms: list[Any], area: Any) -> list[Any]:
    """Parts of ``geoms`` inside ``area`` (empty and degenerate pieces dropped)."""
    if not geoms:
        return []
    arr = np.asarray(geoms, dtype=object)
    inside = arr[shapely.intersects(arr, area)]
    clipped = shapely.intersection(inside, area)
    out = []
    for g in clipped:
        polys = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 0]
        if len(polys) == 1:
            out.append(polys[0])
        elif polys:
            out.append(shapely.multipolygons(polys))
    return out


def evaluate_vectors(
    predictions: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    *,
    pred_layer: str | None = None,
    ref_layer: str | None = None,
    ref_where: str | None = None,
    aoi: str | None = None,
    iou: float = 0.5,
) -> VectorEvaluation:
    """Score a prediction layer against a reference layer (see the module docstring).

    Raises:
        InputFileNotFound, InputError, ConfigError: unreadable layers, no CRS,
            layers that do not overlap, an empty AOI.
    """
    import geopandas as gpd

    if not 0 < iou <= 1:
        raise ConfigError(f"--iou must be in (0, 1], got {iou}")
    preds, pred_crs = read_polygons(predictions, pred_layer, what="predictions")
    refs, ref_crs = read_polygons(reference, ref_layer, ref_where, what="reference")
    if not refs:
        raise InputError(
            f"reference {reference} has no polygon"
            + (f" matching --ref-where {ref_where!r}" if ref_where else "")
            + "; check the layer and the filter"
        )
    if ref_crs != pred_crs:
        refs = list(gpd.GeoSeries(refs, crs=ref_crs).to_crs(pred_crs).values)
    if aoi is not None:
        area = _aoi_geometry(aoi, pred_crs)
    else:
        if not preds:
            raise InputError(
                f"predictions {predictions} hold no building, so they have no extent; "
                "pass --aoi to score them against the reference"
            )
        p_box = box(*shapely.total_bounds(np.asarray(preds, dtype=object)))
        r_box = box(*shapely.total_bounds(np.asarray(refs, dtype=object)))
        area = shapely.intersection(p_box, r_box)
        if area.is_empty or area.area == 0:
            raise InputError(
                f"predictions {Path(predictions).name} and reference {Path(reference).name} do "
                f"not overlap (in {pred_crs.to_string()}); check they cover the same area, or "
                "pass --aoi"
            )
    preds = clip_to(preds, area)
    refs = clip_to(refs, area)
    result = match_buildings(preds, refs, iou)
    overall = union_iou(preds, refs)
    quality = layer_quality(preds, refs, result, overall, pred_crs, area)
    return VectorEvaluation(
        match=result,
        iou_threshold=iou,
        union_iou=overall,
        quality=quality,
        predicted=len(preds),
        reference=len(refs),
        crs=pred_crs.to_string(),
        bounds=tuple(float(v) for v in area.bounds),  # type: ignore[arg-type]
    )


def layer_quality(
    preds: list[Any], refs: list[Any], match: MatchResult, mask_iou: float, crs: Any, area: Any
) -> dict[str, float]:
    """Polygon-quality figures of one layer pair (see the module docstring)."""
    from mapseg_core.raster import ground_scale

    # Ground metres per CRS unit where the layers are (Web Mercator's 1/cos(latitude),
    # a degree's length), as tile-infer measures them.
    centre = area.centroid
    minx, miny, maxx, maxy = area.bounds
    step = max(maxx - minx, maxy - miny, 1e-9) / 1000
    metres = float(ground_scale(crs, centre.x, centre.y, step).linear)
    pred_union = shapely.union_all(preds) if preds else shapely.Polygon()
    ref_union = shapely.union_all(refs) if refs else shapely.Polygon()
    sums = image_quality(
        preds,
        refs,
        match.pairs,
        match.ious,
        mask_iou=mask_iou,
        boundary_iou=boundary_iou_geometry(pred_union, ref_union, BOUNDARY_WIDTH_M / metres),
        mta_step=MTA_STEP_M / metres,
        unit=metres,
    )
    return sums.figures("m")


def format_quality(quality: dict[str, float]) -> list[str]:
    """Report lines of the quality figures (``name  value``), in QUALITY_KEYS order."""
    lines = []
    for key in QUALITY_KEYS:
        name = "PoLiS_m" if key == "PoLiS" else key
        value = quality.get(name)
        if value is not None:
            label = {"PoLiS_m": "PoLiS (m)", "MTA": "MTA (deg)"}.get(name, name)
            lines.append(f"{label:<16}{value:.4f}")
    return lines


def write_vector_csv(evaluation: VectorEvaluation, path: str | os.PathLike[str]) -> Path:
    """The figures as a two-column CSV (``metric,value``), written atomically."""
    import csv
    import io as _io

    from mapseg_core.atomic import write_bytes

    buf = _io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["metric", "value"])
    for key, value in evaluation.to_dict().items():
        if key not in ("crs", "bounds"):
            writer.writerow([key, value])
    return write_bytes(path, buf.getvalue().encode())


def plot_iou_histogram(
    evaluation: VectorEvaluation, path: str | os.PathLike[str], bins: int = 20
) -> Path:
    """Histogram of each reference building's best IoU, written as a PNG atomically.

    Misses (no overlapping prediction) sit in the first bin at IoU 0; the
    dashed line is the matching threshold.
    """
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mapseg_core.atomic import write_bytes

    values = np.asarray(evaluation.match.ref_ious, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="#4c72b0", edgecolor="white")
    ax.axvline(
        evaluation.iou_threshold,
        color="k",
        linestyle="--",
        linewidth=1,
        label=f"IoU {evaluation.iou_threshold:g}",
    )
    m = evaluation.match
    ax.set_title(
        f"Per-building IoU: F1 {m.f1:.3f} (P {m.precision:.3f}, R {m.recall:.3f}), "
        f"{evaluation.reference} buildings",
        fontsize=9,
    )
    ax.set_xlabel("best IoU of each reference building with a prediction")
    ax.set_ylabel("buildings")
    ax.legend()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return write_bytes(path, buf.getvalue())
