"""The pure tiling grid: blocks of a raster and the model windows inside them.

Terms (all in pixels of the *working grid*, i.e. the raster after any
resampling to the model's ground sampling distance):

``tile``
    the model window, ``(h, w)``: what one ``predict`` call sees per sample.
``margin``
    pixels discarded on each side of a window. A convolutional network's
    output near a window edge is computed from zero/reflect padding instead of
    real neighbours; the band of unreliable pixels is as wide as the part of
    the receptive field that falls outside the window. Only the window's
    centre (the *core*) is kept, so ``margin`` must cover those edge effects
    (the model's ``receptive_margin``), or the seams of the window grid show
    up in the probabilities and cut buildings in two.
``core``
    ``tile - 2 * margin``: the pixels one window contributes. Cores tile the
    raster exactly (no overlap, no gap), so every output pixel comes from
    exactly one window: a *centre crop* rather than weighted blending. With a
    margin that covers the receptive field, a crop is seam-free and, unlike
    blending, needs no accumulation buffer shared between blocks.
``block``
    the unit of reading, prediction and vectorization (one ``process_block``
    call): a whole number of cores, so a window never straddles two blocks
    and no pixel is predicted twice. The core grid is anchored at the raster
    origin, not at the block, which is why the result cannot depend on the
    block size: a pixel is always predicted by the same window.

The core is also rounded down to a multiple of ``align`` (the network's total
downsampling, 32 for the U-Nets): a U-Net is translation-equivariant only for
shifts that are multiples of its downsampling, so windows at such offsets all
see the same phase and agree where their contexts agree.

``span`` (:meth:`WindowGrid.spans_of`)
    for models that accept inputs of any size (fully convolutional, built with
    ``(None, None, bands)`` inputs), a block's cores can be predicted as a few
    larger windows instead of many model-sized ones: a span is a rectangle of
    the block's core area, predicted with the same margins as a window (``margin``
    before, ``tile - core - margin`` after), so the pixels the crop keeps see at
    least the same context. What this saves is the overlap: with 512 px windows
    and a 16 px margin, 4096 px need 9 windows per side (cores of 480) where 8
    non-overlapping windows suffice, (9/8)^2 = 1.27 times the pixels; spans of
    ~1000 px pay the margin ~4 times per side instead of 9, and the last span
    of a raster ends at its edge (rounded up to ``align``) instead of a whole
    core past it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window

from mapseg_core.errors import ConfigError


@dataclass(frozen=True)
class Block:
    """One block of the working grid, in the fixed row-major processing order."""

    # Position in the block grid (block row, block column).
    index: tuple[int, int]
    # First row of the block in the working grid.
    row_off: int
    # First column of the block in the working grid.
    col_off: int
    # Rows of the block inside the raster (the last block row may be shorter).
    height: int
    # Columns of the block inside the raster (the last block column may be narrower).
    width: int

    @property
    def window(self) -> Window:
        """The block as a rasterio window (clipped to the raster)."""
        return Window(self.col_off, self.row_off, self.width, self.height)


@dataclass(frozen=True)
class BlockWindows:
    """What to read for one block and where its model windows lie."""

    # Window to read from the working raster (the block plus margins, clipped to the raster).
    read: Window
    # Padding ((top, bottom), (left, right)) that brings the read array to the padded block.
    pad: tuple[tuple[int, int], tuple[int, int]]
    # Number of model windows down and across the block.
    shape: tuple[int, int]
    # Top-left (row, col) of each model window in the padded array, row-major.
    offsets: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class WindowGrid:
    """The blocks and model windows covering a ``height`` x ``width`` raster."""

    # Rows of the working raster.
    height: int
    # Columns of the working raster.
    width: int
    # Model window (rows, cols).
    tile: tuple[int, int]
    # Pixels cropped on each side of a model window.
    margin: int
    # Pixels kept from each window (rows, cols); cores tile the raster.
    core: tuple[int, int]
    # Block size (rows, cols), a whole number of cores.
    block: tuple[int, int]
    # Network downsampling the cores are multiples of (1: none); spans are rounded to it.
    align: int = 1

    @property
    def n_blocks(self) -> tuple[int, int]:
        """Blocks down and across."""
        return (math.ceil(self.height / self.block[0]), math.ceil(self.width / self.block[1]))

    def __len__(self) -> int:
        rows, cols = self.n_blocks
        return rows * cols

    def blocks(self) -> Iterator[Block]:
        """Every block, row by row (the fixed processing order)."""
        rows, cols = self.n_blocks
        for i in range(rows):
            for j in range(cols):
                yield self.block_at(i, j)

    def block_at(self, i: int, j: int) -> Block:
        """The block at block row ``i``, block column ``j``."""
        r0, c0 = i * self.block[0], j * self.block[1]
        return Block(
            index=(i, j),
            row_off=r0,
            col_off=c0,
            height=min(self.block[0], self.height - r0),
            width=min(self.block[1], self.width - c0),
        )

    def windows_of(self, block: Block) -> BlockWindows:
        """The read window, padding and model-window offsets of ``block``.

        The padded block spans at least ``margin`` pixels beyond the block's
        cores on every side; what lies outside the raster is padding, filled by the
        caller (reflection) and marked invalid.
        """
        m = self.margin
        nr = math.ceil(block.height / self.core[0])
        nc = math.ceil(block.width / self.core[1])
        top, left = block.row_off - m, block.col_off - m
        # The last window ends ``tile - core - margin`` past its core (>= margin when the
        # core was rounded down to ``align``: the spare pixels are extra context).
        bottom = block.row_off + (nr - 1) * self.core[0] - m + self.tile[0]
        right = block.col_off + (nc - 1) * self.core[1] - m + self.tile[1]
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(bottom, self.height), min(right, self.width)
        offsets = tuple((a * self.core[0], b * self.core[1]) for a in range(nr) for b in range(nc))
        return BlockWindows(
            read=Window(c0, r0, c1 - c0, r1 - r0),
            pad=((r0 - top, bottom - r1), (c0 - left, right - c1)),
            shape=(nr, nc),
            offsets=offsets,
        )

    def spans_of(self, block: Block, max_pixels: int) -> tuple[Span, ...]:
        """The block's core area as few spans of at most ``max_pixels`` input pixels each.

        Only for models that take inputs of any size. Span ``s`` is predicted from
        rows ``s.row .. s.row + s.height + tile - core`` of the padded block of
        :meth:`windows_of` (offsets relative to its top-left corner, like window
        offsets); its core is ``margin`` pixels in. The spans cover the block
        rounded up to ``align``, no further, so they always fit in the padded
        block. Among the ways to cut the block into equal-ish spans that fit the
        budget, the one predicting the fewest pixels in total is chosen (a span
        larger than the budget only when one ``align`` unit already exceeds it).
        """
        return _spans_of(self, block, max_pixels)


@dataclass(frozen=True)
class Span:
    """A rectangle of a block's core area predicted as one model input (see ``spans_of``)."""

    # First core row of the span, relative to the block's first row.
    row: int
    # First core column of the span, relative to the block's first column.
    col: int
    # Core rows of the span (a multiple of the grid's align; may pass the raster edge by < align).
    height: int
    # Core columns of the span.
    width: int


def _split(length: int, unit: int, parts: int) -> list[tuple[int, int]]:
    """``length`` (a multiple of ``unit``) as ``parts`` near-equal runs of whole units."""
    units = length // unit
    base, extra = divmod(units, parts)
    runs, start = [], 0
    for k in range(parts):
        size = (base + (k < extra)) * unit
        runs.append((start, size))
        start += size
    return runs


def _spans_of(grid: WindowGrid, block: Block, max_pixels: int) -> tuple[Span, ...]:
    extra = (grid.tile[0] - grid.core[0], grid.tile[1] - grid.core[1])
    units = [grid.align if grid.align > 1 and c % grid.align == 0 else 1 for c in grid.core]
    rows = -(-block.height // units[0]) * units[0]
    cols = -(-block.width // units[1]) * units[1]
    best: tuple[int, int, int] | None = None
    for k in range(1, rows // units[0] + 1):
        h = -(-rows // (k * units[0])) * units[0] + extra[0]
        if h * (units[1] + extra[1]) > max_pixels and k < rows // units[0]:
            continue
        max_w = max(units[1], (max_pixels // h - extra[1]) // units[1] * units[1])
        parts = min(max(1, -(-cols // max_w)), cols // units[1])
        # Input pixels of all spans: every span row adds extra[0] rows, every column extra[1].
        cost = (rows + k * extra[0]) * (cols + parts * extra[1])
        if best is None or cost < best[0]:
            best = (cost, k, parts)
        if parts == 1:
            break
    assert best is not None
    _, k, parts = best
    return tuple(
        Span(r, c, hh, ww)
        for r, hh in _split(rows, units[0], k)
        for c, ww in _split(cols, units[1], parts)
    )


def make_grid(
    height: int,
    width: int,
    tile: tuple[int, int],
    margin: int,
    block_size: int,
    align: int = 32,
) -> WindowGrid:
    """Plan the blocks and windows of a raster.

    Args:
        height: rows of the working raster.
        width: columns of the working raster.
        tile: the model's input size (rows, cols).
        margin: pixels cropped on each window side; at least the model's
            receptive-field edge effect (see the module docstring).
        block_size: wanted block side in pixels; rounded up to whole cores.
        align: the core is rounded down to a multiple of this when it is at
            least that large (network downsampling factor; 1 disables).

    Raises:
        ConfigError: the margin leaves no core, or sizes are not positive.
    """
    if height < 1 or width < 1:
        raise ConfigError(f"raster of {height}x{width} pixels has nothing to tile")
    if margin < 0:
        raise ConfigError(f"overlap must be 0 or more pixels, got {margin}")
    if block_size < 1:
        raise ConfigError(f"block_size must be positive, got {block_size}")
    core = []
    for side in tile:
        c = side - 2 * margin
        if c < 1:
            raise ConfigError(
                f"overlap {margin} px leaves nothing of a {side} px model window; "
                f"pass --overlap below {(side + 1) // 2}"
            )
        if align > 1 and c >= align:
            c -= c % align
        core.append(c)
    block = tuple(max(1, math.ceil(block_size / c)) * c for c in core)
    return WindowGrid(
        height=height,
        width=width,
        tile=(tile[0], tile[1]),
        margin=margin,
        core=(core[0], core[1]),
        block=(block[0], block[1]),
        align=max(1, align),
    )
