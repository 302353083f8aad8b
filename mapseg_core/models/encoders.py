"""Encoders (down stacks) for the U-Net, as Keras functional sub-models.

An encoder is a ``keras.Model`` from an image batch (0..255 values) to the
list of feature maps named in ``ModelConfig.skip_layers``, shallow to deep.
EfficientNet encoders come from ``keras.applications`` (which rescale and
normalise 0..255 input internally); ``tiny`` is a five-stage plain CNN that
builds and trains in seconds, for tests, smoke runs and demos.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from mapseg_core.backend import keras
from mapseg_core.config import ModelConfig
from mapseg_core.errors import ConfigError, InputFileNotFound, WeightsError

layers = keras.layers

log = logging.getLogger("mapseg")

_EFFICIENTNETS = {
    "efficientnetb0": "EfficientNetB0",
    "efficientnetb1": "EfficientNetB1",
    "efficientnetb2": "EfficientNetB2",
    "efficientnetb3": "EfficientNetB3",
    "efficientnetb4": "EfficientNetB4",
    "efficientnetb5": "EfficientNetB5",
    "efficientnetb6": "EfficientNetB6",
    "efficientnetb7": "EfficientNetB7",
}

#: Filters of the tiny encoder's five stages (each halves the resolution).
TINY_FILTERS = (16, 24, 32, 48, 64)


def build_encoder(
    config: ModelConfig, size: tuple[int | None, int | None] | None = None
) -> keras.Model:
    """The encoder sub-model named ``encoder`` with one output per skip layer.

    Raises:
        WeightsError: ImageNet weights cannot be downloaded, or a weights file
            does not fit the chosen encoder.
        InputFileNotFound: ``encoder_weights`` names a file that does not exist.
        ConfigError: a skip layer name is not in the encoder.
    """
    shape = (*(size or config.input_size), config.bands)
    if config.encoder == "tiny":
        base = _tiny_cnn(config, shape)
    else:
        base = _efficientnet(config, shape)
    try:
        outputs = [base.get_layer(name).output for name in config.skip_layers]
    except ValueError:
        names = [layer.name for layer in base.layers if layer.name.endswith("activation")]
        raise ConfigError(
            f"skip layers {config.skip_layers} are not all in {config.encoder}; "
            f"candidates are e.g. {names[-6:]}"
        ) from None
    encoder = keras.Model(base.input, outputs, name="encoder")
    _set_trainable(encoder, config)
    return encoder


def _efficientnet(config: ModelConfig, shape: tuple[int | None, ...]) -> keras.Model:
    factory = getattr(keras.applications, _EFFICIENTNETS[config.encoder])
    weights = config.encoder_weights
    if weights is None:
        return factory(input_shape=shape, include_top=False, weights=None)
    if weights == "imagenet":
        try:
            return factory(input_shape=shape, include_top=False, weights="imagenet")
        except Exception as exc:  # URLError, HTTPError, "Failed to download" ...
            raise WeightsError(
                f"cannot get ImageNet weights for {config.encoder} ({_first_line(exc)}); "
                "offline? pass --encoder-weights PATH to a local *_notop weights file, "
                "or --encoder-weights none"
            ) from None
    path = Path(weights)
    if not path.is_file():
        raise InputFileNotFound(
            f"encoder weights file {path} not found; pass an existing file, imagenet or none"
        )
    model = factory(input_shape=shape, include_top=False, weights=None)
    # Keras only warns when parts of a file do not match; a partial load is a wrong file.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))
            problem = next((str(w.message) for w in caught if "Skipping" in str(w.message)), None)
        except Exception as exc:
            problem = _first_line(exc)
    if problem:
        raise WeightsError(
            f"encoder weights {path.name} do not fit {config.encoder} ({problem[:120]}); "
            f"pass weights made for {config.encoder} with include_top=False"
        )
    return model


def _tiny_cnn(config: ModelConfig, shape: tuple[int | None, ...]) -> keras.Model:
    inputs = keras.Input(shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="tiny_rescale")(inputs)
    for stage, filters in enumerate(TINY_FILTERS, start=1):
        x = layers.Conv2D(
            filters, 3, strides=2, padding="same", use_bias=False, name=f"tiny_stage{stage}_down"
        )(x)
        x = layers.BatchNormalization(name=f"tiny_stage{stage}_bn1")(x)
        x = layers.Activation("swish", name=f"tiny_stage{stage}_act1")(x)
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"tiny_stage{stage}_conv"
        )(x)
        x = layers.BatchNormalization(name=f"tiny_stage{stage}_bn2")(x)
        x = layers.Activation("swish", name=f"tiny_stage{stage}")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


def _set_trainable(encoder: keras.Model, config: ModelConfig) -> None:
    """Freeze the encoder, or train it with pretrained batch norm kept frozen.

    Pretrained EfficientNet batch-norm statistics (and, for the shared B0
    weights, the folded normalisation) must not drift on small batches of
    aerial tiles; a frozen Keras 3 ``BatchNormalization`` runs in inference mode.
    Pretrained means ImageNet weights, or a trained model's (``init_model``).
    """
    encoder.trainable = config.encoder_trainable
    pretrained = config.encoder_weights is not None or config.init_model is not None
    if config.encoder_trainable and pretrained:
        for layer in encoder.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
