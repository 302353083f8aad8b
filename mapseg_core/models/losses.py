"""Combo loss (BCE + Dice) and segmentation metrics, on logits, with ``keras.ops``.

All functions take ``y_true`` of shape (batch, H, W, 1) in {0, 1} and
``y_pred`` *logits* of the same shape, and work under every Keras backend.
They are registered with Keras, so a saved model reloads with plain
``keras.saving.load_model`` once ``mapseg_core.models.losses`` is imported.
"""

from __future__ import annotations

from typing import Any

from mapseg_core.backend import keras

ops = keras.ops

#: Smoothing term of the seed's dice coefficient.
SMOOTH = 1.0


@keras.saving.register_keras_serializable(package="mapseg")
def dice_coef(y_true: Any, y_pred: Any) -> Any:
    """Soft Dice of sigmoid(logits), smoothed by 1, per image then averaged.

    ``(2 * sum(y * p) + 1) / (sum(y) + sum(p) + 1)`` as in the seed post; an
    image with no building and no prediction scores 1.
    """
    return ops.mean(_dice_per_image(y_true, y_pred))


def _dice_per_image(y_true: Any, y_pred: Any) -> Any:
    y_true = ops.cast(y_true, "float32")
    p = ops.sigmoid(ops.cast(y_pred, "float32"))
    inter = ops.sum(y_true * p, axis=(1, 2, 3))
    union = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(p, axis=(1, 2, 3))
    return (2.0 * inter + SMOOTH) / (union + SMOOTH)


@keras.saving.register_keras_serializable(package="mapseg")
class ComboLoss(keras.losses.Loss):
    """``ce_weight * BCE(from_logits) - (1 - ce_weight) * dice``, per image.

    The seed's combo loss with CL_CE_W = 0.05. It is negative (down to
    ``-(1 - ce_weight)``) because Dice is subtracted, not ``1 - dice``: the
    seed's report shows losses like -0.757, and we keep its numbers comparable.
    """

    def __init__(self, ce_weight: float = 0.05, name: str = "combo_loss", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.ce_weight = float(ce_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        bce = ops.binary_crossentropy(y_true, y_pred, from_logits=True)
        bce_per_image = ops.mean(bce, axis=(1, 2, 3))
        return self.ce_weight * bce_per_image - (1.0 - self.ce_weight) * _dice_per_image(
            y_true, y_pred
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ce_weight": self.ce_weight}


@keras.saving.register_keras_serializable(package="mapseg")
def spatial_true_positive_rate(y_true: Any, y_pred: Any) -> Any:
    """Fraction of building pixels predicted as building (logit > 0), over the batch.

    As in the seed: ``sum(y * [p > 0]) / sum(y)``; a batch with no building
    pixel gives 0/0, returned as 1 (nothing was missed). For scores over a
    whole data set use :class:`SpatialTruePositiveRate`, which sums first.
    """
    y_true = ops.cast(y_true, "float32")
    hit = ops.cast(ops.greater(ops.cast(y_pred, "float32"), 0.0), "float32")
    total = ops.sum(y_true)
    return ops.where(total > 0, ops.sum(y_true * hit) / ops.maximum(total, 1.0), 1.0)


@keras.saving.register_keras_serializable(package="mapseg")
def iou_coef(y_true: Any, y_pred: Any) -> Any:
    """Hard IoU of (logit > 0) against the mask, smoothed by 1, per image then averaged."""
    return ops.mean(iou_per_image(y_true, y_pred))


@keras.saving.register_keras_serializable(package="mapseg")
def dice_per_image(y_true: Any, y_pred: Any) -> Any:
    """Soft Dice of each image of the batch, shape (batch,)."""
    return _dice_per_image(y_true, y_pred)


@keras.saving.register_keras_serializable(package="mapseg")
def iou_per_image(y_true: Any, y_pred: Any) -> Any:
    """Hard IoU of each image of the batch, shape (batch,)."""
    y_true = ops.cast(y_true, "float32")
    hit = ops.cast(ops.greater(ops.cast(y_pred, "float32"), 0.0), "float32")
    inter = ops.sum(y_true * hit, axis=(1, 2, 3))
    union = ops.sum(ops.maximum(y_true, hit), axis=(1, 2, 3))
    return (inter + SMOOTH) / (union + SMOOTH)


@keras.saving.register_keras_serializable(package="mapseg")
class SpatialTruePositiveRate(keras.metrics.Metric):
    """The seed's spatial TPR accumulated over all batches: sum(y * hit) / sum(y).

    Summing numerator and denominator separately makes the score independent
    of how images are batched (a mean of per-batch ratios is not).
    """

    def __init__(self, name: str = "spatial_true_positive_rate", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.positives = self.add_variable(shape=(), initializer="zeros", name="positives")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.cast(y_true, "float32")
        hit = ops.cast(ops.greater(ops.cast(y_pred, "float32"), 0.0), "float32")
        self.hits.assign_add(ops.sum(y_true * hit))
        self.positives.assign_add(ops.sum(y_true))

    def result(self) -> Any:
        return ops.where(self.positives > 0, self.hits / ops.maximum(self.positives, 1.0), 1.0)

    def reset_state(self) -> None:
        self.hits.assign(0.0)
        self.positives.assign(0.0)


def make_metrics() -> list[Any]:
    """The seed's metrics plus IoU, in report order.

    Dice and IoU are averaged over *images* (Keras' mean of the per-image
    values), so an evaluation does not depend on the batch size.
    """
    return [
        keras.metrics.BinaryAccuracy(threshold=0.0, name="binary_accuracy"),
        keras.metrics.MeanMetricWrapper(dice_per_image, name="dice_coef"),
        SpatialTruePositiveRate(),
        keras.metrics.MeanMetricWrapper(iou_per_image, name="iou_coef"),
    ]
