"""Pure: the 4-connected components of a mask and their bounding boxes.

The vectorizer's rule (:mod:`mapseg_core.vectorize.polygons`): pixels that
share an edge are one building, two buildings touching at a corner stay two.
OpenCV does it here, so evaluating and chipping need no SciPy; labels are
numbered in the raster order of each component's first pixel, as
``scipy.ndimage.label`` numbers them (``tests/vectorize/test_components.py``).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray


def components(
    mask: NDArray[np.bool_],
) -> tuple[NDArray[np.int32], list[tuple[slice, slice]]]:
    """Labels ``1..n`` of the 4-connected components of ``mask`` (0 off it) and each one's box.

    ``boxes[k - 1]`` is the ``(rows, cols)`` slice pair of label ``k``'s bounding box.
    """
    mask8 = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    if mask8.size == 0:
        return np.zeros(mask8.shape, np.int32), []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask8, connectivity=4, ltype=cv2.CV_32S
    )
    boxes = [
        (slice(top, top + height), slice(left, left + width))
        for left, top, width, height in stats[1:count, :4].tolist()
    ]
    return np.asarray(labels, dtype=np.int32), boxes


__all__ = ["components"]
