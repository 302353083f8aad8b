"""Model-size samples from COCO tiles: the one resize/crop rule of training and evaluation.

Pure numpy and OpenCV, no Keras: :mod:`mapseg_core.data.pipeline` batches
these samples for Keras, and ``mapseg evaluate`` on an ONNX model uses them
without importing it.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from mapseg_core.errors import ConfigError, DatasetError

ResizeMode = Literal["resize", "crop"]


def prepare_sample(
    image: np.ndarray,
    mask: np.ndarray,
    size: tuple[int, int],
    resize_mode: ResizeMode,
) -> tuple[np.ndarray, np.ndarray]:
    """Bring an image and its mask to ``size`` the same way.

    ``"resize"`` stretches to ``size`` (image: area averaging when shrinking,
    bilinear when enlarging; mask: nearest neighbour, so it stays {0, 1} and
    no building is invented by interpolation). ``"crop"`` keeps the ground
    sampling distance: it takes the centre ``size`` window and pads with 0
    (image and mask) where the source is smaller; use it when tiles are
    larger than the model input and buildings must keep their pixel size.

    Args:
        image: ``HxWx3`` (uint8 or float, 0..255).
        mask: ``HxW`` or ``HxWx1``, values {0, 1}.
        size: target ``(height, width)``.
        resize_mode: ``"resize"`` or ``"crop"``.

    Returns:
        float32 image ``height x width x 3`` in 0..255 and float32 mask
        ``height x width x 1`` in {0, 1}.
    """
    fitted_image, fitted_mask = _fit(image, mask, size, resize_mode)
    return fitted_image.astype(np.float32), fitted_mask[..., None].astype(np.float32)


def _fit(
    image: np.ndarray, mask: np.ndarray, size: tuple[int, int], resize_mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`prepare_sample` without the float cast: the dtype in, ``HxW`` mask out."""
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ConfigError(f"input size must be positive, got {height}x{width}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if image.ndim != 3 or image.shape[2] != 3 or mask.shape != image.shape[:2]:
        raise DatasetError(
            f"expected an HxWx3 image and an HxW mask of the same size, got {image.shape} "
            f"and {mask.shape}; load samples with CocoDataset.load_sample"
        )
    src_h, src_w = mask.shape
    if (src_h, src_w) == (height, width):
        return image, mask
    if resize_mode == "resize":
        shrinking = height * width < src_h * src_w
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resized = cv2.resize(image, (width, height), interpolation=interp)
        resized_mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
        return resized, resized_mask
    if resize_mode == "crop":
        out_image = np.zeros((height, width, 3), dtype=image.dtype)
        out_mask = np.zeros((height, width), dtype=mask.dtype)
        src_y, dst_y, n_y = _centre(src_h, height)
        src_x, dst_x, n_x = _centre(src_w, width)
        out_image[dst_y : dst_y + n_y, dst_x : dst_x + n_x] = image[
            src_y : src_y + n_y, src_x : src_x + n_x
        ]
        out_mask[dst_y : dst_y + n_y, dst_x : dst_x + n_x] = mask[
            src_y : src_y + n_y, src_x : src_x + n_x
        ]
        return out_image, out_mask
    raise ConfigError(f"unknown resize_mode {resize_mode!r}; choose 'resize' or 'crop'")


def _centre(src: int, dst: int) -> tuple[int, int, int]:
    """Source offset, destination offset and length that centre ``src`` in ``dst`` on one axis."""
    if src >= dst:
        return (src - dst) // 2, 0, dst
    return 0, (dst - src) // 2, src
