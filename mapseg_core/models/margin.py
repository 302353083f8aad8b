"""The window margin a model needs, measured instead of guessed.

The tiling engine keeps only the centre of each model input and crops
``margin`` pixels at every side (:mod:`mapseg_core.inference.windows`). Too
small a margin and each window edge shows as a seam: the pixels there were
predicted with zero padding where real neighbours should have been. Too large
and every window pays for context it does not need. The right value is a
property of the trained weights (how far the network actually looks, which is
much less than its theoretical receptive field), so it is measured once, when
the model is saved, and stored in its metadata as ``receptive_margin``:

1. Predict a large input (``3 x tile`` per side) whole: the reference, whose
   centre sees all the context it could use.
2. Predict model-sized crops of it at a few positions (multiples of ``align``,
   the network's downsampling, as the engine's windows are) and compare each
   crop's output with the reference at the same pixels.
3. The margin is the smallest ``m`` such that every pixel at least ``m``
   pixels inside a crop matches the reference within ``tolerance`` (in
   probability). Beyond it predictions stop changing with more overlap.

Pure: the model enters as a function from an image batch to probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Largest probability change at the kept pixels that still counts as "no seam".
DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class MarginMeasure:
    """The result of :func:`measure_margin` (stored in the model metadata)."""

    # Smallest margin (pixels) at which crops match the whole prediction within tolerance.
    margin: int
    # The tolerance, in probability.
    tolerance: float
    # Largest probability difference left at that margin.
    residual: float
    # Largest difference at margin 0 (the seam a model without overlap would have).
    at_zero: float
    # False when even the largest usable margin did not reach the tolerance.
    converged: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        """JSON-ready fields."""
        return {
            "margin": self.margin,
            "tolerance": self.tolerance,
            "residual": round(self.residual, 6),
            "at_zero": round(self.at_zero, 6),
            "converged": self.converged,
        }


def measure_margin(
    predict: Callable[[NDArray[np.float32]], NDArray[np.float32]],
    tile: tuple[int, int],
    samples: Sequence[NDArray[np.float32]],
    tolerance: float = DEFAULT_TOLERANCE,
    align: int = 32,
) -> MarginMeasure:
    """The smallest window margin beyond which the model's predictions stop changing.

    Args:
        predict: ``(1, H, W, bands)`` float32 input -> ``(1, H, W, C)`` probabilities;
            must take the ``3 * tile`` samples and ``tile``-sized crops.
        tile: the model window ``(rows, cols)`` the engine will use.
        samples: ``(3 * rows, 3 * cols, bands)`` inputs in the model's value range
            (random noise, mosaics of real images).
        tolerance: largest probability change that counts as unchanged.
        align: crop positions are multiples of this (the network's downsampling),
            like the engine's windows, so crops and reference share one phase.

    Returns:
        The margin, capped at the largest one that leaves a core of ``align``
        pixels (``converged`` is False when the cap was hit).
    """
    th, tw = tile
    limit = max(0, (min(th, tw) - max(1, align)) // 2)
    # worst[m]: largest difference over pixels at least m inside a crop.
    worst = np.zeros(limit + 1, dtype=np.float64)
    for sample in samples:
        if sample.shape[0] < 3 * th or sample.shape[1] < 3 * tw:
            raise ValueError(f"samples must be at least {3 * th}x{3 * tw}, got {sample.shape}")
        reference = np.asarray(predict(sample[None].astype(np.float32)))[0]
        step = max(1, align)
        for dr, dc in ((0, 0), (step, 2 * step), (2 * step, step)):
            r0 = th + min(dr, th - step if th > step else 0)
            c0 = tw + min(dc, tw - step if tw > step else 0)
            crop = sample[r0 : r0 + th, c0 : c0 + tw]
            out = np.asarray(predict(crop[None].astype(np.float32)))[0]
            diff = np.abs(out - reference[r0 : r0 + th, c0 : c0 + tw]).max(axis=-1)
            rows = np.minimum(np.arange(th), np.arange(th)[::-1])
            cols = np.minimum(np.arange(tw), np.arange(tw)[::-1])
            depth = np.minimum(rows[:, None], cols[None, :])  # distance to the crop edge
            for m in range(limit + 1):
                worst[m] = max(worst[m], float(diff[depth >= m].max()))
    # worst is non-increasing in m (a max over fewer pixels): the first m within
    # tolerance is the smallest margin from which more overlap changes nothing.
    ok = np.flatnonzero(worst <= tolerance)
    converged = len(ok) > 0
    margin = int(ok[0]) if converged else limit
    return MarginMeasure(
        margin=int(margin),
        tolerance=float(tolerance),
        residual=float(worst[margin]),
        at_zero=float(worst[0]),
        converged=converged,
    )


def noise_samples(
    tile: tuple[int, int], bands: int, count: int = 2, seed: int = 0, high: float = 255.0
) -> list[NDArray[np.float32]]:
    """Uniform random inputs of ``3 * tile`` in ``0..high`` (a model's worst case for context)."""
    rng = np.random.default_rng(seed)
    shape = (3 * tile[0], 3 * tile[1], bands)
    return [rng.uniform(0.0, high, shape).astype(np.float32) for _ in range(count)]


def mosaic_samples(images: NDArray[np.float32], tile: tuple[int, int]) -> list[NDArray[np.float32]]:
    """3x3 mosaics of real model-sized images ``(n, rows, cols, bands)`` (repeated if fewer)."""
    if len(images) == 0:
        return []
    th, tw = tile
    out = []
    for start in range(0, max(1, len(images) - 8), 9):
        picks = [images[(start + k) % len(images)] for k in range(9)]
        if any(p.shape[:2] != (th, tw) for p in picks):
            return []
        rows = [np.concatenate(picks[3 * r : 3 * r + 3], axis=1) for r in range(3)]
        out.append(np.concatenate(rows, axis=0).astype(np.float32))
        if len(out) == 2:
            break
    return out
