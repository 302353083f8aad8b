"""Losses and metrics against hand-computed numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mapseg_core.models import losses


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = np.zeros((3, 5, 6, 1), "float32")
    y[0, 1:4, 2:5] = 1
    y[1, :, :2] = 1  # image 2 has no building at all
    logits = rng.normal(0, 2, size=y.shape).astype("float32")
    return y, logits


def _np_dice(y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    p = _sigmoid(logits.astype("float64"))
    inter = (y * p).sum(axis=(1, 2, 3))
    return (2 * inter + 1) / (y.sum(axis=(1, 2, 3)) + p.sum(axis=(1, 2, 3)) + 1)


def _np_bce(y: np.ndarray, logits: np.ndarray) -> np.ndarray:
    x = logits.astype("float64")
    per_pixel = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return per_pixel.mean(axis=(1, 2, 3))


def test_dice_matches_numpy(batch):
    y, logits = batch
    got = float(keras.ops.convert_to_numpy(losses.dice_coef(y, logits)))
    assert got == pytest.approx(_np_dice(y, logits).mean(), rel=1e-5)


def test_dice_of_empty_image_with_empty_prediction_is_one():
    y = np.zeros((1, 4, 4, 1), "float32")
    logits = np.full(y.shape, -50.0, "float32")
    assert float(losses.dice_coef(y, logits)) == pytest.approx(1.0, abs=1e-6)


def test_combo_loss_matches_seed_formula(batch):
    y, logits = batch
    expected = (0.05 * _np_bce(y, logits) - 0.95 * _np_dice(y, logits)).mean()
    got = float(losses.ComboLoss(0.05)(y, logits))
    assert got == pytest.approx(expected, rel=1e-5)
    heavier = float(losses.ComboLoss(0.5)(y, logits))
    assert heavier == pytest.approx(
        (0.5 * _np_bce(y, logits) - 0.5 * _np_dice(y, logits)).mean(), rel=1e-5
    )


def test_perfect_prediction_reaches_minus_dice_weight():
    y = np.zeros((2, 8, 8, 1), "float32")
    y[:, 2:6, 2:6] = 1
    logits = np.where(y > 0, 30.0, -30.0).astype("float32")
    assert float(losses.ComboLoss(0.05)(y, logits)) == pytest.approx(-0.95, abs=1e-3)


def test_spatial_tpr_and_iou_match_numpy(batch):
    y, logits = batch
    hit = (logits > 0).astype("float64")
    tpr = (y * hit).sum() / y.sum()
    assert float(losses.spatial_true_positive_rate(y, logits)) == pytest.approx(tpr, rel=1e-6)
    inter = (y * hit).sum(axis=(1, 2, 3))
    union = np.maximum(y, hit).sum(axis=(1, 2, 3))
    assert float(losses.iou_coef(y, logits)) == pytest.approx(
        ((inter + 1) / (union + 1)).mean(), rel=1e-6
    )


def test_metrics_accumulate_independent_of_batching(batch):
    y, logits = batch
    whole = {m.name: m for m in losses.make_metrics()}
    split = {m.name: m for m in losses.make_metrics()}
    for m in whole.values():
        m.update_state(y, logits)
    for m in split.values():
        m.update_state(y[:1], logits[:1])
        m.update_state(y[1:], logits[1:])
    for name in whole:
        assert float(whole[name].result()) == pytest.approx(
            float(split[name].result()), rel=1e-6
        ), name
    acc = ((logits > 0) == (y > 0)).mean()
    assert float(whole["binary_accuracy"].result()) == pytest.approx(acc, rel=1e-6)


def test_losses_are_registered_for_plain_keras_loading():
    for name in (
        "ComboLoss",
        "dice_coef",
        "dice_per_image",
        "iou_per_image",
        "SpatialTruePositiveRate",
    ):
        assert keras.saving.get_registered_object(f"mapseg>{name}") is not None, name


def test_channel_combo_loss_is_the_weighted_sum_of_per_channel_losses():
    import numpy as np

    from mapseg_core.models.losses import ComboLoss

    rng = np.random.default_rng(1)
    y = (rng.random((3, 8, 8, 2)) > 0.6).astype("float32")
    logits = rng.normal(size=(3, 8, 8, 2)).astype("float32")
    one = ComboLoss(0.05)
    both = ComboLoss(0.05, channel_weights=(1.0, 0.5))
    # The contact term: its BCE per image, and one Dice over the whole batch.
    p = 1 / (1 + np.exp(-logits[..., 1]))
    batch_dice = (2 * (y[..., 1] * p).sum() + 1) / (y[..., 1].sum() + p.sum() + 1)
    bce = np.mean(
        np.maximum(logits[..., 1], 0)
        - logits[..., 1] * y[..., 1]
        + np.log1p(np.exp(-np.abs(logits[..., 1]))),
        axis=(1, 2),
    )
    expected = [
        float(one.call(y[..., :1], logits[..., :1])[k]) + 0.5 * (0.05 * bce[k] - 0.95 * batch_dice)
        for k in range(3)
    ]
    np.testing.assert_allclose(np.asarray(both.call(y, logits)), expected, rtol=1e-5)
    again = ComboLoss.from_config(both.get_config())
    assert again.channel_weights == (1.0, 0.5)
    assert "channel_weights" not in one.get_config()


def test_metrics_score_the_building_channel_only():
    import numpy as np

    from mapseg_core.models.losses import dice_per_image, iou_per_image

    y = np.zeros((1, 4, 4, 2), "float32")
    y[..., 0] = 1.0
    logits = np.full((1, 4, 4, 2), 10.0, "float32")
    logits[..., 1] = -10.0  # the contact channel is all wrong: no effect on the metrics
    assert float(iou_per_image(y, logits)[0]) == 1.0
    assert float(dice_per_image(y, logits)[0]) > 0.99


def test_a_sparse_contact_channel_is_learned_not_collapsed():
    """One chip in eight has a contact band. With the seed's per-image smoothed Dice on
    the contact channel, the seven empty chips score 1 only when nothing is predicted and
    the channel collapses (the v2 bundled model's contact was 0.000 everywhere); the
    batch-wide Dice learns it. A contact logit ``a * feature + b`` with a perfect feature,
    fitted by Adam from "predict little" (b = -4): measured Dice 0.97 (per-image: 0.03)."""
    tf = pytest.importorskip("tensorflow")
    import numpy as np

    from mapseg_core.models.losses import ComboLoss

    y = np.zeros((8, 64, 64, 2), "float32")
    y[:, 8:56, 8:28, 0] = y[:, 8:56, 36:56, 0] = 1.0
    y[0, 8:56, 28:36, 0], y[0, 8:56, 28:36, 1] = 0.0, 1.0  # chip 0: two houses touch
    feature = tf.constant(y[..., 1:])
    building_logits = tf.constant(y[..., :1] * 8 - 4)
    loss = ComboLoss(0.05, channel_weights=(1.0, 0.25))
    a, b = tf.Variable(0.0), tf.Variable(-4.0)
    optimizer = tf.keras.optimizers.Adam(0.05)
    for _ in range(300):
        with tf.GradientTape() as tape:
            logits = tf.concat([building_logits, a * feature + b], axis=-1)
            value = tf.reduce_mean(loss.call(y, logits))
        optimizer.apply_gradients(zip(tape.gradient(value, [a, b]), [a, b], strict=True))
    p = tf.sigmoid(a * feature + b).numpy()
    dice = 2 * float((p * y[..., 1:]).sum()) / float(p.sum() + y[..., 1:].sum())
    assert dice > 0.9
