"""Tiled inference over rasters in one process: ``mapseg tile-infer`` without job options.

:func:`tile_infer` is the function behind ``mapseg tile-infer``, the QGIS
plugin's engine and the benchmarks. Its steps:

1. **Check** the output (exists? writable?), the model file's metadata and
   every raster (readable, CRS, bands) before any heavy work, so a bad input
   fails in a second with a one-line message and leaves nothing behind
   (:func:`~mapseg_core.inference.job.set_up`).
2. **Plan** each raster (:mod:`~mapseg_core.inference.plan`): bands, nodata rule, one
   normalization from a sample of valid pixels, working grid at the model's
   GSD, block and window grid.
3. **Blocks** (:mod:`~mapseg_core.inference.blocks`, run by the in-process runner
   :func:`~mapseg_core.inference.runner.local_outcomes`): windowed read ->
   normalize -> pad -> model windows -> batched predict -> centre crop ->
   building mask -> polygons split into complete buildings and border pieces.
   A model that takes inputs of any size predicts a block as a few large spans
   instead of many model-sized windows. Read, predict and vectorize of
   consecutive blocks run in threads (:mod:`~mapseg_core.inference.overlap`).
4. **Merge and write** (:func:`~mapseg_core.inference.orchestrator.orchestrate`,
   the same orchestrator as Dask and job-directory runs): border pieces merged
   in any order, polished (min area, simplify, regularize) and streamed into an
   atomic GeoPackage, with the probability/mask GeoTIFFs beside it.

The first block that fails ends the run with its one-line error (a job
directory run retries and records it instead). Memory is bounded by the
blocks in flight (three, plus margins) and the buildings waiting on
unfinished block borders; the raster is never read whole.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import rasterio

from mapseg_core.config import TileConfig
from mapseg_core.inference.job import set_up
from mapseg_core.inference.orchestrator import orchestrate
from mapseg_core.inference.outputs import output_targets, raster_outputs
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.runner import Outcomes, Task, local_outcomes
from mapseg_core.models.artifact import load_artifact
from mapseg_core.progress import Reporter, null_reporter

#: GDAL block cache while tiling. GDAL's default (5 % of RAM) would keep every decoded
#: block of a big raster; blocks are read once in row order, so a cache that holds the
#: rows the next block row re-reads (its top margin) is all that helps.
GDAL_CACHE_BYTES = 64 * 2**20


def tile_infer(
    rasters: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    model: str | os.PathLike[str],
    config: TileConfig | None = None,
    report: Reporter = null_reporter,
    loaded_model: Any = None,
) -> dict[str, Any]:
    """Detect buildings in ``rasters`` and write them to one GeoPackage layer.

    Args:
        rasters: one or more GDAL rasters (GeoTIFF); several go into one layer,
            reprojected to the first raster's CRS (or ``config.crs``).
        output: target ``.gpkg``; written atomically (temporary file + rename).
        model: a mapseg ``.keras`` model file (hashed into the provenance).
        config: options (:class:`~mapseg_core.config.TileConfig`).
        report: receives progress events (:mod:`mapseg_core.progress`).
        loaded_model: the Keras model already loaded from ``model`` (to load it
            once per process when calling repeatedly); None loads it here.

    Returns:
        The summary (:func:`~mapseg_core.inference.orchestrator.orchestrate`'s, the
        same for every door): ``features``, ``blocks``, ``seconds``, ``megapixels``,
        ``mpx_per_s``, ``km2``, ``km2_per_h``, ``rasters`` (one plan record each,
        with its normalization), ``warnings``, ``output``, and the job fields
        (``blocks_run``, ``blocks_resumed`` 0, ``failed_blocks`` empty, ``workers`` 1,
        ``job_dir`` None).

    Raises:
        MapsegError: subclasses with one-line messages (bad raster, model, output).
    """
    config = config or TileConfig()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        return _tile_infer(rasters, output, model, config, report, loaded_model)


def _tile_infer(
    rasters: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    model: str | os.PathLike[str],
    config: TileConfig,
    report: Reporter,
    loaded_model: Any,
) -> dict[str, Any]:
    started = time.perf_counter()
    paths = [str(r) for r in rasters]
    setup = set_up(paths, output, model, config, report, output_targets(config, paths))

    @contextlib.contextmanager
    def in_process(todo: list[Task]) -> Iterator[tuple[Outcomes, int]]:
        nonlocal loaded_model
        if loaded_model is None:
            loaded_model, _ = load_artifact(model)
        predictor = Predictor(loaded_model, setup.config.batch_size)
        kinds = tuple(kind for _, kind in raster_outputs(setup.config))
        yield local_outcomes(todo, predictor, retries=0, raster_kinds=kinds), 1

    return orchestrate(setup, in_process, started, fail_fast=True)


__all__ = ["GDAL_CACHE_BYTES", "tile_infer"]
