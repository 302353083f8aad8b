"""Pure: a model's probability map on one image -> COCO instance predictions.

A building is a 4-connected component of ``probability >= threshold``, the
rule of the tiling engine's vectorizer
(:mod:`mapseg_core.vectorize.polygons`), so the buildings scored here are the
ones ``mapseg tile-infer`` would write. Its confidence ``score`` is the mean
probability over its pixels, the GeoPackage's ``score`` attribute.
Instances are kept as RLE masks: COCOeval and the IoU matching then work on
exact pixels, with no polygonization round trip.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from pycocotools import mask as mask_utils

from mapseg_core.vectorize.components import components


def to_image_size(
    prob: NDArray[np.floating], shape: tuple[int, int], resize_mode: str = "resize"
) -> NDArray[np.float32]:
    """Bring a model-size probability map back to the image's ``(height, width)``.

    Inverse of :func:`mapseg_core.data.pipeline.prepare_sample`: ``"resize"``
    resizes bilinearly; ``"crop"`` puts the model window back at the centre of
    the image (pixels the model did not see get probability 0).
    """
    prob = np.asarray(prob, dtype=np.float32)
    height, width = int(shape[0]), int(shape[1])
    if prob.shape == (height, width):
        return prob
    if resize_mode == "resize":
        return np.asarray(
            cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.float32
        )
    out = np.zeros((height, width), dtype=np.float32)
    ph, pw = prob.shape
    src_y, dst_y, n_y = _centre(height, ph)
    src_x, dst_x, n_x = _centre(width, pw)
    out[src_y : src_y + n_y, src_x : src_x + n_x] = prob[dst_y : dst_y + n_y, dst_x : dst_x + n_x]
    return out


def _centre(src: int, dst: int) -> tuple[int, int, int]:
    """Same centring as the pipeline's crop: (image offset, model offset, length)."""
    if src >= dst:
        return (src - dst) // 2, 0, dst
    return 0, (dst - src) // 2, src


def instances(
    prob: NDArray[np.floating], threshold: float = 0.5, min_pixels: int = 1
) -> list[dict[str, Any]]:
    """Buildings of one image's probability map as ``{"segmentation", "score", "area"}``.

    Args:
        prob: ``(height, width)`` probabilities on the image grid.
        threshold: probability at or above which a pixel is a building.
        min_pixels: smaller components are dropped.

    Returns:
        One dict per building, the segmentation as compressed RLE (``counts`` a str).
    """
    prob = np.asarray(prob, dtype=np.float32)
    labels, boxes = components(prob >= threshold)
    count = len(boxes)
    if count == 0:
        return []
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=count + 1)
    sums = np.bincount(flat, weights=prob.ravel().astype(np.float64), minlength=count + 1)
    out: list[dict[str, Any]] = []
    for k, window in enumerate(boxes, start=1):
        if pixels[k] < min_pixels:
            continue
        full = np.zeros(prob.shape, dtype=np.uint8, order="F")
        full[window] = labels[window] == k
        rle = mask_utils.encode(full)
        out.append(
            {
                "segmentation": {"size": list(prob.shape), "counts": rle["counts"].decode("ascii")},
                "score": float(sums[k] / pixels[k]),
                "area": float(pixels[k]),
            }
        )
    return out
