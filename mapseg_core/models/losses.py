"""Combo loss (BCE + Dice) and segmentation metrics, on logits, with ``keras.ops``.

All functions take ``y_true`` of shape (batch, H, W, C) in {0, 1} and
``y_pred`` *logits* of the same shape, and work under every Keras backend.
Channel 0 is the building mask: the metrics score it alone, so a model with
extra channels (contact, boundary; see :mod:`mapseg_core.data.targets`)
reports figures comparable with a one-channel model's. The loss covers every
channel, weighted per channel.
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
    """Soft Dice of the building channel (channel 0), per image."""
    return _dice(y_true[..., :1], y_pred[..., :1], axis=(1, 2, 3))


def _dice(y_true: Any, y_pred: Any, axis: tuple[int, ...]) -> Any:
    y_true = ops.cast(y_true, "float32")
    p = ops.sigmoid(ops.cast(y_pred, "float32"))
    inter = ops.sum(y_true * p, axis=axis)
    union = ops.sum(y_true, axis=axis) + ops.sum(p, axis=axis)
    return (2.0 * inter + SMOOTH) / (union + SMOOTH)


@keras.saving.register_keras_serializable(package="mapseg")
class ComboLoss(keras.losses.Loss):
    """``ce_weight * BCE(from_logits) - (1 - ce_weight) * dice``, per image.

    The seed's combo loss with CL_CE_W = 0.05. It is negative (down to
    ``-(1 - ce_weight)``) because Dice is subtracted, not ``1 - dice``: the
    seed's report shows losses like -0.757, and we keep its numbers comparable.
    """

    def __init__(
        self,
        ce_weight: float = 0.05,
        name: str = "combo_loss",
        channel_weights: tuple[float, ...] | list[float] | None = None,
        **kwargs: Any,
    ):
        """Args:
        ce_weight: weight of the cross-entropy term (the seed's CL_CE_W).
        name: Keras loss name.
        channel_weights: with several output channels, the combo loss is
            computed per channel (its own BCE and its own Dice: a thin contact
            channel must not be drowned by the building channel's pixels) and
            summed with these weights; the building Dice is per image (the
            seed's), a contact/boundary Dice is one over the whole batch (see
            :meth:`call`). None: the one-channel loss, as before.
        """
        super().__init__(name=name, **kwargs)
        self.ce_weight = float(ce_weight)
        self.channel_weights = (
            None if channel_weights is None else tuple(float(w) for w in channel_weights)
        )

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if self.channel_weights is None:
            bce = ops.binary_crossentropy(y_true, y_pred, from_logits=True)
            bce_per_image = ops.mean(bce, axis=(1, 2, 3))
            dice = _dice(y_true, y_pred, axis=(1, 2, 3))
            return self.ce_weight * bce_per_image - (1.0 - self.ce_weight) * dice
        # (batch, C) per-channel terms; binary_crossentropy is elementwise per channel here.
        bce = ops.mean(
            ops.maximum(y_pred, 0.0) - y_pred * y_true + ops.log1p(ops.exp(-ops.abs(y_pred))),
            axis=(1, 2),
        )
        # Building: the seed's Dice per image. Contact/boundary: one Dice over the whole
        # batch, the same for each image. Per image, the smoothed Dice of a chip without
        # any contact pixel is 1 exactly when nothing is predicted, and most chips have
        # none: their pull towards "never contact" outweighed the few contact pixels
        # and the channel collapsed to 0 everywhere (the v2 bundled model: max 0.000).
        per_image = _dice(y_true[..., :1], y_pred[..., :1], axis=(1, 2))
        whole = _dice(y_true[..., 1:], y_pred[..., 1:], axis=(0, 1, 2))
        dice = ops.concatenate([per_image, whole[None, :] + ops.zeros_like(bce[..., 1:])], axis=-1)
        combo = self.ce_weight * bce - (1.0 - self.ce_weight) * dice
        weights = ops.convert_to_tensor(self.channel_weights, dtype="float32")
        return ops.sum(combo * weights, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "ce_weight": self.ce_weight}
        if self.channel_weights is not None:
            config["channel_weights"] = list(self.channel_weights)
        return config


@keras.saving.register_keras_serializable(package="mapseg")
def spatial_true_positive_rate(y_true: Any, y_pred: Any) -> Any:
    """Fraction of building pixels predicted as building (logit > 0), over the batch.

    As in the seed: ``sum(y * [p > 0]) / sum(y)``; a batch with no building
    pixel gives 0/0, returned as 1 (nothing was missed). For scores over a
    whole data set use :class:`SpatialTruePositiveRate`, which sums first.
    """
    y_true = ops.cast(y_true[..., :1], "float32")
    hit = ops.cast(ops.greater(ops.cast(y_pred[..., :1], "float32"), 0.0), "float32")
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
    """Hard IoU of each image's building channel, shape (batch,)."""
    y_true = ops.cast(y_true[..., :1], "float32")
    hit = ops.cast(ops.greater(ops.cast(y_pred[..., :1], "float32"), 0.0), "float32")
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
        y_true = ops.cast(y_true[..., :1], "float32")
        hit = ops.cast(ops.greater(ops.cast(y_pred[..., :1], "float32"), 0.0), "float32")
        self.hits.assign_add(ops.sum(y_true * hit))
        self.positives.assign_add(ops.sum(y_true))

    def result(self) -> Any:
        return ops.where(self.positives > 0, self.hits / ops.maximum(self.positives, 1.0), 1.0)

    def reset_state(self) -> None:
        self.hits.assign(0.0)
        self.positives.assign(0.0)


@keras.saving.register_keras_serializable(package="mapseg")
def building_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Pixel accuracy of the building channel (logit > 0), per image, shape (batch,)."""
    y_true = ops.cast(y_true[..., :1], "float32")
    hit = ops.cast(ops.greater(ops.cast(y_pred[..., :1], "float32"), 0.0), "float32")
    return ops.mean(ops.cast(ops.equal(hit, y_true), "float32"), axis=(1, 2, 3))


def make_metrics(channels: int = 1) -> list[Any]:
    """The seed's metrics plus IoU, in report order, on the building channel.

    Dice and IoU are averaged over *images* (Keras' mean of the per-image
    values), so an evaluation does not depend on the batch size. A
    one-channel model keeps Keras' own BinaryAccuracy (the metric its runs
    were resumed and compared with); with extra channels the accuracy is the
    building channel's.
    """
    accuracy = (
        keras.metrics.BinaryAccuracy(threshold=0.0, name="binary_accuracy")
        if channels == 1
        else keras.metrics.MeanMetricWrapper(building_accuracy, name="binary_accuracy")
    )
    return [
        accuracy,
        keras.metrics.MeanMetricWrapper(dice_per_image, name="dice_coef"),
        SpatialTruePositiveRate(),
        keras.metrics.MeanMetricWrapper(iou_per_image, name="iou_coef"),
    ]
