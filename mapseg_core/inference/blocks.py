"""One block: read -> normalize -> pad -> predict -> stitch -> threshold -> polygons.

:func:`run_block` is the unit of work every block runner executes (the
in-process runner of :mod:`~mapseg_core.inference.runner`, Dask workers); its
three stages (:func:`prepare_block`, :func:`predict_block`, :func:`finish_block`)
are what the in-process runner overlaps across consecutive blocks.
A block's result depends on nothing but the raster, the plan and the model.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from mapseg_core.inference.normalize import apply_scaling
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.reader import open_working, read_pixels
from mapseg_core.inference.stitch import assemble_cores, pad_block, split_windows
from mapseg_core.inference.windows import Block, WindowGrid
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
    neighbour runs (:class:`WindowCache` spares running them twice in one
    process). Spans keep the network's phase when they move by multiples
    of ``align``, so the area grows by the halo rounded up to ``align`` (a few
    percent more pixels on 1024 px blocks).
    """
    ext = separation_ring(plan, any_size)
    if ext == (0, 0):
        return block
    grid = plan.grid
    r0 = max(0, block.row_off - ext[0])
    c0 = max(0, block.col_off - ext[1])
    r1 = min(grid.height, block.row_off + block.height + ext[0])
    c1 = min(grid.width, block.col_off + block.width + ext[1])
    return Block(block.index, r0, c0, r1 - r0, c1 - c0)


def separation_ring(plan: RasterPlan, any_size: bool) -> tuple[int, int]:
    """Rows and columns :func:`separation_area` adds on each side of a block ((0, 0) without)."""
    if plan.separation is None:
        return (0, 0)
    need = halo(plan.separation)
    grid = plan.grid
    units = [
        grid.core[a] if not any_size else (grid.align if grid.core[a] % grid.align == 0 else 1)
        for a in (0, 1)
    ]
    return (-(-need // units[0]) * units[0], -(-need // units[1]) * units[1])


class WindowCache:
    """Model-window predictions a later block of the same raster will need again.

    With separation, a block's area reaches one ring of windows into its
    neighbours (:func:`separation_area`), so each window near a block border
    is predicted by two to four blocks: 1.78x the windows on 1024 px blocks of
    192 px cores. The in-process runner predicts blocks row by row, so it can
    keep each window's probabilities (its core only) from the block that ran
    it first and hand them to the blocks after: every window is then run once.
    After each block, windows no later block's area reaches are dropped (a
    block row's last two window rows remain, across the raster), and never
    more than ``max_bytes`` are kept, oldest first out (a window more is then
    predicted again, which changes nothing). Only the predict thread uses it.
    A window's input, and so its prediction, does not depend on the block that
    reads it, so the blocks' results are those without a cache.
    """

    def __init__(self, ring: tuple[int, int], max_bytes: int = 256 * 2**20):
        """Args:
        ring: :func:`separation_ring` of the raster's plan.
        max_bytes: most bytes of kept probabilities (a 448 px core of two
            channels is 1.6 MB: 160 of them; two window rows of a raster
            71,000 px wide at the model's GSD).
        """
        self.ring = ring
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple[int, int], NDArray[np.float32]] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[int, int]) -> NDArray[np.float32] | None:
        """The kept core probabilities of the window whose core starts at ``key``, if any."""
        return self._kept.get(key)

    def put(self, key: tuple[int, int], core: NDArray[np.float32]) -> None:
        """Keep a window's core probabilities (``(rows, cols, channels)``)."""
        self._drop(key)
        self._kept[key] = core
        self._bytes += core.nbytes
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._kept)))

    def done(self, block: Block) -> None:
        """Drop the windows no block after ``block`` (row-major order) can need."""
        rows, cols = self.ring
        bottom, right = block.row_off + block.height, block.col_off + block.width
        for r, c in list(self._kept):
            later_rows = r >= bottom - rows
            same_row = r >= block.row_off - rows and c >= right - cols
            if not (later_rows or same_row):
                self._drop((r, c))

    def _drop(self, key: tuple[int, int]) -> None:
        core = self._kept.pop(key, None)
        if core is not None:
            self._bytes -= core.nbytes


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


class PredictPlan(Protocol):
    """What :func:`predict_block` reads of a plan (a :class:`RasterPlan` has it all)."""

    @property
    def grid(self) -> WindowGrid: ...

    @property
    def channels(self) -> tuple[str, ...]: ...

    @property
    def output(self) -> str: ...

    @property
    def tta(self) -> bool: ...


def predict_block(
    plan: PredictPlan,
    prepared: Prepared,
    predictor: Predictor,
    cache: WindowCache | None = None,
) -> NDArray[np.float32]:
    """Probabilities ``(rows, cols, channels)`` of the predicted area (0 outside valid data).

    ``cache``: windows kept from earlier blocks of this raster (model-sized
    windows only; see :class:`WindowCache`).
    """
    grid = plan.grid
    block = prepared.area
    shape = (block.height, block.width)
    channels = len(plan.channels)
    if prepared.padded is None or prepared.padded_valid is None:
        if cache is not None:
            cache.done(prepared.block)
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
        cores = _window_cores(plan, prepared, predictor, bw.offsets, kind, cache)
        prob = assemble_cores(cores, bw.shape, 0, grid.core, shape).reshape(*shape, channels)
    prob[~prepared.inner] = 0.0
    return prob


def _window_cores(
    plan: PredictPlan,
    prepared: Prepared,
    predictor: Predictor,
    offsets: tuple[tuple[int, int], ...],
    kind: Literal["logits", "probabilities"],
    cache: WindowCache | None,
) -> NDArray[np.float32]:
    """Core probabilities ``(n, core_h, core_w, channels)`` of the area's model windows.

    Windows whose core holds no valid pixel are zeros and are not run; the
    others come from ``cache`` when an earlier block ran them, else from the
    model (and go into the cache).
    """
    grid = plan.grid
    m, (ch, cw) = grid.margin, grid.core
    assert prepared.padded is not None and prepared.padded_valid is not None
    area = prepared.area
    cores = np.zeros((len(offsets), ch, cw, len(plan.channels)), np.float32)
    keys = [(area.row_off + r, area.col_off + c) for r, c in offsets]
    run = []
    for k, (r, c) in enumerate(offsets):
        if not prepared.padded_valid[r + m : r + m + ch, c + m : c + m + cw].any():
            continue
        kept = cache.get(keys[k]) if cache is not None else None
        if kept is None:
            run.append(k)
        else:
            cores[k] = kept
    if run:
        windows = split_windows(prepared.padded, tuple(offsets[k] for k in run), grid.tile)
        probs = predictor.probabilities(windows, kind, plan.tta)
        cores[run] = probs[:, m : m + ch, m : m + cw, : len(plan.channels)]
    if cache is not None:
        for k in run:
            cache.put(keys[k], cores[k])
        cache.done(prepared.block)
    return cores


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
    "separation_ring",
    "WindowCache",
]
