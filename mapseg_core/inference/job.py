"""What every tile-infer run checks and decides before a block runs, in one place.

Both orchestrations, :func:`mapseg_core.inference.engine.tile_infer` (one
process) and :func:`mapseg_core.distributed.scheduler.tile_infer_job` (a Dask
cluster or a job directory), start with :func:`set_up`: the output is checked,
the model's metadata read and its outline defaults applied, every raster
planned (its notes become warnings), the output CRS chosen and the model hashed.
They write the same provenance (:meth:`JobSetup.provenance`) and measure the
area the same way (:func:`area_done`), so a GeoPackage says the same whichever
door it came through.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterio.crs import CRS

from mapseg_core import __version__
from mapseg_core.atomic import check_output
from mapseg_core.config import TileConfig
from mapseg_core.errors import ConfigError
from mapseg_core.inference.plan import RasterPlan, plan_raster
from mapseg_core.models.artifact import file_sha256, read_metadata
from mapseg_core.progress import Reporter
from mapseg_core.raster import parse_crs
from mapseg_core.vectorize.pipeline import model_polish


@dataclass
class JobSetup:
    """A checked, planned tile-infer run."""

    output: Path
    model: str
    model_sha256: str
    metadata: dict[str, Any]
    # The user's options with the model's outline defaults filled in.
    config: TileConfig
    plans: list[RasterPlan]
    out_crs: CRS
    report: Reporter
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Keep ``message`` for the summary and report it as a ``warning`` event."""
        _warn(self.warnings, self.report, message)

    @property
    def total(self) -> int:
        """Blocks of all rasters."""
        return sum(len(p.grid) for p in self.plans)

    def provenance(self) -> dict[str, Any]:
        """The GeoPackage's layer metadata: version, model and hash, options, rasters."""
        return {
            "mapseg_version": __version__,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "parameters": dataclasses.asdict(self.config),
            "rasters": [p.record() for p in self.plans],
        }

    def start_event(self, **extra: Any) -> dict[str, Any]:
        """The ``start`` progress event."""
        return {
            "event": "start",
            "total": self.total,
            "unit": "block",
            "rasters": [p.path for p in self.plans],
            "output": str(self.output),
            **extra,
        }


def set_up(
    rasters: Sequence[str],
    output: str | os.PathLike[str],
    model: str | os.PathLike[str],
    config: TileConfig,
    report: Reporter,
    extra_targets: Sequence[str | os.PathLike[str]] = (),
) -> JobSetup:
    """Check and plan a run before any heavy work (a bad input fails in a second).

    Args:
        rasters: raster paths (globs already expanded).
        extra_targets: further outputs (probability or mask GeoTIFFs) checked
            like ``output`` (exists without ``overwrite``? writable?).

    Raises:
        MapsegError: no raster, an output that may not be written, a bad model
            or raster, with a one-line message.
    """
    if not rasters:
        raise ConfigError("no raster given; pass one or more GeoTIFF files")
    checked = check_output(output, config.overwrite)
    for target in extra_targets:
        check_output(target, config.overwrite, "the path")
    metadata = read_metadata(model)
    config = model_polish(config, metadata)
    warnings: list[str] = []
    plans: list[RasterPlan] = []
    for raster in rasters:  # each raster's notes are reported before the next is planned
        plan, notes = plan_raster(raster, metadata, config)
        plans.append(plan)
        for note in notes:
            _warn(warnings, report, note)
    out_crs = parse_crs(config.crs, "--crs") if config.crs else plans[0].crs
    model_sha256 = file_sha256(model)
    return JobSetup(
        checked, str(model), model_sha256, metadata, config, plans, out_crs, report, warnings
    )


def _warn(warnings: list[str], report: Reporter, message: str) -> None:
    warnings.append(message)
    report({"event": "warning", "message": message})


def area_done(plans: Sequence[RasterPlan], valid: Sequence[int]) -> tuple[float, float]:
    """``(megapixels, km²)``: the rasters' pixels, and the ground their valid pixels cover.

    ``valid`` counts valid pixels of each raster's working grid, so it is scaled
    back to the raster's own pixels before the ground area is taken.
    """
    megapixels = km2 = 0.0
    for plan, v in zip(plans, valid, strict=True):
        scale = plan.src_width * plan.src_height / (plan.width * plan.height)
        megapixels += plan.src_width * plan.src_height / 1e6
        km2 += v * scale * plan.gsd**2 / 1e6
    return megapixels, km2
