"""The overlapped stages: block order kept, failures per block, one thread per stage."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

from mapseg_core.inference.overlap import DEPTH, overlapped
from mapseg_core.inference.windows import Block


def _blocks(n: int) -> list[Block]:
    return [Block((0, k), 0, 10 * k, 10, 10) for k in range(n)]


def test_results_come_in_block_order_and_a_failing_block_does_not_stop_the_others():
    threads: dict[str, set[str]] = {"read": set(), "predict": set(), "finish": set()}

    def read(block):
        threads["read"].add(threading.current_thread().name)
        if block.index == (0, 2):
            raise OSError("truncated")
        return block

    def predict(prepared):
        threads["predict"].add(threading.current_thread().name)
        if prepared.index == (0, 4):
            raise ValueError("model")
        return np.full((2, 2), prepared.index[1], np.float32)

    def finish(prepared, prob):
        threads["finish"].add(threading.current_thread().name)
        if prepared.index == (0, 5):
            raise RuntimeError("vectorize")
        return int(prob[0, 0]) * 10

    got = list(overlapped(_blocks(7), read, predict, finish))
    assert [b.index[1] for b, _, _ in got] == list(range(7))
    assert [r for _, r, _ in got] == [0, 10, None, 30, None, None, 60]
    errors = {b.index[1]: type(e).__name__ for b, _, e in got if e is not None}
    assert errors == {2: "OSError", 4: "ValueError", 5: "RuntimeError"}
    # one thread per stage, three different ones, none of them the caller's (which
    # merges and writes meanwhile)
    assert [len(names) for names in threads.values()] == [1, 1, 1]
    used = threads["read"] | threads["predict"] | threads["finish"]
    assert len(used) == 3 and threading.current_thread().name not in used


def test_closing_early_waits_for_the_threads_and_reads_ahead_a_bounded_amount():
    started = []

    def read(block):
        started.append(block.index)
        return block

    stream = overlapped(_blocks(50), read, lambda p: np.zeros(1, np.float32), lambda p, q: 1)
    with contextlib.closing(stream):
        next(stream)
        time.sleep(0.2)  # room for the threads to run ahead if they were not bounded
        assert len(started) == DEPTH + 1  # the block handed out and DEPTH in flight
    assert not [t for t in threading.enumerate() if t.name.startswith("mapseg-")]


def test_no_blocks_no_threads():
    assert list(overlapped([], lambda b: b, lambda p: p, lambda p, q: q)) == []
