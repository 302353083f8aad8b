"""A georeferenced raster and its building labels -> image chips and a COCO annotation file.

:func:`make_chips` is the one function behind ``mapseg chips``; its parts live
in :mod:`~mapseg_core.data.labels` (reading labels),
:mod:`~mapseg_core.data.instances` (rasterizing them into COCO instances) and
:mod:`~mapseg_core.data.chip_grid` (the raster on the working grid); this
module cuts and writes the chips. Its output
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
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window
from shapely.geometry import Polygon, box

from mapseg_core.data.chip_grid import (
    ChipGrid,
    chip_grid,
    mask_on_grid,
    nodata_value,
    on_grid,
    raster_scaling,
)
from mapseg_core.data.chip_writer import ChipSource, check_output_dir, publish, write_chips
from mapseg_core.data.instances import Segmentation
from mapseg_core.data.labels import is_mask_file, read_label_polygons, to_pixels
from mapseg_core.errors import ConfigError, InputError, InputFileNotFound, RasterError
from mapseg_core.inference.plan import choose_bands
from mapseg_core.progress import Reporter, null_reporter
from mapseg_core.raster import open_raster

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


# === Chip windows (no I/O) ===


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
    # a /vsicurl/ URL must keep its "//": the raster is opened by its string
    with open_raster(os.fspath(raster)) as src, contextlib.ExitStack() as stack:
        source, notes = _open_source(src, raster_path, labels_path, config, stack)
        stride = config.stride or config.size
        windows = chip_windows(source.grid.height, source.grid.width, config.size, stride)
        work = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
        try:
            summary = write_chips(source, windows, work, config, notes, report)
            publish(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return ChipSummary(**{**summary, "output": str(target)})


def _open_source(
    src: Any,
    raster_path: Path,
    labels_path: Path,
    config: ChipConfig,
    stack: contextlib.ExitStack,
) -> tuple[ChipSource, list[str]]:
    """Check the raster, choose bands, grid, nodata and scaling, read the labels; and notes.

    The views (resampled raster, label mask) are entered on ``stack``.
    """
    if src.crs is None or not src.crs.to_wkt():
        raise RasterError(
            f"raster {raster_path} has no CRS; georeference it (e.g. gdal_edit.py -a_srs "
            "EPSG:XXXX) so its labels can be placed"
        )
    bands, notes = choose_bands(
        [ci.name for ci in src.colorinterp], 3, ["red", "green", "blue"], config.bands
    )
    alpha = next((k + 1 for k, c in enumerate(src.colorinterp) if c == ColorInterp.alpha), 0)
    nodata = nodata_value(src, config.nodata)
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
    grid = chip_grid(src, config.gsd, config.gsd_tolerance)
    if grid.resampled:
        notes.append(
            f"{raster_path.name} resampled from {src.width}x{src.height} to "
            f"{grid.width}x{grid.height} ({grid.gsd:g} m per pixel)"
        )
    mask_labels = is_mask_file(labels_path)
    polygons = [] if mask_labels else _pixel_footprints(src, grid, raster_path, labels_path, config)
    ds = stack.enter_context(on_grid(src, grid, Resampling.bilinear, nodata))
    mask_ds = None
    if mask_labels:
        mask_src = stack.enter_context(open_raster(labels_path, "labels mask"))
        mask_ds = stack.enter_context(mask_on_grid(mask_src, src, grid))
    scaling, note = raster_scaling(ds, bands, nodata)
    if note:
        notes.append(note)
    source = ChipSource(
        ds, mask_ds, polygons, grid, bands, alpha, nodata, scaling, raster_path, labels_path
    )
    return source, notes


def _pixel_footprints(
    src: Any, grid: ChipGrid, raster_path: Path, labels_path: Path, config: ChipConfig
) -> list[Polygon]:
    """The vector labels on the raster, in working-grid pixel coordinates.

    Raises:
        InputError: no footprint lies on the raster.
    """
    world = read_label_polygons(
        labels_path, src.crs, tuple(src.bounds), config.layer, config.where, config.labels_crs
    )
    frame = box(0, 0, grid.width, grid.height)
    polygons = [p for p in (to_pixels(p, grid.transform) for p in world) if p.intersects(frame)]
    if not polygons:
        raise InputError(
            f"labels {labels_path.name} do not overlap raster {raster_path.name} "
            f"({len(world)} footprints near it, none on it); check both cover the same area"
        )
    return polygons
