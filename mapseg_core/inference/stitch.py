"""Pure stitching: padded block -> model windows -> one probability array.

Why a centre crop and not weighted blending: with cores that tile the raster
(see :mod:`mapseg_core.inference.windows`) every pixel is predicted by exactly
one window, at least ``margin`` pixels from that window's edge. If the margin
covers the model's receptive-field edge effects, that prediction is the one
the network would make on the whole raster, so there is nothing to blend and
no seam to hide. Blending (a smooth weight over overlapping windows) would
average a good prediction with worse ones near other windows' edges, cost a
float accumulator shared between neighbouring blocks, and make a block's
result depend on its neighbours' windows; the crop keeps every block
independent, which is what lets blocks run in any order or on other machines.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray


def pad_block(
    data: NDArray[np.floating], valid: NDArray[np.bool_], pad: tuple[tuple[int, int], ...]
) -> tuple[NDArray[np.floating], NDArray[np.bool_]]:
    """Pad a block read ``(rows, cols, bands)`` to the padded block.

    Image padding mirrors the raster at its edges (``reflect``), as networks
    are trained on natural image content; padded pixels are invalid, so they
    never produce buildings.

    Args:
        data: pixels as read, band-last.
        valid: True where a pixel holds data (not nodata), ``(rows, cols)``.
        pad: ``((top, bottom), (left, right))``.
    """
    if not any(a or b for a, b in pad):
        return data, valid
    if data.shape[0] == 1 or data.shape[1] == 1:
        mode: Literal["reflect", "edge"] = "edge"  # reflect needs two pixels per axis
    else:
        mode = "reflect"
    padded = np.pad(data, (pad[0], pad[1], (0, 0)), mode=mode)
    padded_valid = np.pad(valid, (pad[0], pad[1]), mode="constant", constant_values=False)
    return padded, padded_valid


def split_windows(
    padded: NDArray[np.floating],
    offsets: tuple[tuple[int, int], ...],
    tile: tuple[int, int],
) -> NDArray[np.float32]:
    """Cut the model windows ``(n, tile_h, tile_w, bands)`` out of a padded block."""
    out = np.empty((len(offsets), tile[0], tile[1], padded.shape[2]), dtype=np.float32)
    for k, (r, c) in enumerate(offsets):
        out[k] = padded[r : r + tile[0], c : c + tile[1]]
    return out


def to_probability(
    raw: NDArray[np.floating], output: Literal["logits", "probabilities"]
) -> NDArray[np.float32]:
    """Model output to probabilities: a sigmoid for logits, a clip otherwise."""
    raw = np.asarray(raw, dtype=np.float32)
    if output == "logits":
        # exp of a large negative overflows to inf harmlessly; silence that warning.
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-raw))).astype(np.float32)
    return np.clip(raw, 0.0, 1.0)


def assemble_cores(
    predictions: NDArray[np.float32],
    shape: tuple[int, int],
    margin: int,
    core: tuple[int, int],
    out_shape: tuple[int, int],
) -> NDArray[np.float32]:
    """Keep each window's core and lay the cores out as one block array.

    Args:
        predictions: ``(n, tile_h, tile_w)`` or ``(n, tile_h, tile_w, 1)``, row-major
            windows; ``(n, tile_h, tile_w, C)`` with ``C > 1`` gives ``(rows, cols, C)``.
        shape: windows down and across the block.
        margin: pixels cropped at the window's top and left.
        core: core size (rows, cols).
        out_shape: the block's size inside the raster; the cores' excess
            beyond the raster edge is dropped.
    """
    if predictions.ndim == 4 and predictions.shape[3] == 1:
        predictions = predictions[..., 0]
    nr, nc = shape
    cores = predictions[:, margin : margin + core[0], margin : margin + core[1]]
    channels = cores.shape[3:]  # () or (C,) for multi-channel models
    grid = cores.reshape(nr, nc, core[0], core[1], *channels).swapaxes(1, 2)
    full = grid.reshape(nr * core[0], nc * core[1], *channels)
    return np.ascontiguousarray(full[: out_shape[0], : out_shape[1]], dtype=np.float32)
