"""Centre-crop stitching puts every window's core back where it came from."""

from __future__ import annotations

import numpy as np

from mapseg_core.inference.stitch import assemble_cores, pad_block, split_windows, to_probability
from mapseg_core.inference.windows import make_grid


def test_split_then_assemble_is_the_identity_on_the_block():
    grid = make_grid(45, 70, (16, 16), 3, 1000, 1)
    block = grid.block_at(0, 0)
    bw = grid.windows_of(block)
    rows, cols = np.mgrid[0:45, 0:70]
    image = (rows * 1000 + cols).astype(np.float32)[..., None]
    read = image[
        bw.read.row_off : bw.read.row_off + bw.read.height,
        bw.read.col_off : bw.read.col_off + bw.read.width,
    ]
    padded, valid = pad_block(read, np.ones(read.shape[:2], bool), bw.pad)
    windows = split_windows(padded, bw.offsets, grid.tile)
    out = assemble_cores(windows[..., 0], bw.shape, grid.margin, grid.core, (45, 70))
    np.testing.assert_array_equal(out, image[..., 0])
    assert not valid[0, 0] and valid[3, 3]


def test_to_probability():
    raw = np.array([-np.inf, 0.0, 100.0], dtype=np.float32)
    np.testing.assert_allclose(to_probability(raw, "logits"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(to_probability(np.array([-1.0, 2.0]), "probabilities"), [0, 1])
