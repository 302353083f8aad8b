"""U-Net architecture: the seed's shapes, size fixes, encoders and weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from mapseg_core.config import make_config
from mapseg_core.errors import InputFileNotFound, WeightsError
from mapseg_core.models.unet import build_unet

B0_WEIGHTS = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "weights"
    / "efficientnetb0_imagenet_notop.weights.h5"
)


def _concat_shapes(model: keras.Model) -> list[tuple]:
    return [
        tuple(layer.output.shape[1:]) for layer in model.layers if layer.name.endswith("_concat")
    ]


def test_tiny_unet_shapes_and_logits():
    model = build_unet(make_config("tiny").model)
    assert model.output.shape[1:] == (64, 64, 1)
    assert _concat_shapes(model) == [(4, 4, 112), (8, 8, 64), (16, 16, 40), (32, 32, 24)]
    out = model.predict(np.zeros((2, 64, 64, 3), "float32"), verbose=0)
    assert out.shape == (2, 64, 64, 1) and out.dtype == np.float32


@pytest.mark.slow
@pytest.mark.parametrize("size_fix", ["crop", "conv"])
def test_seed_b4_shapes(size_fix):
    """The shapes the seed post printed for EfficientNetB4 at 300x300."""
    model = build_unet(make_config("seed-b4", encoder_weights="none", size_fix=size_fix).model)
    assert _concat_shapes(model) == [(19, 19, 1984), (38, 38, 848), (75, 75, 448), (150, 150, 272)]
    assert model.output.shape[1:] == (300, 300, 1)
    fixes = [layer for layer in model.layers if layer.name.endswith(("_crop", "_fix"))]
    # 10->20 vs 19, 38->76 vs 75, 75->150 fits: two corrections, of the chosen kind.
    assert len(fixes) == 2
    kind = keras.layers.Cropping2D if size_fix == "crop" else keras.layers.Conv2D
    assert all(isinstance(layer, kind) for layer in fixes)
    encoder = model.get_layer("encoder")
    assert not encoder.trainable
    assert [tuple(t.shape[1:]) for t in encoder.outputs] == [
        (150, 150, 144),
        (75, 75, 192),
        (38, 38, 336),
        (19, 19, 960),
        (10, 10, 1792),
    ]


def test_encoder_trainable_keeps_pretrained_batchnorm_frozen(tmp_path):
    cfg = make_config("b0", input_size=(64, 64), encoder_weights="none", encoder_trainable=True)
    encoder = build_unet(cfg.model).get_layer("encoder")
    assert encoder.trainable
    assert all(
        layer.trainable
        for layer in encoder.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    # With pretrained weights, batch norm is frozen even when fine-tuning.
    weights = tmp_path / "b0.weights.h5"
    keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(64, 64, 3)
    ).save_weights(weights)
    cfg = make_config(
        "b0", input_size=(64, 64), encoder_weights=str(weights), encoder_trainable=True
    )
    encoder = build_unet(cfg.model).get_layer("encoder")
    bns = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and not any(layer.trainable for layer in bns)


def test_weights_file_for_another_encoder_is_refused(tmp_path):
    weights = tmp_path / "tiny.weights.h5"
    build_unet(make_config("tiny").model).save_weights(weights)
    with pytest.raises(WeightsError, match="do not fit efficientnetb0"):
        build_unet(make_config("b0", input_size=(64, 64), encoder_weights=str(weights)).model)


def test_missing_weights_file():
    with pytest.raises(InputFileNotFound, match="not found"):
        build_unet(make_config("b0", encoder_weights="/nonexistent/w.h5").model)


def test_imagenet_offline_names_the_local_file_option(tmp_path):
    """Keras cannot download here (no internet, empty cache): the error says what to pass."""
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "HOME": str(tmp_path)}
    code = (
        "from mapseg_core.config import make_config\n"
        "from mapseg_core.models.unet import build_unet\n"
        "from mapseg_core.errors import WeightsError\n"
        "try:\n"
        "    build_unet(make_config('b0', input_size=(64, 64)).model)\n"
        "except WeightsError as e:\n"
        "    print('ERR', e)\n"
        "else:\n"
        "    print('DOWNLOADED')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    if "DOWNLOADED" in out.stdout:
        pytest.skip("this machine can download ImageNet weights; the offline path is not reachable")
    assert "ERR cannot get ImageNet weights" in out.stdout, out.stderr[-2000:]
    assert "--encoder-weights PATH" in out.stdout


@pytest.mark.realdata
def test_shared_b0_weights_load_into_the_encoder():
    if not B0_WEIGHTS.is_file():
        pytest.skip("../shared/weights not found: ImageNet B0 weights live beside the repo")
    cfg = make_config("b0", input_size=(64, 64), encoder_weights=str(B0_WEIGHTS))
    encoder = build_unet(cfg.model).get_layer("encoder")
    reference = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(64, 64, 3)
    )
    reference.load_weights(B0_WEIGHTS)
    stem = encoder.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(stem, reference.get_layer("stem_conv").get_weights()[0])
    assert np.abs(stem).sum() > 0


@pytest.mark.slow
def test_flexible_copy_of_an_efficientnet_unet_predicts_the_same():
    """EfficientNet's input Normalization caches its mean/variance: the copy must refresh it."""
    import numpy as np

    from mapseg_core.config import make_config
    from mapseg_core.models.unet import build_unet, flexible_copy

    config = make_config("b0", encoder_weights="none").model
    model = build_unet(config)
    # By type: Keras numbers layer names per process (normalization_10 after other builds).
    norm = next(
        layer
        for layer in model.get_layer("encoder").layers
        if isinstance(layer, keras.layers.Normalization)
    )
    norm.set_weights([np.full(3, 100.0), np.full(3, 900.0), np.asarray(1)][: len(norm.weights)])
    norm.finalize_state()
    flexible = flexible_copy(model, config)
    assert flexible is not None
    x = np.random.default_rng(0).uniform(0, 255, (1, 256, 256, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(model.predict_on_batch(x)), np.asarray(flexible.predict_on_batch(x)), atol=1e-4
    )
