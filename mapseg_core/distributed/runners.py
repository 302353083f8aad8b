"""Where a job's blocks run: in this process (with tile-infer's overlap) or as Dask tasks.

Each runner turns the list of blocks still to do into ``(task, outcome, error)``
in completion order; :class:`mapseg_core.distributed.scheduler._Job` merges,
records and writes them, whichever runner produced them.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from functools import partial
from itertools import groupby, islice
from typing import Any

from mapseg_core.distributed.cluster import BlockOutcome, WorkerSpec, outcome_of, run_block_task
from mapseg_core.inference.blocks import (
    BlockResult,
    finish_block,
    predict_block,
    prepare_block,
    process_block,
)
from mapseg_core.inference.overlap import overlapped
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.reader import open_working
from mapseg_core.inference.windows import Block
from mapseg_core.models.artifact import load_artifact

#: One unit of work: raster number, its plan, one of its blocks.
Task = tuple[int, RasterPlan, Block]


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "cancelled"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def local_outcomes(
    todo: list[Task],
    model: str,
    model_sha256: str,
    batch_size: int,
    retries: int,
    raster_kinds: tuple[str, ...] = (),
) -> Iterator[tuple[Task, BlockOutcome | None, str | None]]:
    """Blocks run in this process, raster by raster, in order, with tile-infer's overlap.

    Read, predict and vectorize of consecutive blocks overlap
    (:func:`~mapseg_core.inference.overlap.overlapped`); a block that fails is
    run again ``retries`` times on its own (a fresh dataset: the reader thread
    owns the other) before it is reported as failed. ``raster_kinds``: the
    probability/mask GeoTIFFs the job writes (their block values come with
    each outcome).
    """
    keep = bool(raster_kinds)
    loaded, _ = load_artifact(model)
    predictor = Predictor(loaded, batch_size)
    worker = f"local:{os.getpid()}"
    for _, group in groupby(todo, key=lambda task: task[0]):
        tasks = list(group)
        plan = tasks[0][1]
        with open_working(plan) as ds:
            stream = overlapped(
                [block for _, _, block in tasks],
                partial(prepare_block, ds, plan, any_size=predictor.any_size),
                partial(predict_block, plan, predictor=predictor),
                partial(finish_block, plan, keep_probability=keep),
            )
            with contextlib.closing(stream):
                last = time.perf_counter()
                for task, (_, result, exc) in zip(tasks, stream, strict=True):
                    error = None if exc is None else _describe(exc)
                    if result is None:
                        result, error = _retried(task, predictor, retries, error, keep)
                    now = time.perf_counter()
                    if result is None:
                        yield task, None, error
                    else:
                        yield task, outcome_of(result, plan, raster_kinds, now - last, worker), None
                    last = time.perf_counter()


def _retried(
    task: Task, predictor: Predictor, retries: int, error: str | None, keep: bool
) -> tuple[BlockResult | None, str | None]:
    """A failed block run again up to ``retries`` times; its result, or the last error."""
    _, plan, block = task
    for _ in range(retries):
        try:
            return process_block(plan, block, predictor, keep_probability=keep), None
        except Exception as exc:  # a bad block must not stop the others
            error = _describe(exc)
    return None, error


def dask_outcomes(
    client: Any, todo: list[Task], spec: WorkerSpec, retries: int, inflight: int
) -> Iterator[tuple[Task, BlockOutcome | None, str | None]]:
    """Blocks as Dask tasks, ``inflight`` at a time, yielded as they complete.

    A task cancelled under us (``client.restart()``, a scheduler that lost
    it) is resubmitted up to three times; one that errs after Dask's retries
    is yielded with its error.
    """
    from distributed import as_completed

    tasks = iter(todo)
    pending: dict[str, tuple[Task, int, Any]] = {}
    # with_results: results are fetched from the workers as tasks finish, not one
    # round trip per block when the loop asks for them.
    futures = as_completed(with_results=True, raise_errors=False)

    def submit(task: Task, attempt: int) -> None:
        k, plan, block = task
        i, j = block.index
        future = client.submit(
            run_block_task,
            plan,
            block,
            spec,
            key=f"mapseg-block-{k}-{i}-{j}-{uuid.uuid4().hex[:12]}",
            retries=retries,
            pure=False,
        )
        pending[future.key] = (task, attempt, future)
        futures.add(future)

    for task in islice(tasks, inflight):
        submit(task, 0)
    try:
        for future, result in futures:
            task, attempt, _ = pending.pop(future.key)
            status = future.status
            future.release()
            if status == "finished":
                yield task, result, None
            elif status != "error" and attempt < 3:
                submit(task, attempt + 1)
                continue
            else:
                yield task, None, _describe(result if status == "error" else None)
            following = next(tasks, None)
            if following is not None:
                submit(following, 0)
    finally:
        left = [future for _, _, future in pending.values()]
        if left:
            with contextlib.suppress(Exception):
                client.cancel(left, force=True)
