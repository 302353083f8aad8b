"""What a tiling run writes: polished buildings into the GeoPackage, probability/mask GeoTIFFs.

Every runner (threads, job directory, Dask) writes through these functions, so a
building gets the same outline, area and attributes whichever door it came
through. Raster outputs are staged under temporary names and renamed with the
GeoPackage (:func:`mapseg_core.atomic.commit_all`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from shapely.geometry import Polygon

from mapseg_core.config import TileConfig
from mapseg_core.errors import OutputError
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.raster import GroundScale, ground_scale
from mapseg_core.vectorize.gpkg import GpkgWriter, temporary_sibling
from mapseg_core.vectorize.pipeline import polish_options as outline_options
from mapseg_core.vectorize.polish import PolishOptions, mean_score, pixel_area, polish
from mapseg_core.vectorize.polygons import Building


def polish_options(plan: RasterPlan, config: TileConfig) -> PolishOptions:
    """Min area, simplification and regularization in ground metres.

    ``config`` should have gone through :func:`~mapseg_core.vectorize.pipeline.model_polish`
    (unset options from the model); the simplification tolerance defaults to
    ``simplify_px`` pixels of the coarser of the raster's and the model's GSD.
    ``metres_per_unit`` is the raster centre's ground scale: each building is
    polished with the scale where it is (:func:`polish_on_ground`).
    """
    return outline_options(
        {
            "outline": config.outline or ("clean" if config.regularize else None),
            "simplify": config.simplify,
            "simplify_px": config.simplify_px,
            "min_area": config.min_area,
        },
        plan.metres,
        max(plan.gsd, plan.work_gsd),
    )


def building_scales(buildings: Sequence[Building], plan: RasterPlan) -> GroundScale:
    """Ground metres per CRS unit at the centre of each building (one vectorized measure).

    A building is at most a few hundred metres across, so the scale at its
    centre is its scale to ~1e-5 even in Web Mercator; a raster's scale is not
    (a degree mosaic or a Mercator raster spanning a few degrees of latitude).
    """
    if not buildings:
        return GroundScale(*(np.empty(0),) * 3)
    bounds = shapely.bounds([b.geometry for b in buildings])
    cols = (bounds[:, 0] + bounds[:, 2]) / 2
    rows = (bounds[:, 1] + bounds[:, 3]) / 2
    t = plan.transform
    xs = t.a * cols + t.b * rows + t.c
    ys = t.d * cols + t.e * rows + t.f
    step = 8 * math.sqrt(pixel_area(t))
    return ground_scale(plan.crs, xs, ys, step, fallback=_fallback_metres(plan))


def _fallback_metres(plan: RasterPlan) -> float:
    return math.sqrt(plan.metres[0] * plan.metres[1])


def polish_on_ground(
    building: Building,
    transform: Affine,
    scale: tuple[float, float, float],
    options: PolishOptions,
) -> list[tuple[Polygon, float]]:
    """A building's polished parts in CRS coordinates, each with its ground area in m².

    ``scale`` is ``(x, y, area)`` ground metres per CRS unit at the building
    (:func:`building_scales`); it replaces ``options.metres_per_unit``, so min
    area, the simplification tolerance and the reported area are in ground
    metres whatever the CRS, and outline cleaning runs in a metric frame around
    the building (:func:`~mapseg_core.vectorize.regularize.clean_outline`):
    regularized corners are right angles on the ground, not in degrees (a degree
    of longitude is cos(latitude) of one of latitude).
    """
    mx, my, m2 = scale
    local = dataclasses.replace(options, metres_per_unit=(mx, my))
    parts, _ = polish(building, transform, pixel_area(transform) * m2, local)
    return [(p, p.area * m2) for p in parts]


def write_polished(
    buildings: list[Building],
    plan: RasterPlan,
    writer: GpkgWriter,
    options: PolishOptions,
    crs: CRS,
) -> None:
    if not buildings:
        return
    scales = building_scales(buildings, plan)
    for k, building in enumerate(buildings):
        scale = (float(scales.x[k]), float(scales.y[k]), float(scales.area[k]))
        score = round(mean_score(building), 4)
        for part, area_m2 in polish_on_ground(building, plan.transform, scale, options):
            writer.add(
                part,
                {"area_m2": round(area_m2, 3), "score": score, "source": plan.name},
                crs,
            )


def _profile(width: int, height: int, transform: Affine, crs: CRS) -> dict[str, Any]:
    """One-band uint8 tiled, deflate-compressed GeoTIFF profile of a probability/mask output."""
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }


#: Raster outputs a run can write besides the GeoPackage: kind -> TileConfig field.
RASTER_OUTPUTS: dict[str, str] = {"probability": "save_probabilities", "mask": "save_mask"}


def raster_outputs(config: TileConfig) -> list[tuple[str, str]]:
    """``(option value, kind)`` of each probability/mask GeoTIFF ``config`` asks for."""
    return [
        (str(getattr(config, field)), kind)
        for kind, field in RASTER_OUTPUTS.items()
        if getattr(config, field)
    ]


def sink_values(
    kind: str, probability: NDArray[np.floating], plan: RasterPlan
) -> NDArray[np.uint8]:
    """What a ``kind`` GeoTIFF stores for a block's probabilities: 0..255, or the 0/1 mask."""
    if kind == "mask":
        return (probability >= plan.threshold).astype(np.uint8)
    return np.rint(probability * 255.0).astype(np.uint8)


class ProbabilitySink:
    """Writes block probabilities (or masks) to a GeoTIFF on the input grid, atomically."""

    def __init__(self, target: Path, plan: RasterPlan, kind: str):
        self.target = target
        self.plan = plan
        self.kind = kind
        self.work = temporary_sibling(target)
        # The finished temporary file (after :meth:`stage`), which :meth:`abort` also deletes.
        self.staged: Path | None = None
        profile = _profile(plan.width, plan.height, plan.transform, plan.crs)
        self.ds = rasterio.open(self.work, "w", **profile)

    def write_values(self, block: Any, values: NDArray[np.uint8]) -> None:
        """Write a block's :func:`sink_values` (from a worker or a job directory)."""
        self.ds.write(values, 1, window=block.window)

    def stage(self) -> Path:
        """Finish the file (resampled back, overviews) under its temporary name; returns it.

        It is renamed onto the target with the run's other outputs
        (:func:`mapseg_core.atomic.commit_all`), never alone.
        """
        self.ds.close()
        final = self.work
        if self.plan.resampled:
            final = temporary_sibling(self.target)
            self.staged = final
            self._resample_back(final)
            self.work.unlink()
        self.staged = final
        with rasterio.open(final, "r+") as ds:
            if self.kind == "probability":
                ds.scales = (1 / 255,)
            factors = [f for f in (2, 4, 8, 16, 32) if min(ds.width, ds.height) // f >= 64]
            if factors:
                ds.build_overviews(
                    factors,
                    Resampling.average if self.kind == "probability" else Resampling.nearest,
                )
        return final

    def _resample_back(self, final: Path) -> None:
        plan = self.plan
        profile = _profile(plan.src_width, plan.src_height, plan.src_transform, plan.crs)
        resampling = Resampling.bilinear if self.kind == "probability" else Resampling.nearest
        with (
            rasterio.open(self.work) as work,
            WarpedVRT(
                work,
                crs=plan.crs,
                transform=plan.src_transform,
                width=plan.src_width,
                height=plan.src_height,
                resampling=resampling,
            ) as vrt,
            rasterio.open(final, "w", **profile) as out,
        ):
            for _, window in out.block_windows(1):
                out.write(vrt.read(1, window=window), 1, window=window)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.ds.close()
        self.work.unlink(missing_ok=True)
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)


def open_sinks(
    plans: Sequence[RasterPlan], outputs: Sequence[tuple[str, str]], several: bool
) -> list[list[ProbabilitySink]]:
    """Per raster, a staged GeoTIFF for each ``(option, kind)`` of :func:`raster_outputs`."""
    sinks: list[list[ProbabilitySink]] = []
    with aborting(sinks):  # a file that cannot be created removes those already open
        for plan in plans:
            sinks.append(
                [
                    ProbabilitySink(raster_target(opt, plan.path, several), plan, kind)
                    for opt, kind in outputs
                ]
            )
    return sinks


def write_block_values(
    sinks: Sequence[ProbabilitySink], index: tuple[int, int], values: dict[str, Any]
) -> None:
    """A block's :func:`sink_values` by kind (from a worker or a job directory) into its GeoTIFFs.

    Raises:
        OutputError: a kind is missing (a job directory written without that output).
    """
    if not sinks:
        return
    block = sinks[0].plan.grid.block_at(*index)
    for sink in sinks:
        if sink.kind not in values:
            raise OutputError(
                f"the job directory has no {sink.kind} values for block {index} of "
                f"{sink.plan.name}; pass --overwrite to run the job again"
            )
        sink.write_values(block, values[sink.kind])


@contextlib.contextmanager
def aborting(sinks: Sequence[Sequence[ProbabilitySink]]) -> Iterator[None]:
    """Delete every staged GeoTIFF if the run fails (the GeoPackage writer deletes its own)."""
    try:
        yield
    except BaseException:
        for sink in (s for row in sinks for s in row):
            sink.abort()
        raise


def raster_target(option: str, raster: str, several: bool) -> Path:
    path = Path(option)
    if several:
        path = path.with_name(f"{path.stem}_{Path(raster).stem}{path.suffix or '.tif'}")
    return path


def output_targets(config: TileConfig, paths: Sequence[str]) -> list[Path]:
    """Every probability/mask GeoTIFF a run over ``paths`` writes (checked before it starts)."""
    several = len(paths) > 1
    return [raster_target(opt, p, several) for opt, _ in raster_outputs(config) for p in paths]


__all__ = [
    "RASTER_OUTPUTS",
    "ProbabilitySink",
    "aborting",
    "open_sinks",
    "output_targets",
    "raster_outputs",
    "sink_values",
    "write_block_values",
    "building_scales",
    "polish_on_ground",
    "polish_options",
    "raster_target",
    "write_polished",
]
