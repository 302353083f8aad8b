"""The in-process block runner, and what every block runner yields.

A block runner turns the blocks still to do into ``(task, outcome, error)``
in completion order; the orchestrator (:mod:`mapseg_core.inference.orchestrator`)
merges, records and writes them, whichever runner produced them. Two exist:
:func:`local_outcomes` here (this process, read/predict/vectorize overlapped,
used by plain tile-infer and by job directories without a cluster) and
:func:`mapseg_core.distributed.runners.dask_outcomes` (one Dask task per block).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from typing import Any

import numpy as np
import rasterio.errors
from numpy.typing import NDArray

from mapseg_core.errors import RasterError
from mapseg_core.inference.blocks import (
    BlockResult,
    Prepared,
    WindowCache,
    finish_block,
    predict_block,
    prepare_block,
    process_block,
    separation_ring,
)
from mapseg_core.inference.outputs import sink_values
from mapseg_core.inference.overlap import overlapped
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.reader import open_working
from mapseg_core.inference.windows import Block
from mapseg_core.vectorize.polygons import BlockPolygons

#: One unit of work: raster number, its plan, one of its blocks.
Task = tuple[int, RasterPlan, Block]

#: What a runner yields per block: the outcome, or None and the error.
Outcomes = Iterator[tuple[Task, "BlockOutcome | None", "Exception | None"]]


@dataclass(frozen=True)
class BlockOutcome:
    """What a runner sends back for one block: polygons, and pixels only for raster outputs."""

    # Complete buildings and border pieces of the block.
    polygons: BlockPolygons
    # Pixels of the block holding data.
    valid_pixels: int
    # Seconds spent on the block (model load excluded).
    seconds: float
    # Who ran it (host:pid, or local:pid).
    worker: str
    # (kind, uint8 block values) of each probability/mask GeoTIFF the run writes
    # (:func:`~mapseg_core.inference.outputs.sink_values`); empty without them.
    rasters: tuple[tuple[str, NDArray[np.uint8]], ...] = ()


def outcome_of(
    result: BlockResult,
    plan: RasterPlan,
    kinds: tuple[str, ...],
    seconds: float,
    worker: str,
) -> BlockOutcome:
    """A block's result as the outcome a runner yields (raster values for ``kinds``)."""
    rasters: tuple[tuple[str, NDArray[np.uint8]], ...] = ()
    if kinds:
        assert result.probability is not None
        rasters = tuple((k, sink_values(k, result.probability, plan)) for k in kinds)
    return BlockOutcome(result.polygons, result.valid_pixels, seconds, worker, rasters)


def describe_error(exc: BaseException | None) -> str:
    """One line for a failed block: the exception's type and first line."""
    if exc is None:
        return "cancelled"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_block(ds: Any, plan: RasterPlan, block: Block, any_size: bool) -> Prepared:
    """:func:`prepare_block`, with GDAL read errors as a one-line :class:`RasterError`."""
    try:
        return prepare_block(ds, plan, block, any_size)
    except rasterio.errors.RasterioIOError as exc:
        raise RasterError(
            f"cannot read {plan.name} at block {block.index}: "
            f"{str(exc).splitlines()[0]}; check the file is complete"
        ) from None


def local_outcomes(
    todo: list[Task],
    predictor: Predictor,
    retries: int,
    raster_kinds: tuple[str, ...] = (),
) -> Outcomes:
    """Blocks run in this process, raster by raster, in order, overlapped.

    Read, predict and vectorize of consecutive blocks run in threads
    (:func:`~mapseg_core.inference.overlap.overlapped`), so the caller's merge
    and writes overlap them too. A block that fails is run again ``retries``
    times on its own (a fresh dataset: the reader thread owns the other)
    before it is yielded with its error. ``raster_kinds``: the probability/mask
    GeoTIFFs the run writes (their block values come with each outcome).
    """
    keep = bool(raster_kinds)
    worker = f"local:{os.getpid()}"

    def finish(plan: RasterPlan, prepared: Prepared, prob: NDArray[np.float32]) -> BlockOutcome:
        result = finish_block(plan, prepared, prob, keep)
        return outcome_of(result, plan, raster_kinds, 0.0, worker)

    for _, group in groupby(todo, key=lambda task: task[0]):
        tasks = list(group)
        plan = tasks[0][1]
        # Blocks of one raster run in order here, so the windows two blocks share (the
        # separation ring) are predicted once.
        ring = separation_ring(plan, predictor.any_size)
        cache = WindowCache(ring) if ring != (0, 0) and not predictor.any_size else None
        with open_working(plan) as ds:
            stream = overlapped(
                [block for _, _, block in tasks],
                partial(read_block, ds, plan, any_size=predictor.any_size),
                partial(predict_block, plan, predictor=predictor, cache=cache),
                partial(finish, plan),
            )
            with contextlib.closing(stream):
                last = time.perf_counter()
                for task, (_, outcome, error) in zip(tasks, stream, strict=True):
                    if outcome is None and retries:
                        outcome, error = _retried(
                            task, predictor, retries, error, raster_kinds, worker
                        )
                    elif outcome is not None:  # the block's share of the pipeline's wall time
                        outcome = dataclasses.replace(outcome, seconds=time.perf_counter() - last)
                    yield task, outcome, error
                    last = time.perf_counter()


def _retried(
    task: Task,
    predictor: Predictor,
    retries: int,
    error: Exception | None,
    kinds: tuple[str, ...],
    worker: str,
) -> tuple[BlockOutcome | None, Exception | None]:
    """A failed block run again up to ``retries`` times; its outcome, or the last error."""
    _, plan, block = task
    for _ in range(retries):
        start = time.perf_counter()
        try:
            result = process_block(plan, block, predictor, keep_probability=bool(kinds))
        except Exception as exc:  # a bad block must not stop the others
            error = exc
            continue
        seconds = time.perf_counter() - start
        return outcome_of(result, plan, kinds, seconds, worker), None
    return None, error


__all__ = [
    "BlockOutcome",
    "Outcomes",
    "Task",
    "describe_error",
    "local_outcomes",
    "outcome_of",
    "read_block",
]
