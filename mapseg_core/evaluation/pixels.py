"""The pixel table of ``mapseg evaluate`` in numpy, for models that run without Keras.

The same figures as Keras' ``model.evaluate`` with
:class:`~mapseg_core.models.losses.ComboLoss` and
:func:`~mapseg_core.models.losses.make_metrics`, under the same names, computed
from probabilities (an ONNX model's output) instead of logits:

* ``loss``: ``ce_weight * BCE - (1 - ce_weight) * soft Dice`` per image, mean over
  images. BCE from a probability is clipped at 1e-7 (Keras' epsilon), so a pixel
  predicted with |logit| > 16 costs at most 16.1 instead of |logit|: the loss
  may differ from Keras' in the third decimal on confidently wrong pixels.
* ``binary_accuracy``: fraction of pixels where ``p > 0.5`` (logit > 0) equals the mask.
* ``dice_coef``: soft Dice (smoothed by 1) per image, mean over images.
* ``spatial_true_positive_rate``: building pixels predicted as building, summed
  over all images first (1 when there is none).
* ``iou_coef``: hard IoU (smoothed by 1) per image, mean over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Smoothing term of Dice and IoU (as in mapseg_core.models.losses).
SMOOTH = 1.0

#: Probability clip of the cross-entropy (Keras' backend epsilon).
EPSILON = 1e-7


@dataclass
class PixelScores:
    """Running sums of the pixel table over batches; :meth:`result` gives the figures."""

    # Combo loss weight of the cross-entropy (the run's ``ce_weight``).
    ce_weight: float = 0.05
    images: int = 0
    pixels: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    dice_sum: float = 0.0
    iou_sum: float = 0.0
    hits: float = 0.0
    positives: float = 0.0

    def add(self, y_true: NDArray[np.floating], prob: NDArray[np.floating]) -> None:
        """Add a batch: masks and probabilities, both ``(n, h, w)`` (a trailing 1 is dropped)."""
        y = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
        p = np.asarray(prob, np.float64).reshape(len(prob), -1)
        hit = (p > 0.5).astype(np.float64)
        pc = np.clip(p, EPSILON, 1.0 - EPSILON)
        bce = -(y * np.log(pc) + (1.0 - y) * np.log(1.0 - pc)).mean(axis=1)
        dice = (2.0 * (y * p).sum(axis=1) + SMOOTH) / (y.sum(axis=1) + p.sum(axis=1) + SMOOTH)
        iou = ((y * hit).sum(axis=1) + SMOOTH) / (np.maximum(y, hit).sum(axis=1) + SMOOTH)
        self.images += len(y)
        self.pixels += y.size
        self.loss_sum += float((self.ce_weight * bce - (1.0 - self.ce_weight) * dice).sum())
        self.correct += int((hit == y).sum())
        self.dice_sum += float(dice.sum())
        self.iou_sum += float(iou.sum())
        self.hits += float((y * hit).sum())
        self.positives += float(y.sum())

    def result(self) -> dict[str, float]:
        """The figures, named as Keras names them."""
        n = max(1, self.images)
        return {
            "loss": self.loss_sum / n,
            "binary_accuracy": self.correct / max(1, self.pixels),
            "dice_coef": self.dice_sum / n,
            "spatial_true_positive_rate": (
                self.hits / self.positives if self.positives > 0 else 1.0
            ),
            "iou_coef": self.iou_sum / n,
        }


__all__ = ["PixelScores"]
