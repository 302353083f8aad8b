"""``tile_infer_job``: tile inference on a Dask cluster and/or resumable from a job directory.

The same job as :func:`mapseg_core.inference.engine.tile_infer` (same checks
and plans, then the same orchestrator, :func:`~mapseg_core.inference.orchestrator.orchestrate`:
merge, GeoPackage and GeoTIFFs), with two things chosen here:

* **Where blocks run** (the block runner). On a Dask cluster (a scheduler
  address, a ``LocalCluster`` of N processes, or a ``Client`` passed in), each
  block is one task (:func:`~mapseg_core.distributed.cluster.run_block_task`)
  that returns the block's polygons (:func:`~mapseg_core.distributed.runners.dask_outcomes`);
  or in this process, overlapped as tile-infer runs them
  (:func:`~mapseg_core.inference.runner.local_outcomes`).
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

from mapseg_core.config import TileConfig
from mapseg_core.distributed.cluster import WorkerSpec, connect, local_tf_threads, warm_up
from mapseg_core.distributed.fingerprint import job_fingerprint
from mapseg_core.distributed.inputs import expand_rasters
from mapseg_core.distributed.jobs import JobManifest
from mapseg_core.distributed.runners import dask_outcomes
from mapseg_core.errors import ConfigError, Interrupted
from mapseg_core.inference.engine import GDAL_CACHE_BYTES
from mapseg_core.inference.job import set_up
from mapseg_core.inference.orchestrator import orchestrate
from mapseg_core.inference.outputs import output_targets, raster_outputs
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.runner import Outcomes, Task, local_outcomes
from mapseg_core.models.artifact import load_artifact
from mapseg_core.progress import Reporter, null_reporter


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
    """One run of a job: checks and plans, the manifest, the runner, the orchestrator."""

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
        self.job = job
        self.client = client
        self.model = str(model)
        paths = [_absolute(path) for path in expand_rasters(rasters)]
        self.setup = set_up(paths, output, model, config, report, output_targets(config, paths))
        # Probability/mask GeoTIFFs: block values come back with each outcome (and are
        # kept in the job directory), written on this side as tile-infer writes them.
        self.raster_kinds = tuple(kind for _, kind in raster_outputs(self.setup.config))

    def run(self) -> dict[str, Any]:
        setup, manifest = self.setup, None
        if self.job.job_dir is not None:
            fingerprint = job_fingerprint(
                setup.config, setup.model_sha256, [p.path for p in setup.plans]
            )
            manifest = JobManifest.open(self.job.job_dir, fingerprint, setup.config.overwrite)
        try:
            return orchestrate(
                setup, self._outcomes, self.started, manifest, job_dir=self.job.job_dir
            )
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

    @contextlib.contextmanager
    def _outcomes(self, todo: list[Task]) -> Iterator[tuple[Outcomes, int]]:
        """The runner: blocks' outcomes in completion order, and the number of workers."""
        if not todo:
            yield iter(()), 0
            return
        batch = self.setup.config.batch_size
        sha256 = self.setup.model_sha256
        if self.client is None and self.job.dask is None and self.job.workers is None:
            predictor = Predictor(load_artifact(self.model)[0], batch)
            yield local_outcomes(todo, predictor, self.job.retries, self.raster_kinds), 1
            return
        if self.client is not None:
            client_cm: Any = contextlib.nullcontext(self.client)
        else:
            client_cm = connect(self.job.dask, self.job.workers)
        with client_cm as client:
            threads = self.job.tf_threads
            if threads is None and self.job.workers:
                threads = local_tf_threads(self.job.workers)
            spec = WorkerSpec(self.model, sha256, batch, threads, self.raster_kinds)
            warm_up(client, spec)
            nthreads = client.nthreads()
            inflight = max(4, self.job.inflight_per_thread * sum(nthreads.values()))
            yield dask_outcomes(client, todo, spec, self.job.retries, inflight), len(nthreads)


def _absolute(path: str) -> str:
    """An absolute path for local files (workers may run elsewhere); other names unchanged."""
    return str(Path(path).resolve()) if os.path.exists(path) else path
