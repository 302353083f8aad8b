"""The Dask block runner: one task per block, a bounded number in flight.

Like the in-process runner (:func:`mapseg_core.inference.runner.local_outcomes`)
it turns the blocks still to do into ``(task, outcome, error)`` in completion
order; the orchestrator (:func:`mapseg_core.inference.orchestrator.orchestrate`)
merges, records and writes them, whichever runner produced them.
"""

from __future__ import annotations

import contextlib
import uuid
from itertools import islice
from typing import Any

from mapseg_core.distributed.cluster import WorkerSpec, run_block_task
from mapseg_core.inference.runner import Outcomes, Task


def dask_outcomes(
    client: Any, todo: list[Task], spec: WorkerSpec, retries: int, inflight: int
) -> Outcomes:
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
                error = result if status == "error" and isinstance(result, Exception) else None
                yield task, None, error
            following = next(tasks, None)
            if following is not None:
                submit(following, 0)
    finally:
        left = [future for _, _, future in pending.values()]
        if left:
            with contextlib.suppress(Exception):
                client.cancel(left, force=True)
