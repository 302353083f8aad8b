"""``tile_infer_job``: tile inference on a Dask cluster and/or resumable from a job directory.

The same job as :func:`mapseg_core.inference.engine.tile_infer` (same checks,
plans, blocks, merge and GeoPackage), with two things added:

* **Where blocks run.** On a Dask cluster (a scheduler address, a
  ``LocalCluster`` of N processes, or a ``Client`` passed in), each block is
  one task (:func:`~mapseg_core.distributed.cluster.run_block_task`) that
  returns the block's polygons; or in this process, one after the other.
  Tasks are submitted a few per worker thread at a time, so the scheduler
  never holds millions of tasks and finished polygons do not pile up.
* **What survives a kill.** With a job directory, every finished block's
  polygons go into the manifest (:class:`~mapseg_core.distributed.jobs.JobManifest`)
  before they are merged. A rerun replays the stored blocks into the merger,
  runs only the missing ones, and writes the GeoPackage from scratch, so its
  polygons are those of an uninterrupted run.

Blocks complete in any order; the :class:`~mapseg_core.vectorize.merge.BorderMerger`
is exact in any order, so the polygon set equals the single-process one.
Feature ids follow completion order and may differ between runs.

A block whose task fails is retried once by Dask (a worker that dies is
replaced by its nanny and its tasks rescheduled, which Dask does by itself).
A block that still fails is named in a ``warning`` event, recorded as failed
in the manifest, and left out; everything else is merged and written, and
:class:`~mapseg_core.distributed.jobs.BlocksFailed` (exit code 4) is raised
after the GeoPackage is in place. Rerunning the command retries those blocks.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from mapseg_core.atomic import commit_all
from mapseg_core.config import TileConfig
from mapseg_core.distributed.cluster import (
    BlockOutcome,
    WorkerSpec,
    connect,
    local_tf_threads,
    warm_up,
)
from mapseg_core.distributed.fingerprint import job_fingerprint
from mapseg_core.distributed.inputs import expand_rasters
from mapseg_core.distributed.jobs import BlocksFailed, JobManifest, block_name
from mapseg_core.distributed.runners import Task, dask_outcomes, local_outcomes
from mapseg_core.errors import ConfigError, Interrupted
from mapseg_core.inference.engine import GDAL_CACHE_BYTES
from mapseg_core.inference.job import area_done, set_up
from mapseg_core.inference.outputs import (
    aborting,
    open_sinks,
    raster_outputs,
    raster_target,
    write_block_values,
    write_buildings,
)
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.windows import Block
from mapseg_core.progress import Reporter, null_reporter, progress_event
from mapseg_core.vectorize.gpkg import GpkgWriter
from mapseg_core.vectorize.merge import BorderMerger
from mapseg_core.vectorize.polygons import BlockPolygons


@dataclass(frozen=True)
class JobOptions:
    """Where a tile-infer job runs and where it keeps its state (CLI option names)."""

    # Address of a running Dask scheduler, e.g. "tcp://host:8786" (None: no remote cluster).
    dask: str | None = None
    # Start a LocalCluster with this many worker processes, one thread each (None: none).
    workers: int | None = None
    # Job directory: finished blocks and their polygons, for resuming (None: nothing kept).
    job_dir: str | None = None
    # Dask retries of a failed block task; a block failing retries + 1 times is reported.
    retries: int = 1
    # Block tasks in flight per worker thread (bounds scheduler load and memory).
    inflight_per_thread: int = 4
    # TensorFlow threads per worker (None: cores // workers with `workers`, else TF's default).
    tf_threads: int | None = None

    def __post_init__(self) -> None:
        if self.dask is not None and self.workers is not None:
            raise ConfigError("pass either --dask ADDRESS or --workers N, not both")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.retries < 0 or self.inflight_per_thread < 1:
            raise ConfigError("retries must be 0 or more and inflight_per_thread at least 1")


def tile_infer_job(
    rasters: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    model: str | os.PathLike[str],
    config: TileConfig | None = None,
    job: JobOptions | None = None,
    report: Reporter = null_reporter,
    client: Any = None,
) -> dict[str, Any]:
    """Detect buildings in ``rasters`` on a Dask cluster and/or resumably; one GeoPackage layer.

    Args:
        rasters: GDAL rasters (GeoTIFF, VRT mosaics) or glob patterns.
        output: target ``.gpkg`` (atomic, as in :func:`~mapseg_core.inference.engine.tile_infer`).
        model: a mapseg ``.keras`` file, readable at the same path on every worker.
        config: the tiling options; the same values give the same polygons as
            the single-process path.
        job: where blocks run (``dask`` / ``workers``, else in this process) and
            the job directory.
        report: progress events, as the single-process path, plus ``resumed``
            (blocks taken from the job directory) in ``start``.
        client: a ``distributed.Client`` to use instead of ``job.dask``/``job.workers``.

    Returns:
        The summary of :func:`~mapseg_core.inference.engine.tile_infer`, plus
        ``blocks_run`` and ``blocks_resumed``, ``failed_blocks`` (names),
        ``workers`` and ``job_dir``. ``mpx_per_s`` and ``km2_per_h`` count the
        blocks run in this call only (a resumed run does not inflate them).

    Raises:
        BlocksFailed: some blocks failed twice; everything else was written.
        Interrupted: Ctrl-C; the job directory (if any) keeps the finished blocks.
        MapsegError: bad rasters, model, output or job directory, as the single-process path.
    """
    config = config or TileConfig()
    job = job or JobOptions()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        return _Job(rasters, output, model, config, job, report, client).run()


class _Job:
    """One run of a job: checks, plans, manifest, block loop, merge, write."""

    def __init__(
        self,
        rasters: Sequence[str | os.PathLike[str]],
        output: str | os.PathLike[str],
        model: str | os.PathLike[str],
        config: TileConfig,
        job: JobOptions,
        report: Reporter,
        client: Any,
    ):
        self.started = time.perf_counter()
        self.config = config
        self.job = job
        self.report = report
        self.client = client
        self.model = str(model)
        paths = [_absolute(path) for path in expand_rasters(rasters)]
        # Probability/mask GeoTIFFs: block values come back with each outcome (and are
        # kept in the job directory), written on this side as tile-infer writes them.
        self.extra_outputs = raster_outputs(config)
        self.raster_kinds = tuple(kind for _, kind in self.extra_outputs)
        self.several = len(paths) > 1
        targets = [
            raster_target(opt, p, self.several) for opt, _ in self.extra_outputs for p in paths
        ]
        self.setup = setup = set_up(paths, output, model, config, report, targets)
        self.output, self.metadata, self.config = setup.output, setup.metadata, setup.config
        self.plans, self.out_crs = setup.plans, setup.out_crs
        self.crs = [p.crs for p in self.plans]
        self.model_sha256 = setup.model_sha256
        self.warnings = setup.warnings

    def warn(self, message: str) -> None:
        self.setup.warn(message)

    def run(self) -> dict[str, Any]:
        manifest = None
        if self.job.job_dir is not None:
            fingerprint = job_fingerprint(
                self.config, self.model_sha256, [p.path for p in self.plans]
            )
            manifest = JobManifest.open(self.job.job_dir, fingerprint, self.config.overwrite)
        try:
            return self._run(manifest)
        except KeyboardInterrupt:
            saved = (
                f"; {manifest.count()} finished blocks are kept in --job-dir {self.job.job_dir}, "
                "run the same command again to continue"
                if manifest is not None
                else "; pass --job-dir DIR to make a run resumable"
            )
            raise Interrupted(f"tile-infer stopped{saved}") from None
        finally:
            if manifest is not None:
                manifest.close()

    def _run(self, manifest: JobManifest | None) -> dict[str, Any]:
        config, plans = self.config, self.plans
        total = sum(len(p.grid) for p in plans)
        done_sets = [manifest.done(k) if manifest else set() for k in range(len(plans))]
        resumed = sum(len(s) for s in done_sets)
        todo: list[Task] = [
            (k, plan, block)
            for k, plan in enumerate(plans)
            for block in plan.grid.blocks()
            if block.index not in done_sets[k]
        ]
        self.report(self.setup.start_event(resumed=resumed, job_dir=self.job.job_dir))
        provenance = self.setup.provenance()
        mergers = [BorderMerger() for _ in plans]
        remaining = [len(p.grid) for p in plans]
        valid = [0] * len(plans)
        failed: list[str] = []
        run_pixels = 0.0
        done = resumed
        workers = 0
        sinks = open_sinks(self.plans, self.extra_outputs, self.several)
        with (
            aborting(sinks),
            GpkgWriter(
                self.output, config.layer, self.out_crs, provenance, overwrite=config.overwrite
            ) as writer,
        ):

            def merge(k: int, polygons: BlockPolygons, valid_pixels: int) -> None:
                valid[k] += valid_pixels
                remaining[k] -= 1
                self._write(k, mergers[k].add(polygons), writer)
                if remaining[k] == 0:
                    self._write(k, mergers[k].finish(), writer)

            if manifest is not None:
                for k in range(len(plans)):
                    for index, polygons, valid_pixels in manifest.stored(k):
                        if sinks[k]:
                            write_block_values(sinks[k], index, manifest.stored_rasters(k, index))
                        merge(k, polygons, valid_pixels)
            with self._outcomes(todo) as (outcomes, workers):
                for (k, plan, block), outcome, error in outcomes:
                    done += 1
                    if outcome is not None:
                        if manifest is not None:
                            manifest.record(
                                k,
                                outcome.polygons,
                                outcome.valid_pixels,
                                outcome.seconds,
                                outcome.worker,
                                outcome.rasters,
                            )
                        write_block_values(sinks[k], block.index, dict(outcome.rasters))
                        merge(k, outcome.polygons, outcome.valid_pixels)
                        run_pixels += _src_pixels(plan, block)
                    else:
                        name = block_name(plan.name, block)
                        failed.append(name)
                        if manifest is not None:
                            manifest.record_failure(k, block.index, name, str(error))
                        self.warn(f"block failed: {name}: {error}")
                        remaining[k] -= 1
                        if remaining[k] == 0:
                            self._write(k, mergers[k].finish(), writer)
                    self.report(
                        self._progress(done, resumed, total, plan.name, run_pixels, mergers)
                    )
            for k in range(len(plans)):
                if remaining[k] > 0:  # only if a block never came back; close what waits on it
                    self._write(k, mergers[k].finish(), writer)
            # The GeoPackage and every GeoTIFF staged complete, then renamed together.
            moves = [(writer.stage(), writer.path)]
            moves += [(sink.stage(), sink.target) for row in sinks for sink in row]
            commit_all(moves)
        summary = self._summary(writer.count, total, resumed, valid, run_pixels, failed, workers)
        if manifest is not None:
            manifest.set("status", "failed blocks" if failed else "finished")
            manifest.set("summary", summary)
        self.report({"event": "done", "summary": summary})
        if failed:
            raise self._failed(failed, summary)
        return summary

    def _progress(
        self,
        done: int,
        resumed: int,
        total: int,
        name: str,
        run_pixels: float,
        mergers: list[BorderMerger],
    ) -> dict[str, Any]:
        """The progress event after ``done`` of ``total`` blocks (``resumed`` from a manifest)."""
        elapsed = time.perf_counter() - self.started
        ran = done - resumed
        return progress_event(
            done,
            total,
            raster=name,
            mpx_per_s=round(run_pixels / 1e6 / elapsed, 3) if elapsed else 0.0,
            eta_s=round(elapsed / ran * (total - done), 1) if ran else 0.0,
            pending_pieces=sum(m.pending for m in mergers),
        )

    def _failed(self, failed: list[str], summary: dict[str, Any]) -> BlocksFailed:
        """The one-line error for blocks that failed twice, naming how to retry them."""
        listed = "; ".join(failed[:3])
        if len(failed) > 3:
            listed += f" and {len(failed) - 3} more"
        rerun = (
            "rerun the same command with --overwrite to retry them"
            if self.job.job_dir
            else "pass --job-dir DIR to retry only them"
        )
        return BlocksFailed(
            f"{len(failed)} block(s) failed twice and are missing from {self.output}: "
            f"{listed}; {rerun}",
            summary,
        )

    def _write(self, k: int, buildings: list[Any], writer: GpkgWriter) -> None:
        if buildings:
            write_buildings(buildings, self.plans[k], writer, self.config, self.crs[k])

    @contextlib.contextmanager
    def _outcomes(
        self, todo: list[Task]
    ) -> Iterator[tuple[Iterator[tuple[Task, BlockOutcome | None, str | None]], int]]:
        """The blocks' outcomes in completion order, and the number of workers."""
        if not todo:
            yield iter(()), 0
            return
        batch = self.config.batch_size
        if self.client is None and self.job.dask is None and self.job.workers is None:
            local = local_outcomes(
                todo, self.model, self.model_sha256, batch, self.job.retries, self.raster_kinds
            )
            yield local, 1
            return
        if self.client is not None:
            client_cm: Any = contextlib.nullcontext(self.client)
        else:
            client_cm = connect(self.job.dask, self.job.workers)
        with client_cm as client:
            threads = self.job.tf_threads
            if threads is None and self.job.workers:
                threads = local_tf_threads(self.job.workers)
            spec = WorkerSpec(self.model, self.model_sha256, batch, threads, self.raster_kinds)
            warm_up(client, spec)
            nthreads = client.nthreads()
            inflight = max(4, self.job.inflight_per_thread * sum(nthreads.values()))
            yield dask_outcomes(client, todo, spec, self.job.retries, inflight), len(nthreads)

    def _summary(
        self,
        features: int,
        total: int,
        resumed: int,
        valid: list[int],
        run_pixels: float,
        failed: list[str],
        workers: int,
    ) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        megapixels, km2 = area_done(self.plans, valid)
        run_fraction = run_pixels / (megapixels * 1e6) if megapixels else 0.0
        run_km2 = km2 * run_fraction  # valid area scales with the pixels run, to a good estimate
        for plan, v in zip(self.plans, valid, strict=True):
            if v == 0 and not failed:
                self.warn(f"{plan.name} is entirely nodata; no buildings from it")
        return {
            "output": str(self.output),
            "features": features,
            "blocks": total,
            "blocks_run": total - resumed - len(failed),
            "blocks_resumed": resumed,
            "failed_blocks": failed,
            "seconds": round(seconds, 3),
            "megapixels": round(megapixels, 3),
            "mpx_per_s": round(run_pixels / 1e6 / seconds, 3) if seconds else None,
            "km2": round(km2, 6),
            "km2_per_h": round(run_km2 / seconds * 3600, 3) if seconds else None,
            "rasters": [p.record() for p in self.plans],
            "model_sha256": self.model_sha256,
            "warnings": self.warnings,
            "workers": workers,
            "job_dir": self.job.job_dir,
        }


def _absolute(path: str) -> str:
    """An absolute path for local files (workers may run elsewhere); other names unchanged."""
    return str(Path(path).resolve()) if os.path.exists(path) else path


def _src_pixels(plan: RasterPlan, block: Block) -> float:
    """Raster pixels a block of the working grid stands for."""
    scale = plan.src_width * plan.src_height / (plan.width * plan.height)
    return block.width * block.height * scale
