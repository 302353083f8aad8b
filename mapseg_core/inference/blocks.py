"""One block: read -> normalize -> pad -> predict -> stitch -> threshold -> polygons.

:func:`run_block` is the unit of work every block runner executes (the
in-process runner of :mod:`~mapseg_core.inference.runner`, Dask workers); its
three stages (:func:`prepare_block`, :func:`predict_block`, :func:`finish_block`)
are what the in-process runner overlaps across consecutive blocks.
A block's result depends on nothing but the raster, the plan and the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mapseg_core.inference.normalize import apply_scaling
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.reader import open_working, read_pixels
from mapseg_core.inference.stitch import assemble_cores, pad_block, split_windows
from mapseg_core.inference.windows import Block
from mapseg_core.vectorize.pipeline import block_buildings
from mapseg_core.vectorize.polygons import BlockPolygons
from mapseg_core.vectorize.separate import SEPARATING, halo


@dataclass(frozen=True)
class BlockResult:
    """What one block produces."""

    # The block.
    block: Block
    # Its polygons: complete buildings and border pieces.
    polygons: BlockPolygons
    # Probabilities of the block's pixels (kept only when a probability/mask file is written).
    probability: NDArray[np.float32] | None
    # Pixels of the block that hold data.
    valid_pixels: int


@dataclass
class Prepared:
    """A block read and ready for the model (the first stage of :func:`run_block`)."""

    block: Block
    # What is predicted: the block, or the block and the halo its separation needs.
    area: Block
    # Padded, normalized block (rows, cols, bands), or None when it has no valid pixel.
    padded: NDArray[np.float32] | None
    # Validity of the padded block's pixels.
    padded_valid: NDArray[np.bool_] | None
    # Validity of the block's own pixels.
    inner: NDArray[np.bool_]
    # Pixels of the block that hold data.
    valid_pixels: int


def separation_area(plan: RasterPlan, block: Block, any_size: bool) -> Block:
    """The block plus the halo its separation needs (the block itself without separation).

    Separation labels a block's pixels from the probabilities within
    :func:`~mapseg_core.vectorize.separate.halo` pixels around it, so those
    pixels are predicted too, and must get the values the neighbouring block
    computes for them. Model-sized windows sit on the core grid, so the area
    grows by whole cores: the halo pixels are predicted by the very windows the
    neighbour runs. Spans keep the network's phase when they move by multiples
    of ``align``, so the area grows by the halo rounded up to ``align`` (a few
    percent more pixels on 1024 px blocks).
    """
    if plan.separation is None:
        return block
    need = halo(plan.separation)
    grid = plan.grid
    units = [
        grid.core[a] if not any_size else (grid.align if grid.core[a] % grid.align == 0 else 1)
        for a in (0, 1)
    ]
    ext = [-(-need // u) * u for u in units]
    r0 = max(0, block.row_off - ext[0])
    c0 = max(0, block.col_off - ext[1])
    r1 = min(grid.height, block.row_off + block.height + ext[0])
    c1 = min(grid.width, block.col_off + block.width + ext[1])
    return Block(block.index, r0, c0, r1 - r0, c1 - c0)


def prepare_block(ds: Any, plan: RasterPlan, block: Block, any_size: bool = True) -> Prepared:
    """Read, normalize and pad one block (I/O; the only stage that touches ``ds``)."""
    grid = plan.grid
    area = separation_area(plan, block, any_size)
    bw = grid.windows_of(area)
    data, valid = read_pixels(ds, plan, bw.read)
    m = grid.margin
    (top, _), (left, _) = bw.pad
    inner = valid[m - top : m - top + area.height, m - left : m - left + area.width]
    r, c = block.row_off - area.row_off, block.col_off - area.col_off
    n_valid = int(inner[r : r + block.height, c : c + block.width].sum())
    if n_valid == 0:
        return Prepared(block, area, None, None, inner, 0)
    x = apply_scaling(data, plan.scaling)
    x[~valid] = plan.scaling.out_min
    padded, padded_valid = pad_block(x, valid, bw.pad)
    return Prepared(block, area, padded, padded_valid, inner, n_valid)


def predict_block(
    plan: RasterPlan, prepared: Prepared, predictor: Predictor
) -> NDArray[np.float32]:
    """Probabilities ``(rows, cols, channels)`` of the predicted area (0 outside valid data)."""
    grid = plan.grid
    block = prepared.area
    shape = (block.height, block.width)
    channels = len(plan.channels)
    if prepared.padded is None or prepared.padded_valid is None:
        return np.zeros((*shape, channels), dtype=np.float32)
    padded, padded_valid = prepared.padded, prepared.padded_valid
    m = grid.margin
    kind: Literal["logits", "probabilities"] = (
        "logits" if plan.output == "logits" else "probabilities"
    )
    if predictor.any_size:
        prob = np.zeros((*shape, channels), dtype=np.float32)
        extra = (grid.tile[0] - grid.core[0], grid.tile[1] - grid.core[1])
        budget = max(1, predictor.batch_size) * grid.tile[0] * grid.tile[1]
        for span in grid.spans_of(block, budget):
            r, c = span.row, span.col
            h = min(span.height, shape[0] - r)
            w = min(span.width, shape[1] - c)
            if not padded_valid[r + m : r + m + h, c + m : c + m + w].any():
                continue
            x = padded[r : r + span.height + extra[0], c : c + span.width + extra[1]]
            p = predictor.probabilities(np.ascontiguousarray(x[None]), kind, plan.tta)
            prob[r : r + h, c : c + w] = p[0, m : m + h, m : m + w, :channels]
    else:
        bw = grid.windows_of(block)
        windows = split_windows(padded, bw.offsets, grid.tile)
        probs = np.zeros((*windows.shape[:3], channels), np.float32)
        core_valid = np.array(
            [
                padded_valid[r + m : r + m + grid.core[0], c + m : c + m + grid.core[1]].any()
                for r, c in bw.offsets
            ]
        )
        if core_valid.any():
            probs[core_valid] = predictor.probabilities(windows[core_valid], kind, plan.tta)[
                ..., :channels
            ]
        prob = assemble_cores(probs, bw.shape, m, grid.core, shape)
        prob = prob.reshape(*shape, channels)
    prob[~prepared.inner] = 0.0
    return prob


def finish_block(
    plan: RasterPlan,
    prepared: Prepared,
    prob: NDArray[np.float32],
    keep_probability: bool,
) -> BlockResult:
    """Threshold, separate and vectorize one predicted block (pure CPU, no model, no I/O).

    ``prob`` covers ``prepared.area``: the block, plus the separation halo when
    buildings are separated (see :func:`separation_area`).
    """
    block, area = prepared.block, prepared.area
    r, c = block.row_off - area.row_off, block.col_off - area.col_off
    separators = None
    if plan.separation is not None:
        picked = [k for k, name in enumerate(plan.channels) if name in SEPARATING]
        separators = prob[..., picked]
    polygons = block_buildings(
        prob[..., 0],
        plan.threshold,
        block.index,
        (block.row_off, block.col_off),
        plan.grid.n_blocks,
        valid=prepared.inner,
        separators=separators,
        separation=plan.separation,
        core=(r, c, block.height, block.width),
    )
    building = np.ascontiguousarray(prob[r : r + block.height, c : c + block.width, 0])
    return BlockResult(
        block, polygons, building if keep_probability else None, prepared.valid_pixels
    )


def run_block(
    ds: Any, plan: RasterPlan, block: Block, predictor: Predictor, keep_probability: bool = False
) -> BlockResult:
    """Predict and vectorize one block of an open (working) dataset.

    This is the unit of work a Dask worker runs: its inputs are an open
    dataset (see :func:`process_block` for the path-based form), the raster's
    plan, the block, and a loaded model; its output does not depend on any
    other block, and :class:`BorderMerger` accepts the results in any order.
    Its three stages (read, predict, vectorize) are what the in-process runner
    overlaps across consecutive blocks.
    """
    prepared = prepare_block(ds, plan, block, predictor.any_size)
    prob = predict_block(plan, prepared, predictor)
    return finish_block(plan, prepared, prob, keep_probability)


def process_block(
    plan: RasterPlan, block: Block, predictor: Predictor, keep_probability: bool = False
) -> BlockResult:
    """:func:`run_block` from the raster path (opens the file; for distributed workers)."""
    with open_working(plan) as ds:
        return run_block(ds, plan, block, predictor, keep_probability)


__all__ = [
    "BlockResult",
    "Prepared",
    "finish_block",
    "predict_block",
    "prepare_block",
    "process_block",
    "run_block",
    "separation_area",
]
