"""A georeferenced raster and its building labels -> image chips and a COCO annotation file.

:func:`make_chips` is the one function behind ``mapseg chips``. Its output
(``annotation.json`` + ``images/``) is what :func:`mapseg_core.data.coco.load_coco`
reads, so ``mapseg train COCO_DIR/annotation.json COCO_DIR/images`` trains on it
directly.

How a building becomes a COCO annotation. Labels are footprint polygons (any
OGR vector format, any CRS, reprojected to the raster's) or a raster mask.
Each footprint is moved into the pixel coordinates of the working grid with
the inverse ``Affine``, clipped to each chip it touches, and **rasterized by
the pixel-centre rule** (GDAL's, the one ``rasterio.features.rasterize``
uses, and the one the tiling engine's masks follow). The annotation is then
exactly that set of pixels, written as

* ``segmentation="polygon"`` (default): the pixel outline as a COCO polygon.
  pycocotools fills a polygon whose vertices lie on pixel corners exactly
  (tested), so the annotation reproduces the pixels bit for bit while staying
  an editable polygon. A building with a hole (a courtyard) cannot be a COCO
  polygon (COCO polygons have no holes), so it is written as compressed RLE.
* ``segmentation="rle"``: compressed RLE for every building.

Writing the footprint's own sub-pixel vertices instead would let pycocotools
use its own fill rule, which disagrees with the pixel-centre rule on about
1.7 % of building pixels (measured on the Massachusetts tile): a mask drawn
back from the chips would no longer match the labels.

Nodata rule. A pixel is nodata when every band equals the nodata value (the
declared one, or ``nodata``), or the alpha band is 0. Nodata only matters for
``skip_nodata``, and **pixels covered by a labelled building never count as
nodata**: a footprint says there is a roof, so a white roof equal to a declared
nodata of 255 (the Massachusetts tiles declare it) cannot get a labelled chip
dropped. Chip pixels are written as read, nodata or not.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.errors
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray
from pycocotools import mask as mask_utils
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import Polygon, box

from mapseg_core import __version__
from mapseg_core.atomic import write_json
from mapseg_core.errors import (
    ConfigError,
    InputError,
    InputFileNotFound,
    OutputError,
    OutputExistsError,
    RasterError,
)
from mapseg_core.inference.normalize import apply_scaling, choose_scaling
from mapseg_core.inference.plan import choose_bands
from mapseg_core.progress import Reporter, null_reporter, progress_event
from mapseg_core.raster import (
    check_orientation,
    finite_valid,
    ground_scale,
    non_finite_note,
    open_raster,
    parse_crs,
    pixel_ground_size,
    raster_gsd,
    statistics_sample,
    value_valid,
    working_grid,
)

#: File suffixes read as raster masks; anything else is read as a vector layer.
MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png")
#: Largest side of the decimated read the percentile statistics come from.
_SAMPLE_SIDE = 1024

Segmentation = Literal["polygon", "rle"]
ImageFormat = Literal["png", "jpg"]


@dataclass(frozen=True)
class ChipConfig:
    """How a raster and its labels are cut into a COCO set.

    Field names are the ``mapseg chips`` option names (``--skip-nodata`` is
    ``skip_nodata``).
    """

    # Chip side in pixels of the working grid (default: the models' default input, 300).
    size: int = 300
    # Pixels between chip origins (None: equal to size, no overlap). The last row/column
    # of chips is moved inwards to end on the raster edge, so every chip is full size.
    stride: int | None = None
    # Metres per pixel to resample to (None: the raster's own grid). Rasters in degrees
    # are converted at their centre latitude.
    gsd: float | None = None
    # Relative GSD difference under which the raster is used as it is (no resampling).
    gsd_tolerance: float = 0.05
    # Leave out chips without any building.
    skip_empty: bool = False
    # Leave out chips whose nodata fraction (label-covered pixels excepted) exceeds this.
    skip_nodata: float | None = None
    # Nodata value: "auto" (the declared one), "none" (no nodata), or a number.
    nodata: float | Literal["auto", "none"] = "auto"
    # Raster bands (1-based) written as R, G, B (None: picked from the colour interpretation).
    bands: tuple[int, ...] | None = None
    # Vector labels: layer name (None: the only / first layer).
    layer: str | None = None
    # Vector labels: SQL WHERE clause handed to GDAL, e.g. "Niveau_2 = 'Building'".
    where: str | None = None
    # Vector labels: CRS to assume when the file declares none.
    labels_crs: str | None = None
    # Raster-mask labels: the value that marks buildings (None: any value > 0).
    mask_value: int | None = None
    # Name of the single COCO category (id 1).
    category_name: str = "building"
    # Chip image format.
    image_format: ImageFormat = "png"
    # Annotation encoding: pixel-exact polygons (RLE when holed) or RLE throughout.
    segmentation: Segmentation = "polygon"
    # Buildings covering fewer pixels of a chip than this are not annotated in it.
    min_pixels: int = 1

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ConfigError(f"--size must be at least 8 pixels, got {self.size}")
        if self.stride is not None and not 1 <= self.stride:
            raise ConfigError(f"--stride must be a positive number of pixels, got {self.stride}")
        if self.gsd is not None and not self.gsd > 0:
            raise ConfigError(f"--gsd must be positive metres per pixel, got {self.gsd}")
        if self.skip_nodata is not None and not 0.0 <= self.skip_nodata <= 1.0:
            raise ConfigError(
                f"--skip-nodata is a fraction of the chip, got {self.skip_nodata}; pass 0..1"
            )
        if self.min_pixels < 1:
            raise ConfigError(f"--min-pixels must be at least 1, got {self.min_pixels}")
        if self.segmentation not in ("polygon", "rle"):
            raise ConfigError(f"unknown segmentation {self.segmentation!r}; choose polygon or rle")
        if self.image_format not in ("png", "jpg"):
            raise ConfigError(f"unknown image format {self.image_format!r}; choose png or jpg")


@dataclass(frozen=True)
class ChipSummary:
    """What a :func:`make_chips` run wrote."""

    # The output folder.
    output: str
    # Chips written (COCO images).
    chips: int
    # COCO annotations written (a building cut by chip borders counts once per chip).
    annotations: int
    # Label buildings (vector parts, or mask components over the whole raster) on the raster.
    buildings: int
    # Chips left out: without buildings (skip_empty), over the nodata fraction (skip_nodata).
    skipped_empty: int
    skipped_nodata: int
    # Working grid size (width, height) and ground resolution in metres.
    width: int
    height: int
    gsd_m: float
    # Notes for the user (nodata rule, resampling).
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out


# === Pure helpers (no I/O) ===


def chip_offsets(length: int, size: int, stride: int) -> list[int]:
    """Chip origins along one axis of ``length`` pixels.

    Origins step by ``stride``; when the last chip would end before the edge,
    one more chip ending exactly on the edge is added (it overlaps its
    neighbour) so every chip is ``size`` pixels and no pixel is left out.
    An axis shorter than ``size`` gets one chip at 0 (cut to ``length``).
    """
    if length <= size:
        return [0]
    offsets = list(range(0, length - size + 1, stride))
    if offsets[-1] != length - size:
        offsets.append(length - size)
    return offsets


def chip_windows(height: int, width: int, size: int, stride: int) -> list[Window]:
    """Row-major chip windows covering a ``height x width`` grid (see :func:`chip_offsets`)."""
    rows = chip_offsets(height, size, stride)
    cols = chip_offsets(width, size, stride)
    return [
        Window(c, r, min(size, width), min(size, height))
        for r in rows
        for c in cols  # type: ignore[arg-type]
    ]


def chip_name(stem: str, row: int, col: int, image_format: str) -> str:
    """File name of the chip at pixel ``(row, col)`` of the working grid of raster ``stem``."""
    return f"{stem}_r{row:06d}_c{col:06d}.{image_format}"


def to_pixels(geometry: Any, transform: Affine) -> Any:
    """A geometry in the raster CRS -> pixel coordinates (x = column, y = row; corners at ints)."""
    inv = ~transform
    a, b, c, d, e, f = inv.a, inv.b, inv.c, inv.d, inv.e, inv.f

    def apply(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geometry, apply)


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
            out.append(instance)
    return out


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
    labels, count = ndimage.label(mask)
    out: list[dict[str, Any]] = []
    for k, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
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


def to_uint8(data: NDArray[Any], scaling: Any) -> NDArray[np.uint8]:
    """Band-last pixels -> uint8 RGB with the raster's one scaling (identity for uint8)."""

    if scaling.kind == "identity" and data.dtype == np.uint8:
        return np.ascontiguousarray(data)
    scaled = apply_scaling(data, scaling)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# === Labels I/O ===


def is_mask_file(path: Path) -> bool:
    """True when ``path`` is read as a raster mask rather than a vector layer."""
    return path.suffix.lower() in MASK_SUFFIXES


def read_label_polygons(
    path: Path,
    raster_crs: CRS,
    raster_bounds: tuple[float, float, float, float],
    config: ChipConfig,
) -> list[Polygon]:
    """Footprints of a vector layer, in the raster's CRS, near the raster.

    Only features whose bounding box meets the raster's are read (``bbox=``
    in the layer's CRS), so a national layer costs what the raster covers.
    Multi-part features are split: each part is one building (one COCO
    instance). Invalid geometries are repaired (``make_valid``); points and
    lines are ignored.

    Raises:
        InputFileNotFound, InputError: missing file, unknown layer, bad
            ``where``, no CRS, no feature left after the filter, or no
            feature on the raster.
    """
    import pyogrio
    from rasterio.warp import transform_bounds

    errors = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError)
    try:
        info = pyogrio.read_info(path, layer=config.layer)
    except errors as exc:
        if config.layer is not None:
            try:
                layers = [str(name) for name, _ in pyogrio.list_layers(path)]
            except errors:
                layers = []
            raise InputError(
                f"labels {path} have no layer {config.layer!r}; pass --layer with one of "
                f"{', '.join(layers) or 'its layers'}"
            ) from None
        raise InputError(
            f"labels {path} are not a vector layer GDAL can read "
            f"({str(exc).splitlines()[0][:80]}); pass a GeoPackage, GeoJSON or Shapefile, "
            "or a GeoTIFF mask"
        ) from None
    if info["crs"]:
        labels_crs = CRS.from_user_input(info["crs"])
    elif config.labels_crs:
        labels_crs = parse_crs(config.labels_crs, "--labels-crs")
    else:
        raise InputError(
            f"labels {path} have no CRS; pass --labels-crs EPSG:XXXX or assign one to the file"
        )
    bounds = transform_bounds(raster_crs, labels_crs, *raster_bounds, densify_pts=21)
    read_kwargs: dict[str, Any] = {"layer": config.layer, "where": config.where}
    try:
        frame = pyogrio.read_dataframe(path, bbox=bounds, columns=[], **read_kwargs)
    except (*errors, ValueError) as exc:
        if config.where:
            raise InputError(
                f"--where {config.where!r} is not a valid filter of {path.name} "
                f"({str(exc).splitlines()[0][-60:]}); its fields are "
                f"{', '.join(str(f) for f in info['fields']) or 'none'}; use SQL such as "
                "\"Niveau_2 = 'Building'\""
            ) from None
        raise InputError(f"cannot read labels {path}: {str(exc).splitlines()[0]}") from None
    if len(frame) == 0:
        _explain_no_features(path, read_kwargs, info, raster_crs, raster_bounds, labels_crs)
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
    from pyproj import Transformer

    if labels_crs != raster_crs:
        transformer = Transformer.from_crs(labels_crs, raster_crs, always_xy=True)
        polygons = list(
            shapely.transform(
                np.asarray(polygons, dtype=object),
                lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])),
            )
        )
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


# === Raster I/O ===


@dataclass(frozen=True)
class _Grid:
    """The grid chips are cut from: the raster's, or resampled to the target GSD."""

    transform: Affine
    width: int
    height: int
    crs: CRS
    gsd: float
    resampled: bool


def _working_grid(src: Any, config: ChipConfig) -> _Grid:
    """The raster's grid, or resampled to ``config.gsd`` by its true ground scale.

    The same measure as tiling (:func:`mapseg_core.raster.ground_scale` at the
    raster's centre, each pixel axis by its own length), so chips and tiling
    put the same ground metres in a model pixel.
    """
    t = src.transform
    check_orientation(t, str(src.name))
    gsd, _, _ = raster_gsd(src.crs, t, src.width, src.height)
    centre = t @ (src.width / 2, src.height / 2)
    scale = ground_scale(src.crs, centre[0], centre[1], 8 * math.sqrt(abs(t.a * t.e - t.b * t.d)))
    transform, width, height = working_grid(
        t,
        src.width,
        src.height,
        pixel_ground_size(t, float(scale.x), float(scale.y)),
        config.gsd,
        config.gsd_tolerance,
    )
    resampled = (width, height) != (src.width, src.height)
    work_gsd = float(config.gsd) if resampled and config.gsd else gsd
    return _Grid(transform, width, height, src.crs, work_gsd, resampled)


@contextlib.contextmanager
def _on_grid(src: Any, grid: _Grid, resampling: Resampling, nodata: float | None) -> Iterator[Any]:
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
        src_nodata=_warp_nodata(src, nodata),
        nodata=_warp_nodata(src, nodata),
    ) as vrt:
        yield vrt


def _warp_nodata(src: Any, nodata: float | None) -> float | None:
    """The warper's nodata: the raster's, or NaN for a float raster without one (never blended)."""
    if nodata is None and any(np.dtype(d).kind == "f" for d in src.dtypes):
        return math.nan
    return nodata


def _nodata_value(src: Any, config: ChipConfig) -> float | None:
    if config.nodata == "none":
        return None
    if config.nodata == "auto":
        return None if src.nodata is None else float(src.nodata)
    return float(config.nodata)


def _scaling(ds: Any, bands: tuple[int, ...], nodata: float | None) -> tuple[Any, str | None]:
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


# === Output folder ===


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse an output folder that holds something, unless it is a chips output and ``overwrite``.

    Raises:
        OutputExistsError: the folder is not empty and ``overwrite`` is False.
        OutputError: it is a file, its parent is missing, or (with ``overwrite``)
            it holds files that are not a previous chips output.
    """
    if path.exists() and not path.is_dir():
        raise OutputError(f"output {path} is a file; pass a folder name to -o")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise OutputExistsError(
                f"output folder {path} is not empty; pass --overwrite or choose another -o"
            )
        extra = [p.name for p in path.iterdir() if p.name not in ("annotation.json", "images")]
        if extra or not (path / "annotation.json").exists():
            raise OutputError(
                f"output folder {path} holds files that are not a chips output "
                f"({', '.join(extra[:3]) or 'no annotation.json'}); --overwrite only replaces a "
                "previous mapseg chips folder, so choose another -o"
            )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or change -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {parent} is not writable; choose another -o")


def _publish(work: Path, target: Path) -> None:
    """Move the finished ``work`` folder onto ``target`` (renames only, same file system)."""
    old: Path | None = None
    if target.exists():
        if any(target.iterdir()):
            old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
            os.replace(target, old)
        else:
            target.rmdir()
    os.replace(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# === The run ===


def make_chips(
    raster: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: ChipConfig = ChipConfig(),
    overwrite: bool = False,
    report: Reporter = null_reporter,
) -> ChipSummary:
    """Cut ``raster`` and its ``labels`` into chips and a COCO ``annotation.json``.

    Writes ``output/images/<stem>_r<row>_c<col>.png`` (RGB uint8; non-uint8
    rasters are stretched once per raster by their 2nd..98th percentiles, as
    the tiling engine does) and ``output/annotation.json`` with one category
    ``{"id": 1, "name": config.category_name}``. Each image record also holds
    ``geotransform`` (GDAL order), ``crs`` (WKT), ``source`` and ``window`` so
    predictions on a chip can be mapped back to the map. The folder is built
    beside ``output`` and renamed into place at the end: an interrupted run
    leaves no half-written set.

    Args:
        raster: a georeferenced raster (GeoTIFF...).
        labels: footprints (GeoPackage, GeoJSON, Shapefile, ... any CRS) or a
            raster mask (``.tif``...: buildings where value > 0 or == ``mask_value``).
        output: folder to write.
        config: chip size, stride, GSD, skipping, filter, encoding.
        overwrite: replace a previous chips folder.
        report: progress events (one per chip).

    Raises:
        InputFileNotFound, InputError, RasterError, ConfigError: unusable inputs.
        OutputExistsError, OutputError: the output cannot be written.
    """
    raster_path, labels_path, target = Path(raster), Path(labels), Path(output)
    if not labels_path.exists():
        raise InputFileNotFound(f"labels {labels_path} not found; check the path")
    check_output_dir(target, overwrite)
    notes: list[str] = []
    with open_raster(os.fspath(raster)) as src:  # a /vsicurl/ URL must keep its "//"
        if src.crs is None or not src.crs.to_wkt():
            raise RasterError(
                f"raster {raster_path} has no CRS; georeference it (e.g. gdal_edit.py -a_srs "
                "EPSG:XXXX) so its labels can be placed"
            )
        bands, band_notes = choose_bands(
            [ci.name for ci in src.colorinterp], 3, ["red", "green", "blue"], config.bands
        )
        notes += band_notes
        alpha = next((k + 1 for k, c in enumerate(src.colorinterp) if c == ColorInterp.alpha), 0)
        nodata = _nodata_value(src, config)
        if (
            config.nodata == "auto"
            and nodata in (0.0, 255.0)
            and src.dtypes[0] == "uint8"
            and config.skip_nodata is not None
        ):
            notes.append(
                f"{raster_path.name} declares nodata={nodata:g}, also a valid colour; pixels "
                "equal to it in all bands count as nodata except under labelled buildings. "
                "Pass --nodata none to count none"
            )
        grid = _working_grid(src, config)
        if grid.resampled:
            notes.append(
                f"{raster_path.name} resampled from {src.width}x{src.height} to "
                f"{grid.width}x{grid.height} ({grid.gsd:g} m per pixel)"
            )
        mask_labels = is_mask_file(labels_path)
        polygons: list[Polygon] = []
        if not mask_labels:
            world = read_label_polygons(labels_path, src.crs, tuple(src.bounds), config)
            pixel_polys = [to_pixels(p, grid.transform) for p in world]
            frame = box(0, 0, grid.width, grid.height)
            polygons = [p for p in pixel_polys if p.intersects(frame)]
            if not polygons:
                raise InputError(
                    f"labels {labels_path.name} do not overlap raster {raster_path.name} "
                    f"({len(world)} footprints near it, none on it); check both cover the same area"
                )
        stride = config.stride or config.size
        windows = chip_windows(grid.height, grid.width, config.size, stride)
        with contextlib.ExitStack() as stack:
            ds = stack.enter_context(_on_grid(src, grid, Resampling.bilinear, nodata))
            mask_ds = None
            if mask_labels:
                mask_src = stack.enter_context(open_raster(labels_path, "labels mask"))
                mask_ds = stack.enter_context(_mask_on_grid(mask_src, src, grid))
            scaling, note = _scaling(ds, bands, nodata)
            if note:
                notes.append(note)
            target_work = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
            try:
                summary = _write_chips(
                    ds,
                    mask_ds,
                    polygons,
                    windows,
                    grid,
                    bands,
                    alpha,
                    nodata,
                    scaling,
                    raster_path,
                    labels_path,
                    target_work,
                    config,
                    notes,
                    report,
                )
                _publish(target_work, target)
            except BaseException:
                shutil.rmtree(target_work, ignore_errors=True)
                raise
    return ChipSummary(**{**summary, "output": str(target)})


@contextlib.contextmanager
def _mask_on_grid(mask_src: Any, src: Any, grid: _Grid) -> Iterator[Any]:
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
    with _on_grid(mask_src, grid, Resampling.mode, None) as view:
        yield view


def _write_chips(
    ds: Any,
    mask_ds: Any,
    polygons: list[Polygon],
    windows: list[Window],
    grid: _Grid,
    bands: tuple[int, ...],
    alpha: int,
    nodata: float | None,
    scaling: Any,
    raster_path: Path,
    labels_path: Path,
    work: Path,
    config: ChipConfig,
    notes: list[str],
    report: Reporter,
) -> dict[str, Any]:
    from PIL import Image

    images_dir = work / "images"
    images_dir.mkdir(parents=True)
    tree = shapely.STRtree(polygons) if polygons else None
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    mask_buildings = 0
    skipped_empty = skipped_nodata = 0
    unique = sorted(set(bands))
    order = [unique.index(b) for b in bands]
    crs_wkt = grid.crs.to_wkt()
    for w in notes:
        report({"event": "warning", "message": w})
    report({"event": "start", "total": len(windows), "unit": "chip"})
    for done, window in enumerate(windows, start=1):
        row, col = int(window.row_off), int(window.col_off)
        shape = (int(window.height), int(window.width))
        chip_box = box(col, row, col + shape[1], row + shape[0])
        covered: NDArray[np.bool_] | None = None
        if tree is not None:
            hits = tree.query(chip_box, predicate="intersects")
            local = [_shift(polygons[h], -col, -row) for h in sorted(hits)]
            instances = polygon_instances(local, shape, config.segmentation, config.min_pixels)
            if config.skip_nodata is not None and local:
                covered = rasterio.features.rasterize(
                    [(p, 1) for p in local], out_shape=shape, dtype="uint8"
                ).astype(bool)
        else:
            labels = mask_ds.read(1, window=window)
            building = labels == config.mask_value if config.mask_value is not None else labels > 0
            instances = mask_instances(building, config.segmentation, config.min_pixels)
            covered = building
        if config.skip_empty and not instances:
            skipped_empty += 1
            report(progress_event(done, len(windows), chips=len(images)))
            continue
        raw = ds.read(unique, window=window)
        data = np.moveaxis(raw[order], 0, -1)
        invalid = ~value_valid(data, nodata)
        if config.skip_nodata is not None:
            if alpha:
                invalid |= ds.read(alpha, window=window) == 0
            if nodata_fraction(invalid, covered) > config.skip_nodata:
                skipped_nodata += 1
                report(progress_event(done, len(windows), chips=len(images)))
                continue
        name = chip_name(raster_path.stem, row, col, config.image_format)
        finite = finite_valid(data)
        if finite is not None and not finite.all():  # NaN/inf: black, as nodata, not a cast of NaN
            data = np.where(finite[..., None], data, 0)
        rgb = to_uint8(data, scaling)
        if finite is not None:
            rgb[~finite] = 0
        image = Image.fromarray(rgb, "RGB")
        try:
            if config.image_format == "jpg":
                image.save(images_dir / name, format="JPEG", quality=95)
            else:
                image.save(images_dir / name, format="PNG")
        except OSError as exc:
            raise OutputError(
                f"cannot write chip {name} ({exc.strerror or type(exc).__name__}); check disk space"
            ) from None
        image_id = len(images) + 1
        t = grid.transform @ Affine.translation(col, row)
        images.append(
            {
                "id": image_id,
                "file_name": name,
                "width": shape[1],
                "height": shape[0],
                "source": raster_path.name,
                "window": [col, row, shape[1], shape[0]],
                "geotransform": [t.c, t.a, t.b, t.f, t.d, t.e],
                "crs": crs_wkt,
            }
        )
        for instance in instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    **instance,
                }
            )
        mask_buildings += len(instances)
        report(progress_event(done, len(windows), chips=len(images)))
    buildings = len(polygons) if tree is not None else mask_buildings
    coco = {
        "info": {
            "description": f"mapseg chips of {raster_path.name}",
            "version": __version__,
            "raster": str(raster_path),
            "labels": str(labels_path),
            "options": {k: v for k, v in asdict(config).items()},
            "gsd_m": grid.gsd,
        },
        "licenses": [],
        "categories": [{"id": 1, "name": config.category_name, "supercategory": "building"}],
        "images": images,
        "annotations": annotations,
    }
    write_json(work / "annotation.json", coco, indent=None)  # type: ignore[arg-type]
    summary = {
        "output": str(work),
        "chips": len(images),
        "annotations": len(annotations),
        "buildings": buildings,
        "skipped_empty": skipped_empty,
        "skipped_nodata": skipped_nodata,
        "width": grid.width,
        "height": grid.height,
        "gsd_m": round(grid.gsd, 4),
        "warnings": tuple(notes),
    }
    report({"event": "done", "summary": {**summary, "warnings": list(notes)}})
    return summary


def _shift(geometry: Any, dx: float, dy: float) -> Any:
    return shapely.transform(geometry, lambda xy: xy + np.array([dx, dy]))
