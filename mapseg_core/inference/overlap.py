"""The three stages of consecutive blocks, overlapped: read k+1, predict k, finish k-1.

Both in-process block runners use it: :func:`mapseg_core.inference.engine.tile_infer`
(each block's polygons merged and written as it finishes) and the job-directory
runner of :mod:`mapseg_core.distributed.scheduler` (each block's polygons stored
before they are merged). A reader thread reads block k+1 while the calling
thread predicts block k (TensorFlow and ONNX Runtime release the GIL, and
waiting on the disk costs no CPU), and a finisher thread vectorizes block k-1.
One block per stage: memory stays at three blocks whatever the raster size.
``read`` is only ever called from the reader thread and ``finish`` only from
the finisher thread, one call at a time, so a dataset or a merger each of them
owns needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from mapseg_core.inference.blocks import Prepared
from mapseg_core.inference.windows import Block

T = TypeVar("T")


def overlapped(
    blocks: Sequence[Block],
    read: Callable[[Block], Prepared],
    predict: Callable[[Prepared], NDArray[np.float32]],
    finish: Callable[[Prepared, NDArray[np.float32]], T],
) -> Generator[tuple[Block, T | None, Exception | None], None, None]:
    """``(block, finish's result, None)`` for every block, in block order.

    A block whose read, prediction or finish raises yields ``(block, None,
    exception)`` and the others go on; the caller decides whether that ends the
    run (tile-infer) or is retried and recorded (a job). Close the iterator
    (``contextlib.closing``) before closing what ``read`` reads: closing waits
    for both threads.
    """
    if not blocks:
        return

    def collect(block: Block, future: Future[T]) -> tuple[Block, T | None, Exception | None]:
        try:
            return block, future.result(), None
        except Exception as exc:
            return block, None, exc

    reader = ThreadPoolExecutor(1, thread_name_prefix="mapseg-read")
    finisher = ThreadPoolExecutor(1, thread_name_prefix="mapseg-vectorize")
    try:
        next_read: Future[Prepared] | None = reader.submit(read, blocks[0])
        pending: tuple[Block, Future[T]] | None = None
        for k, block in enumerate(blocks):
            assert next_read is not None
            this_read = next_read
            next_read = reader.submit(read, blocks[k + 1]) if k + 1 < len(blocks) else None
            failed: Exception | None = None
            try:
                prepared = this_read.result()
                prob = predict(prepared)
            except Exception as exc:  # this block only; the caller decides
                failed = exc
            if pending is not None:
                yield collect(*pending)
                pending = None
            if failed is not None:
                yield block, None, failed
            else:
                pending = (block, finisher.submit(finish, prepared, prob))
        if pending is not None:
            yield collect(*pending)
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        finisher.shutdown(wait=True, cancel_futures=True)
