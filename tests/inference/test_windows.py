"""The block and window grid covers every pixel exactly once, whatever the sizes."""

from __future__ import annotations

import numpy as np
import pytest

from mapseg_core.errors import ConfigError
from mapseg_core.inference.windows import make_grid


@pytest.mark.parametrize(
    ("height", "width", "tile", "margin", "block", "align"),
    [(100, 130, (32, 32), 4, 50, 1), (64, 64, (64, 64), 8, 64, 32), (7, 300, (20, 30), 2, 33, 1)],
)
def test_cores_tile_the_raster_exactly_once(height, width, tile, margin, block, align):
    grid = make_grid(height, width, tile, margin, block, align)
    hits = np.zeros((height, width), dtype=int)
    for b in grid.blocks():
        assert b.row_off % grid.block[0] == 0 and b.col_off % grid.block[1] == 0
        bw = grid.windows_of(b)
        (top, bottom), (left, right) = bw.pad
        padded_h = bw.read.height + top + bottom
        padded_w = bw.read.width + left + right
        for r, c in bw.offsets:
            assert r + tile[0] <= padded_h and c + tile[1] <= padded_w
            r0 = b.row_off + r  # core top in raster rows: window top + margin - margin
            c0 = b.col_off + c
            hits[r0 : r0 + grid.core[0], c0 : c0 + grid.core[1]] += 1
    assert (hits == 1).all()


def test_block_is_whole_cores_and_core_is_aligned():
    grid = make_grid(1000, 1000, (300, 300), 32, 1000, 32)
    assert grid.core == (224, 224)  # 300 - 64 = 236, rounded down to a multiple of 32
    assert grid.block == (1120, 1120)
    assert len(grid) == 1


def test_read_window_is_clipped_and_padded_at_the_edges():
    grid = make_grid(50, 50, (20, 20), 5, 10, 1)
    first = grid.windows_of(grid.block_at(0, 0))
    assert (first.read.row_off, first.read.col_off) == (0, 0)
    assert first.pad[0][0] == 5 and first.pad[1][0] == 5


def test_overlap_leaving_no_core_is_refused():
    with pytest.raises(ConfigError, match="--overlap below 32"):
        make_grid(100, 100, (64, 64), 32, 100)
