"""The one tile-infer orchestrator: blocks' outcomes in, merged buildings and rasters out.

Every door runs a job through :func:`orchestrate`: plain
:func:`~mapseg_core.inference.engine.tile_infer` (in-process runner, fail fast),
and :func:`~mapseg_core.distributed.scheduler.tile_infer_job` (the same runner
with a job directory, or Dask tasks). What differs between them is only the
*block runner* (:mod:`mapseg_core.inference.runner`: an iterator of
``(task, outcome, error)`` in completion order) and what survives a kill (the
job directory's manifest). The orchestrator, in the calling thread:

1. replays the blocks a manifest already holds (a resumed run);
2. for each outcome, records it in the manifest (before it is merged, so a
   kill never loses a merged-but-unrecorded block), writes its raster values,
   merges its border pieces (:class:`~mapseg_core.vectorize.merge.BorderMerger`,
   exact in any order), polishes the buildings that are complete and adds them
   to the GeoPackage; a failed block ends a fail-fast run, or is recorded,
   named in a warning and left out;
3. stages the GeoPackage and every GeoTIFF complete and renames them together
   (:func:`~mapseg_core.atomic.commit_all`), so a failure leaves none of them;
4. returns the summary (and raises ``BlocksFailed``, exit 4, after writing
   when blocks failed).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from mapseg_core.atomic import commit_all
from mapseg_core.distributed.jobs import BlocksFailed, JobManifest, block_name
from mapseg_core.inference.job import JobSetup, area_done
from mapseg_core.inference.outputs import (
    ProbabilitySink,
    aborting,
    open_sinks,
    polish_options,
    raster_outputs,
    write_block_values,
    write_polished,
)
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.runner import BlockOutcome, Outcomes, Task, describe_error
from mapseg_core.inference.windows import Block
from mapseg_core.progress import progress_event
from mapseg_core.vectorize.gpkg import GpkgWriter
from mapseg_core.vectorize.merge import BorderMerger
from mapseg_core.vectorize.polygons import BlockPolygons

#: A block runner: given the tasks still to do, a context giving their outcomes
#: (completion order) and the number of workers producing them.
Runner = Callable[[list[Task]], AbstractContextManager[tuple[Outcomes, int]]]


def orchestrate(
    setup: JobSetup,
    runner: Runner,
    started: float,
    manifest: JobManifest | None = None,
    fail_fast: bool = False,
    job_dir: str | None = None,
) -> dict[str, Any]:
    """Run ``setup``'s blocks with ``runner``, merge and write them; returns the summary.

    Args:
        setup: the checked, planned run (:func:`~mapseg_core.inference.job.set_up`).
        runner: where blocks run (:data:`Runner`).
        started: ``time.perf_counter()`` when the run began (for rates and the ETA).
        manifest: the job directory's manifest (None: nothing kept, nothing resumed).
        fail_fast: raise the first block's error (plain tile-infer) instead of
            recording it and going on.
        job_dir: the job directory's path, for messages and the summary.

    Raises:
        BlocksFailed: some blocks failed (not ``fail_fast``); everything else was written.
        MapsegError: a block's error with ``fail_fast`` (e.g. an unreadable raster block).
    """
    return _Orchestration(setup, started, manifest, fail_fast, job_dir).run(runner)


class _Orchestration:
    """The state of one run: per raster a merger, blocks left, valid pixels, sinks."""

    def __init__(
        self,
        setup: JobSetup,
        started: float,
        manifest: JobManifest | None,
        fail_fast: bool,
        job_dir: str | None,
    ):
        self.setup = setup
        self.plans = setup.plans
        self.started = started
        self.manifest = manifest
        self.fail_fast = fail_fast
        self.job_dir = job_dir
        self.crs = [p.crs for p in self.plans]
        self.options = [polish_options(p, setup.config) for p in self.plans]
        self.mergers = [BorderMerger() for _ in self.plans]
        self.remaining = [len(p.grid) for p in self.plans]
        self.valid = [0] * len(self.plans)
        self.failed: list[str] = []
        self.run_pixels = 0.0
        # GeoTIFF outputs per raster, opened with its first block and finished with its
        # last, so a run over many rasters holds those of the rasters in progress only.
        self.outputs = raster_outputs(setup.config)
        self.sinks: list[list[ProbabilitySink]] = [[] for _ in self.plans]

    def run(self, runner: Runner) -> dict[str, Any]:
        setup, manifest, plans = self.setup, self.manifest, self.plans
        total = setup.total
        done_sets = [manifest.done(k) if manifest else set() for k in range(len(plans))]
        resumed = sum(len(s) for s in done_sets)
        todo: list[Task] = [
            (k, plan, block)
            for k, plan in enumerate(plans)
            for block in plan.grid.blocks()
            if block.index not in done_sets[k]
        ]
        setup.report(setup.start_event(resumed=resumed, job_dir=self.job_dir))
        config = setup.config
        with (
            aborting(self.sinks),
            GpkgWriter(
                setup.output, config.layer, setup.out_crs, setup.provenance(), config.overwrite
            ) as writer,
        ):
            self._replay(writer)
            done = resumed
            with runner(todo) as (outcomes, workers), _closing(outcomes):
                for (k, plan, block), outcome, error in outcomes:
                    done += 1
                    if outcome is not None:
                        self._accept(k, plan, block, outcome, writer)
                    else:
                        self._fail(k, plan, block, error, writer)
                    setup.report(self._progress(done, resumed, total, plan.name))
            for k in range(len(plans)):
                if self.remaining[k] > 0:  # a block never came back; close what waits on it
                    self._write(k, self.mergers[k].finish(), writer)
            moves = [(writer.stage(), writer.path)]
            moves += [
                (_staged(sink), sink.target) for k in range(len(plans)) for sink in self._sinks(k)
            ]
            commit_all(moves)
        summary = self._summary(writer.count, total, resumed, workers)
        if manifest is not None:
            manifest.set("status", "failed blocks" if self.failed else "finished")
            manifest.set("summary", summary)
        setup.report({"event": "done", "summary": summary})
        if self.failed:
            raise self._blocks_failed(summary)
        return summary

    def _replay(self, writer: GpkgWriter) -> None:
        """Merge the blocks a resumed run's manifest holds, as if they had just finished."""
        if self.manifest is None:
            return
        for k in range(len(self.plans)):
            for index, polygons, valid_pixels in self.manifest.stored(k):
                if self.outputs:
                    values = self.manifest.stored_rasters(k, index)
                    write_block_values(self._sinks(k), index, values)
                self._merge(k, polygons, valid_pixels, writer)

    def _accept(
        self, k: int, plan: RasterPlan, block: Block, outcome: BlockOutcome, writer: GpkgWriter
    ) -> None:
        if self.manifest is not None:
            self.manifest.record(
                k,
                outcome.polygons,
                outcome.valid_pixels,
                outcome.seconds,
                outcome.worker,
                outcome.rasters,
            )
        write_block_values(self._sinks(k), block.index, dict(outcome.rasters))
        self._merge(k, outcome.polygons, outcome.valid_pixels, writer)
        self.run_pixels += _src_pixels(plan, block)

    def _fail(
        self, k: int, plan: RasterPlan, block: Block, error: Exception | None, writer: GpkgWriter
    ) -> None:
        if self.fail_fast:
            raise error if error is not None else RuntimeError("block cancelled")
        name = block_name(plan.name, block)
        message = describe_error(error)
        self.failed.append(name)
        if self.manifest is not None:
            self.manifest.record_failure(k, block.index, name, message)
        self.setup.warn(f"block failed: {name}: {message}")
        self.remaining[k] -= 1
        if self.remaining[k] == 0:
            self._finish(k, writer)

    def _merge(
        self, k: int, polygons: BlockPolygons, valid_pixels: int, writer: GpkgWriter
    ) -> None:
        self.valid[k] += valid_pixels
        self.remaining[k] -= 1
        self._write(k, self.mergers[k].add(polygons), writer)
        if self.remaining[k] == 0:
            self._finish(k, writer)

    def _finish(self, k: int, writer: GpkgWriter) -> None:
        """Raster ``k`` has all its blocks: its last buildings, and its GeoTIFFs finished."""
        self._write(k, self.mergers[k].finish(), writer)
        for sink in self.sinks[k]:
            _staged(sink)

    def _sinks(self, k: int) -> list[ProbabilitySink]:
        """Raster ``k``'s GeoTIFF outputs, opened on first use."""
        if self.outputs and not self.sinks[k]:
            self.sinks[k] = open_sinks([self.plans[k]], self.outputs, len(self.plans) > 1)[0]
        return self.sinks[k]

    def _write(self, k: int, buildings: list[Any], writer: GpkgWriter) -> None:
        write_polished(buildings, self.plans[k], writer, self.options[k], self.crs[k])

    def _progress(self, done: int, resumed: int, total: int, name: str) -> dict[str, Any]:
        """The progress event after ``done`` of ``total`` blocks (``resumed`` from a manifest)."""
        elapsed = time.perf_counter() - self.started
        ran = done - resumed
        return progress_event(
            done,
            total,
            raster=name,
            mpx_per_s=round(self.run_pixels / 1e6 / elapsed, 3) if elapsed else 0.0,
            eta_s=round(elapsed / ran * (total - done), 1) if ran else 0.0,
            pending_pieces=sum(m.pending for m in self.mergers),
        )

    def _blocks_failed(self, summary: dict[str, Any]) -> BlocksFailed:
        """The one-line error for blocks that failed after retries, naming how to retry them."""
        failed = self.failed
        listed = "; ".join(failed[:3])
        if len(failed) > 3:
            listed += f" and {len(failed) - 3} more"
        rerun = (
            "rerun the same command with --overwrite to retry them"
            if self.job_dir
            else "pass --job-dir DIR to retry only them"
        )
        return BlocksFailed(
            f"{len(failed)} block(s) failed twice and are missing from {self.setup.output}: "
            f"{listed}; {rerun}",
            summary,
        )

    def _summary(self, features: int, total: int, resumed: int, workers: int) -> dict[str, Any]:
        setup = self.setup
        seconds = time.perf_counter() - self.started
        megapixels, km2 = area_done(self.plans, self.valid)
        run_fraction = self.run_pixels / (megapixels * 1e6) if megapixels else 0.0
        run_km2 = km2 * run_fraction  # valid area scales with the pixels run, to a good estimate
        for plan, v in zip(self.plans, self.valid, strict=True):
            if v == 0 and not self.failed:
                setup.warn(f"{plan.name} is entirely nodata; no buildings from it")
        return {
            "output": str(setup.output),
            "features": features,
            "blocks": total,
            "blocks_run": total - resumed - len(self.failed),
            "blocks_resumed": resumed,
            "failed_blocks": list(self.failed),
            "seconds": round(seconds, 3),
            "megapixels": round(megapixels, 3),
            "mpx_per_s": round(self.run_pixels / 1e6 / seconds, 3) if seconds else None,
            "km2": round(km2, 6),
            "km2_per_h": round(run_km2 / seconds * 3600, 3) if seconds else None,
            "rasters": [p.record() for p in self.plans],
            "model_sha256": setup.model_sha256,
            "warnings": setup.warnings,
            "workers": workers,
            "job_dir": self.job_dir,
        }


@contextlib.contextmanager
def _closing(outcomes: Outcomes) -> Iterator[None]:
    """Close a runner's generator however the loop ends (its threads and datasets with it)."""
    try:
        yield
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:
            close()


def _src_pixels(plan: RasterPlan, block: Block) -> float:
    """Raster pixels a block of the working grid stands for."""
    scale = plan.src_width * plan.src_height / (plan.width * plan.height)
    return block.width * block.height * scale


def _staged(sink: ProbabilitySink) -> Path:
    """The sink's finished temporary file (finished now unless it already is)."""
    return sink.staged if sink.staged is not None else sink.stage()


__all__ = ["Runner", "orchestrate"]
