"""The U-Net of the seed post, as a functional ``build_unet(config)``.

Encoder feature maps are taken at the skip layers; the decoder climbs back
with UpSample blocks (Conv2DTranspose 3x3 stride 2, batch norm, dropout,
swish), concatenating each with the matching skip, and a last
Conv2DTranspose gives one logit per pixel at the input resolution.

Only stock Keras layers are used, so the architecture reloads from a
``.keras`` file with no custom objects at all.
"""

from __future__ import annotations

from mapseg_core.backend import keras
from mapseg_core.config import ModelConfig
from mapseg_core.models.encoders import build_encoder

layers = keras.layers


def build_unet(config: ModelConfig, flexible: bool = False) -> keras.Model:
    """Build the U-Net described by ``config`` (logits output, not compiled).

    With the ``seed-b4`` preset the concatenations have the seed's shapes
    (19,19,1984), (38,38,848), (75,75,448), (150,150,272) and the output is
    (300,300,1).

    Args:
        config: the architecture.
        flexible: take inputs of any height and width (``(None, None, bands)``),
            so the tiling engine predicts large spans instead of model-sized
            windows. Needs ``input_size`` multiples of 32 (see
            :func:`can_be_flexible`): then no decoder stage has a size fix, and
            the layers, so the weights, are exactly those of the fixed-size
            model; inputs must be multiples of 32 too (the engine's spans are).
    """
    if flexible and not can_be_flexible(config):
        raise ValueError(f"input size {config.input_size} is not a multiple of 32")
    # === Encoder ===
    size = (None, None) if flexible else config.input_size
    inputs = keras.Input((*size, config.bands), name="images")
    encoder = build_encoder(config, size)
    features = encoder(inputs)
    if not isinstance(features, (list, tuple)):
        features = [features]
    x = features[-1]
    skips = list(reversed(features[:-1]))
    skip_names = list(reversed(config.skip_layers[:-1]))

    # === Decoder ===
    for filters, skip, name in zip(config.decoder_filters, skips, skip_names, strict=True):
        y = _upsample(x, filters, config, name=f"{name}_upsampling")
        y = _match_size(y, skip, config, name=name)
        x = layers.Concatenate(name=f"{name}_concat")([y, skip])

    # === Head ===
    logits = layers.Conv2DTranspose(
        config.output_channels, 3, strides=2, padding="same", name="segments"
    )(x)
    # Float32 logits even under mixed precision: the loss's sigmoid needs the range.
    logits = layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model(inputs, logits, name="unet")


def _upsample(
    x: keras.KerasTensor, filters: int, config: ModelConfig, name: str
) -> keras.KerasTensor:
    """The seed's UpSample block: transposed conv, batch norm, dropout, activation."""
    y = layers.Conv2DTranspose(
        filters,
        config.decoder_kernel_size,
        strides=2,
        padding="same",
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    y = layers.BatchNormalization(name=f"{name}_bn")(y)
    if config.decoder_dropout:
        y = layers.Dropout(config.decoder_dropout, name=f"{name}_dropout")(y)
    return layers.Activation(config.decoder_activation, name=f"{name}_act")(y)


def _match_size(
    y: keras.KerasTensor, skip: keras.KerasTensor, config: ModelConfig, name: str
) -> keras.KerasTensor:
    """Bring an upsampled map to its skip's size.

    EfficientNet downsamples odd sizes with ``ZeroPadding2D(1)`` + a valid
    stride-2 conv, giving ``H // 2 + 1``; the stride-2 transposed conv then
    doubles that, one pixel more than the skip. The seed crops the last row
    and column (``crop``); its "idea" (``conv``) learns a 2x2 valid
    convolution instead, which spreads the extra pixel over all outputs.
    """
    if y.shape[1] is None or skip.shape[1] is None:
        return y  # flexible model: sizes are multiples of 32, so every stage matches
    dh = y.shape[1] - skip.shape[1]
    dw = y.shape[2] - skip.shape[2]
    if dh == 0 and dw == 0:
        return y
    if dh not in (0, 1) or dw not in (0, 1):
        raise ValueError(f"decoder map {y.shape} cannot be matched to skip {skip.shape}")
    if config.size_fix == "crop":
        return layers.Cropping2D(((0, dh), (0, dw)), name=f"{name}_crop")(y)
    return layers.Conv2D(y.shape[-1], (dh + 1, dw + 1), padding="valid", name=f"{name}_fix")(y)


def can_be_flexible(config: ModelConfig) -> bool:
    """True when the U-Net can be rebuilt for any input size with the same weights."""
    return all(int(side) % 32 == 0 for side in config.input_size)


def flexible_copy(model: keras.Model, config: ModelConfig) -> keras.Model | None:
    """``model`` rebuilt with ``(None, None)`` inputs and the same weights, or None.

    None when :func:`can_be_flexible` is False (e.g. the seed's 300 px input, whose
    decoder crops one pixel at some stages): such models keep their fixed size.
    """
    if not can_be_flexible(config):
        return None
    return resized_copy(model, config, None)


def resized_copy(
    model: keras.Model, config: ModelConfig, size: tuple[int, int] | None
) -> keras.Model:
    """``model`` rebuilt for inputs of ``size`` (None: any size) with the same weights.

    The layers, so the weights, are those of ``config``'s model whenever both
    sizes are multiples of 32 (:func:`can_be_flexible`).
    """
    import dataclasses

    resized = dataclasses.replace(config, encoder_weights=None)
    if size is not None:
        resized = dataclasses.replace(resized, input_size=size)
    clone = build_unet(resized, flexible=size is None)
    copy_weights(clone, model)
    return clone


def copy_weights(target: keras.Model, source: keras.Model) -> None:
    """Give ``target`` the weights of ``source``, the same U-Net, as a load would.

    Layers that cache tensors derived from their variables (EfficientNet's input
    Normalization keeps its mean/variance broadcast) recompute them afterwards:
    ``set_weights`` alone leaves them at the values of the build.
    """
    target.set_weights(source.get_weights())
    for layer in _all_layers(target):
        if isinstance(layer, layers.Normalization):
            layer.finalize_state()


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    out: list[keras.layers.Layer] = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out += _all_layers(layer)
    return out
