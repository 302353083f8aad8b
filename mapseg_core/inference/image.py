"""One in-memory image through tile-infer's model windows: what tile-infer predicts for it.

``mapseg evaluate``, the post-processing search and ``ship.py`` score chips. A
chip is a small raster, and the training pipeline's way of feeding it (the
centre ``input_size`` crop, the rest dropped, and zero padding around a chip
smaller than the input) is not what tile-infer does with a raster holding the
same pixels: it covers the raster with model windows on the core grid, keeps
each window's core, and mirrors the image beyond its edges. Scored the
training way, a 300 px crowdAI tile lost the buildings of its outer 22 px,
and a 190 px chip was one quarter zeros, which a network whose
squeeze-and-excitation blocks average over the whole input does not ignore.
:func:`predict_image` runs the engine's own window code
(:func:`~mapseg_core.inference.blocks.predict_block`) on the image as one
block, so the figures are those of the polygons a user gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mapseg_core.config import TileConfig
from mapseg_core.inference.blocks import Prepared, predict_block
from mapseg_core.inference.plan import model_channels
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.stitch import pad_block
from mapseg_core.inference.windows import WindowGrid, make_grid


@dataclass(frozen=True)
class ImageRun:
    """What :func:`~mapseg_core.inference.blocks.predict_block` reads of a raster's plan."""

    grid: WindowGrid
    channels: tuple[str, ...]
    output: str
    tta: bool = False


def predict_image(
    predictor: Predictor, image: NDArray[np.floating], metadata: dict[str, Any]
) -> NDArray[np.float32]:
    """Probabilities ``(rows, cols, channels)`` tile-infer computes for a raster of ``image``.

    Args:
        predictor: the loaded model.
        image: ``(rows, cols, bands)`` pixels at the model's GSD, already in the
            model's input range (uint8 imagery as it is).
        metadata: the model file's: input size, ``receptive_margin`` (tile-infer's
            default overlap), channels, output.
    """
    rows, cols = image.shape[:2]
    tile = (int(metadata["input_size"][0]), int(metadata["input_size"][1]))
    margin = int(metadata["receptive_margin"])
    grid = make_grid(rows, cols, tile, margin, max(rows, cols), TileConfig().align)
    block = next(grid.blocks())  # the whole image: one block
    windows = grid.windows_of(block)
    valid = np.ones((rows, cols), dtype=bool)
    padded, padded_valid = pad_block(np.asarray(image, np.float32), valid, windows.pad)
    channels, _ = model_channels(metadata, None)
    run = ImageRun(grid, channels, str(metadata.get("output", "logits")))
    prepared = Prepared(block, block, padded, padded_valid, valid, rows * cols)
    return predict_block(run, prepared, predictor)


__all__ = ["ImageRun", "predict_image"]
