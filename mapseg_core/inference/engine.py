"""Tiled inference over rasters: the orchestration of one run.

:func:`tile_infer` is the one function behind ``mapseg tile-infer``, the QGIS
plugin and (later) a Dask cluster. Its steps:

1. **Check** the output (exists? writable?), the model file's metadata and
   every raster (readable, CRS, bands) before any heavy work, so a bad input
   fails in a second with a one-line message and leaves nothing behind.
2. **Plan** each raster (:mod:`~mapseg_core.inference.plan`): bands, nodata rule, one
   normalization from a sample of valid pixels, working grid at the model's
   GSD, block and window grid.
3. **Blocks** (:func:`~mapseg_core.inference.blocks.run_block`, a pure-enough
   function of an open dataset, a plan, a block, a predictor and the config):
   windowed read -> normalize -> pad -> model windows -> batched predict ->
   centre crop -> building mask -> polygons split into complete buildings and
   border pieces. A model that takes inputs of any size predicts a block as a
   few large spans instead of many model-sized windows (same crop rule, far
   less overlap; see :meth:`~mapseg_core.inference.windows.WindowGrid.spans_of`).
4. **Merge** border pieces (:class:`~mapseg_core.vectorize.merge.BorderMerger`,
   any completion order), polish (min area, simplify, regularize) and stream
   the features into an atomic GeoPackage (:mod:`~mapseg_core.inference.outputs`).

Within a raster the three stages of consecutive blocks overlap (a reader
thread, the model in the calling thread, a vectorize/write thread), so reads
and polygons cost little wall time on top of the model. Memory is bounded by
three blocks (plus margins) and the buildings waiting on unfinished block
borders; the raster is never read whole.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from numpy.typing import NDArray

from mapseg_core.atomic import commit_all
from mapseg_core.config import TileConfig
from mapseg_core.errors import RasterError
from mapseg_core.inference import blocks
from mapseg_core.inference.blocks import Prepared
from mapseg_core.inference.job import area_done, set_up
from mapseg_core.inference.outputs import (
    ProbabilitySink,
    aborting,
    polish_options,
    raster_outputs,
    raster_target,
    write_polished,
)
from mapseg_core.inference.overlap import overlapped
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.reader import open_working
from mapseg_core.inference.windows import Block
from mapseg_core.models.artifact import load_artifact
from mapseg_core.progress import Reporter, null_reporter, progress_event
from mapseg_core.vectorize.gpkg import GpkgWriter
from mapseg_core.vectorize.merge import BorderMerger

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
        The summary: ``features``, ``blocks``, ``seconds``, ``megapixels``,
        ``mpx_per_s``, ``km2``, ``km2_per_h``, ``rasters`` (one plan record each,
        with its normalization), ``warnings``, ``output``.

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
    extra_outputs = raster_outputs(config)
    several = len(paths) > 1
    setup = set_up(
        paths,
        output,
        model,
        config,
        report,
        [raster_target(opt, p, several) for opt, _ in extra_outputs for p in paths],
    )
    config, plans, total = setup.config, setup.plans, setup.total
    report(setup.start_event())
    if loaded_model is None:
        loaded_model, _ = load_artifact(model)
    predictor = Predictor(loaded_model, config.batch_size)

    done = 0
    valid: list[int] = []
    # Every output is staged complete under a temporary name, then all are renamed
    # together at the end (commit_all): a failure anywhere leaves none of them.
    staged: list[ProbabilitySink] = []
    with (
        aborting([staged]),
        GpkgWriter(
            setup.output, config.layer, setup.out_crs, setup.provenance(), config.overwrite
        ) as writer,
    ):
        for plan in plans:
            sinks = [
                ProbabilitySink(raster_target(opt, plan.path, several), plan, kind)
                for opt, kind in extra_outputs
            ]
            staged += sinks
            valid.append(
                _run_raster(plan, predictor, writer, sinks, config, report, started, done, total)
            )
            for sink in sinks:
                sink.stage()
            done += len(plan.grid)
            if valid[-1] == 0:
                setup.warn(f"{plan.name} is entirely nodata; no buildings from it")
        moves = [(writer.stage(), writer.path)]
        moves += [(sink.staged, sink.target) for sink in staged if sink.staged is not None]
        commit_all(moves)
    seconds = time.perf_counter() - started
    megapixels, km2 = area_done(plans, valid)
    summary = {
        "output": str(setup.output),
        "features": writer.count,
        "blocks": total,
        "seconds": round(seconds, 3),
        "megapixels": round(megapixels, 3),
        "mpx_per_s": round(megapixels / seconds, 3) if seconds else None,
        "km2": round(km2, 6),
        "km2_per_h": round(km2 / seconds * 3600, 3) if seconds else None,
        "rasters": [p.record() for p in plans],
        "model_sha256": setup.model_sha256,
        "warnings": setup.warnings,
    }
    report({"event": "done", "summary": summary})
    return summary


def _run_raster(
    plan: RasterPlan,
    predictor: Predictor,
    writer: GpkgWriter,
    sinks: list[ProbabilitySink],
    config: TileConfig,
    report: Reporter,
    started: float,
    done_before: int,
    total: int,
) -> int:
    """Blocks of one raster in order, merged and written; returns its valid pixel count."""
    merger = BorderMerger()
    options = polish_options(plan, config)
    crs = plan.crs
    keep = bool(sinks)
    todo = list(plan.grid.blocks())
    pixels_per_block = plan.src_width * plan.src_height / max(1, len(todo)) / 1e6

    def read(ds: Any, block: Block) -> Prepared:
        try:
            return blocks.prepare_block(ds, plan, block, predictor.any_size)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(
                f"cannot read {plan.name} at block {block.index}: "
                f"{str(exc).splitlines()[0]}; check the file is complete"
            ) from None

    def finish(prepared: Prepared, prob: NDArray[np.float32]) -> int:
        result = blocks.finish_block(plan, prepared, prob, keep)
        for sink in sinks:
            sink.write(result)
        write_polished(merger.add(result.polygons), plan, writer, options, crs)
        return result.valid_pixels

    def progress(done_here: int) -> None:
        elapsed = time.perf_counter() - started
        done = done_before + done_here
        rate = done * pixels_per_block / elapsed if elapsed else 0.0
        report(
            progress_event(
                done,
                total,
                raster=plan.name,
                mpx_per_s=round(rate, 3),
                eta_s=round(elapsed / done * (total - done), 1),
                pending_pieces=merger.pending,
            )
        )

    # Read, predict and finish (vectorize, merge, write) of consecutive blocks overlap
    # (mapseg_core.inference.overlap); the merger and outputs are only touched by the
    # finisher thread, progress is reported from this thread, always in block order.
    valid = 0
    with open_working(plan) as ds:
        stream = overlapped(
            todo,
            lambda block: read(ds, block),
            lambda prepared: blocks.predict_block(plan, prepared, predictor),
            finish,
        )
        with contextlib.closing(stream):
            for done_here, (_, pixels, error) in enumerate(stream, start=1):
                if error is not None:
                    raise error
                valid += pixels or 0
                progress(done_here)
    write_polished(merger.finish(), plan, writer, options, crs)
    return valid


__all__ = ["GDAL_CACHE_BYTES", "tile_infer"]
