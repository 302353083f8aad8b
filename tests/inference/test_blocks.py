"""WindowCache: windows are kept exactly as long as a later block may need them."""

from __future__ import annotations

import numpy as np

from mapseg_core.inference.blocks import WindowCache
from mapseg_core.inference.windows import Block


def _core(value: float) -> np.ndarray:
    return np.full((4, 4, 2), value, np.float32)


def test_done_keeps_what_the_next_blocks_can_reach():
    cache = WindowCache(ring=(24, 24))
    # Block (1, 1) of 48 px blocks on 24 px cores: its area's windows start at 24..96.
    keys = [(r, c) for r in range(24, 120, 24) for c in range(24, 120, 24)]
    for key in keys:
        cache.put(key, _core(1.0))
    cache.done(Block((1, 1), 48, 48, 48, 48))
    kept = {k for k in keys if cache.get(k) is not None}
    # Later block rows reach up to row 96 - 24 = 72; the next block in the row reaches
    # columns from 72, rows from 24.
    assert kept == {k for k in keys if k[0] >= 72 or k[1] >= 72}
    assert cache.get((24, 24)) is None and cache.get((72, 24)) is not None


def test_at_most_max_bytes_are_kept_oldest_first_out():
    cache = WindowCache(ring=(24, 24), max_bytes=3 * _core(0).nbytes)
    for k in range(5):
        cache.put((0, 24 * k), _core(k))
    assert [cache.get((0, 24 * k)) is None for k in range(5)] == [True, True, False, False, False]
    np.testing.assert_array_equal(cache.get((0, 96)), _core(4))
