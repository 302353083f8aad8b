"""Chip writing: the images, their COCO records and the output folder of ``mapseg chips``.

:func:`write_chips` walks the chip windows of a :class:`ChipSource` (the raster
and its labels on the working grid, opened by :func:`mapseg_core.data.chips.make_chips`),
rasterizes each chip's buildings (:mod:`mapseg_core.data.instances`), skips
empty or nodata chips as configured and writes images plus ``annotation.json``
into a work folder, which :func:`publish` renames onto the target.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.windows import Window
from shapely.geometry import Polygon, box

from mapseg_core import __version__
from mapseg_core.atomic import write_json
from mapseg_core.data.chip_grid import ChipGrid, to_uint8
from mapseg_core.data.instances import mask_instances, nodata_fraction, polygon_instances
from mapseg_core.errors import OutputError, OutputExistsError
from mapseg_core.progress import Reporter, progress_event
from mapseg_core.raster import finite_valid, value_valid

if TYPE_CHECKING:
    from mapseg_core.data.chips import ChipConfig


@dataclass(frozen=True)
class ChipSource:
    """A raster opened for chipping, with its labels, both on the working grid."""

    ds: Any  # the raster as seen on the grid
    mask_ds: Any  # mask labels: the mask on the grid; vector labels: None
    polygons: list[Polygon]  # vector labels: footprints in grid pixel coordinates
    grid: ChipGrid
    bands: tuple[int, ...]  # 1-based raster bands written as R, G, B
    alpha: int  # 1-based alpha band, 0 when none
    nodata: float | None
    scaling: Any  # the raster's one scaling to uint8
    raster_path: Path
    labels_path: Path


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


def publish(work: Path, target: Path) -> None:
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


def chip_name(stem: str, row: int, col: int, image_format: str) -> str:
    """File name of the chip at pixel ``(row, col)`` of the working grid of raster ``stem``."""
    return f"{stem}_r{row:06d}_c{col:06d}.{image_format}"


def write_chips(
    source: ChipSource,
    windows: list[Window],
    work: Path,
    config: ChipConfig,
    notes: list[str],
    report: Reporter,
) -> dict[str, Any]:
    """Write every kept chip and ``annotation.json`` into ``work``; the run's summary."""
    images_dir = work / "images"
    images_dir.mkdir(parents=True)
    tree = shapely.STRtree(source.polygons) if source.polygons else None
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    mask_buildings = skipped_empty = skipped_nodata = 0
    for w in notes:
        report({"event": "warning", "message": w})
    report({"event": "start", "total": len(windows), "unit": "chip"})
    for done, window in enumerate(windows, start=1):
        instances, covered = _chip_labels(source, tree, window, config)
        rgb = None
        if config.skip_empty and not instances:
            skipped_empty += 1
        elif (rgb := _chip_pixels(source, window, covered, config)) is None:
            skipped_nodata += 1
        if rgb is not None:
            image = _save_chip(rgb, source, window, images_dir, config, len(images) + 1)
            images.append(image)
            first = len(annotations) + 1
            annotations += [
                {"id": first + k, "image_id": image["id"], "category_id": 1, "iscrowd": 0, **inst}
                for k, inst in enumerate(instances)
            ]
            mask_buildings += len(instances)
        report(progress_event(done, len(windows), chips=len(images)))
    coco = _coco_document(source, config, images, annotations)
    write_json(work / "annotation.json", coco, indent=None)  # type: ignore[arg-type]
    grid = source.grid
    summary = {
        "output": str(work),
        "chips": len(images),
        "annotations": len(annotations),
        "buildings": len(source.polygons) if tree is not None else mask_buildings,
        "skipped_empty": skipped_empty,
        "skipped_nodata": skipped_nodata,
        "width": grid.width,
        "height": grid.height,
        "gsd_m": round(grid.gsd, 4),
        "warnings": tuple(notes),
    }
    report({"event": "done", "summary": {**summary, "warnings": list(notes)}})
    return summary


def _chip_labels(
    source: ChipSource, tree: Any, window: Window, config: ChipConfig
) -> tuple[list[dict[str, Any]], NDArray[np.bool_] | None]:
    """The chip's COCO instances, and its label-covered pixels (None: not needed)."""
    row, col = int(window.row_off), int(window.col_off)
    shape = (int(window.height), int(window.width))
    if tree is None:
        labels = source.mask_ds.read(1, window=window)
        building = labels == config.mask_value if config.mask_value is not None else labels > 0
        return mask_instances(building, config.segmentation, config.min_pixels), building
    chip_box = box(col, row, col + shape[1], row + shape[0])
    hits = tree.query(chip_box, predicate="intersects")
    local = [_shift(source.polygons[h], -col, -row) for h in sorted(hits)]
    instances = polygon_instances(local, shape, config.segmentation, config.min_pixels)
    covered = None
    if config.skip_nodata is not None and local:
        covered = rasterio.features.rasterize(
            [(p, 1) for p in local], out_shape=shape, dtype="uint8"
        ).astype(bool)
    return instances, covered


def _chip_pixels(
    source: ChipSource, window: Window, covered: NDArray[np.bool_] | None, config: ChipConfig
) -> NDArray[np.uint8] | None:
    """The chip as RGB uint8, or None when its nodata share is over ``skip_nodata``.

    NaN and infinite pixels are written black (as nodata), not as a cast of NaN.
    """
    unique = sorted(set(source.bands))
    raw = source.ds.read(unique, window=window)
    data = np.moveaxis(raw[[unique.index(b) for b in source.bands]], 0, -1)
    if config.skip_nodata is not None:
        invalid = ~value_valid(data, source.nodata)
        if source.alpha:
            invalid |= source.ds.read(source.alpha, window=window) == 0
        if nodata_fraction(invalid, covered) > config.skip_nodata:
            return None
    finite = finite_valid(data)
    if finite is not None and not finite.all():
        data = np.where(finite[..., None], data, 0)
    rgb = to_uint8(data, source.scaling)
    if finite is not None:
        rgb[~finite] = 0
    return rgb


def _save_chip(
    rgb: NDArray[np.uint8],
    source: ChipSource,
    window: Window,
    images_dir: Path,
    config: ChipConfig,
    image_id: int,
) -> dict[str, Any]:
    """Write one chip image; its COCO image record (with its place on the map)."""
    from PIL import Image

    row, col = int(window.row_off), int(window.col_off)
    name = chip_name(source.raster_path.stem, row, col, config.image_format)
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
    t = source.grid.transform @ Affine.translation(col, row)
    return {
        "id": image_id,
        "file_name": name,
        "width": int(window.width),
        "height": int(window.height),
        "source": source.raster_path.name,
        "window": [col, row, int(window.width), int(window.height)],
        "geotransform": [t.c, t.a, t.b, t.f, t.d, t.e],
        "crs": source.grid.crs.to_wkt(),
    }


def _coco_document(
    source: ChipSource,
    config: ChipConfig,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``annotation.json`` of a chips run."""
    return {
        "info": {
            "description": f"mapseg chips of {source.raster_path.name}",
            "version": __version__,
            "raster": str(source.raster_path),
            "labels": str(source.labels_path),
            "options": {k: v for k, v in asdict(config).items()},
            "gsd_m": source.grid.gsd,
        },
        "licenses": [],
        "categories": [{"id": 1, "name": config.category_name, "supercategory": "building"}],
        "images": images,
        "annotations": annotations,
    }


def _shift(geometry: Any, dx: float, dy: float) -> Any:
    return shapely.transform(geometry, lambda xy: xy + np.array([dx, dy]))
