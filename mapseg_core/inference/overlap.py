"""The stages of consecutive blocks, overlapped: read, predict and vectorize in threads.

The in-process block runner (:func:`mapseg_core.inference.runner.local_outcomes`)
uses it for every single-machine run, plain tile-infer and job directories
alike. A reader thread reads ahead, a model thread predicts (TensorFlow and
ONNX Runtime release the GIL, and waiting on the disk costs no CPU), a
finisher thread vectorizes, and the caller merges and writes what comes out:
while the caller handles block k, the threads work on blocks k+1 .. k+``depth``.
``depth`` blocks in flight bound the memory whatever the raster size. Each
stage runs in one thread, one call at a time, so what a stage owns (the
reader's dataset) needs no lock, and the caller's merger and writers are only
ever touched by the caller.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from mapseg_core.inference.blocks import Prepared
from mapseg_core.inference.windows import Block

T = TypeVar("T")

#: Blocks in flight: one being read, one predicted, one vectorized, on average.
DEPTH = 3


def overlapped(
    blocks: Sequence[Block],
    read: Callable[[Block], Prepared],
    predict: Callable[[Prepared], NDArray[np.float32]],
    finish: Callable[[Prepared, NDArray[np.float32]], T],
    depth: int = DEPTH,
) -> Generator[tuple[Block, T | None, Exception | None], None, None]:
    """``(block, finish's result, None)`` for every block, in block order.

    A block whose read, prediction or finish raises yields ``(block, None,
    exception)`` and the others go on; the caller decides whether that ends the
    run (tile-infer) or is retried and recorded (a job). Close the iterator
    (``contextlib.closing``) before closing what ``read`` reads: closing waits
    for the threads.
    """
    if not blocks:
        return
    reader = ThreadPoolExecutor(1, thread_name_prefix="mapseg-read")
    model = ThreadPoolExecutor(1, thread_name_prefix="mapseg-predict")
    finisher = ThreadPoolExecutor(1, thread_name_prefix="mapseg-vectorize")

    def start(block: Block) -> Future[T]:
        # Each stage waits on the one before in its own thread; one thread per stage
        # keeps the blocks in order.
        prepared = reader.submit(read, block)
        prob = model.submit(lambda: predict(prepared.result()))
        return finisher.submit(lambda: finish(prepared.result(), prob.result()))

    in_flight: collections.deque[tuple[Block, Future[T]]] = collections.deque()
    following = iter(blocks)
    try:
        for block in following:
            in_flight.append((block, start(block)))
            if len(in_flight) >= depth:
                break
        while in_flight:
            block, future = in_flight.popleft()
            try:
                outcome: tuple[Block, T | None, Exception | None] = (block, future.result(), None)
            except Exception as exc:  # this block only; the caller decides
                outcome = (block, None, exc)
            upcoming = next(following, None)
            if upcoming is not None:
                in_flight.append((upcoming, start(upcoming)))
            yield outcome
    finally:
        for executor in (reader, model, finisher):
            executor.shutdown(wait=False, cancel_futures=True)
        for executor in (reader, model, finisher):
            executor.shutdown(wait=True)


__all__ = ["DEPTH", "overlapped"]
