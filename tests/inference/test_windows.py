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


@pytest.mark.parametrize(
    ("height", "width", "tile", "margin", "block", "align", "budget"),
    [
        (100, 130, (32, 32), 4, 50, 1, 3 * 32 * 32),
        (700, 500, (64, 64), 8, 300, 32, 4 * 64 * 64),
        (4096, 4096, (512, 512), 16, 2048, 32, 4 * 512 * 512),
        (7, 300, (20, 30), 2, 33, 1, 1),
    ],
)
def test_spans_cover_each_block_once_and_fit_in_the_padded_block(
    height, width, tile, margin, block, align, budget
):
    grid = make_grid(height, width, tile, margin, block, align)
    extra = (tile[0] - grid.core[0], tile[1] - grid.core[1])
    hits = np.zeros((height + 64, width + 64), dtype=int)
    for b in grid.blocks():
        bw = grid.windows_of(b)
        (top, bottom), (left, right) = bw.pad
        padded = (bw.read.height + top + bottom, bw.read.width + left + right)
        for s in grid.spans_of(b, budget):
            assert s.row + s.height + extra[0] <= padded[0]
            assert s.col + s.width + extra[1] <= padded[1]
            if budget > tile[0] * tile[1]:
                assert (s.height + extra[0]) * (s.width + extra[1]) <= budget
            r0, c0 = b.row_off + s.row, b.col_off + s.col
            hits[r0 : r0 + s.height, c0 : c0 + s.width] += 1
            assert s.row % grid.align == 0 or grid.core[0] % grid.align
    assert (hits[:height, :width] == 1).all()
    assert hits.max() == 1


def test_spans_predict_fewer_pixels_than_windows():
    grid = make_grid(4096, 4096, (512, 512), 16, 2048, 32)
    spans = sum(
        (s.height + 32) * (s.width + 32)
        for b in grid.blocks()
        for s in grid.spans_of(b, 4 * 512**2)
    )
    windows = sum(len(grid.windows_of(b).offsets) for b in grid.blocks()) * 512**2
    assert windows / 4096**2 == pytest.approx(81 / 64) and spans / 4096**2 < 1.08
