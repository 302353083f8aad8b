"""Frozen configuration dataclasses and the named presets.

Every field has one documented default. CLI options and QGIS Processing
parameter names are the field names (``--batch-size`` is ``batch_size``).
The ``seed-b4`` preset reproduces the Setup block of the seed post
(U-Net + EfficientNetB4 on the crowdAI Mapping Challenge, Dice 0.814).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from mapseg_core.errors import ConfigError, MapsegError

EncoderName = Literal[
    "efficientnetb0",
    "efficientnetb1",
    "efficientnetb2",
    "efficientnetb3",
    "efficientnetb4",
    "efficientnetb5",
    "efficientnetb6",
    "efficientnetb7",
    "tiny",
]
ENCODERS: tuple[str, ...] = EncoderName.__args__  # type: ignore[attr-defined]

#: The seed's skip connections, shallow to deep; the last one is the bottleneck.
EFFICIENTNET_SKIPS: tuple[str, ...] = (
    "block2a_expand_activation",
    "block3a_expand_activation",
    "block4a_expand_activation",
    "block6a_expand_activation",
    "top_activation",
)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the U-Net."""

    # Encoder backbone from keras.applications ("tiny" is a small plain CNN for tests and demos).
    encoder: EncoderName = "efficientnetb4"
    # Model input (height, width) in pixels; training images are resized or cropped to it.
    input_size: tuple[int, int] = (300, 300)
    # Number of input bands (EfficientNet encoders take 3: RGB, 0..255).
    bands: int = 3
    # Encoder layers used as skips, shallow to deep; the last one feeds the decoder.
    skip_layers: tuple[str, ...] = EFFICIENTNET_SKIPS
    # Filters of each decoder UpSample block, deep to shallow (one per skip but the last).
    decoder_filters: tuple[int, ...] = (1024, 512, 256, 128)
    # Kernel size of the decoder's Conv2DTranspose layers.
    decoder_kernel_size: int = 3
    # Dropout rate after each decoder block's batch norm.
    decoder_dropout: float = 0.2
    # Activation of the decoder blocks.
    decoder_activation: str = "swish"
    # How an upsampled map one pixel larger than its skip is fixed: the seed's crop, or its
    # "idea", a learned 2x2 valid convolution that spreads the loss over all pixels.
    size_fix: Literal["crop", "conv"] = "crop"
    # Train the encoder too (False: frozen, as in the seed). Batch norm stays frozen either way.
    encoder_trainable: bool = False
    # "imagenet" (Keras download cache), a path to a weights file, or None for random init.
    encoder_weights: str | None = "imagenet"
    # A trained mapseg .keras model ("bundled": the one mapseg ships) whose weights start the
    # run, to fine-tune it on other labels; its architecture is used (see make_config).
    init_model: str | None = None
    # Output channels: 1 logit per pixel per entry of ``channels``.
    output_channels: int = 1
    # What each output channel predicts: "building" first, then "contact" (pixels near two
    # buildings) and/or "boundary" (each building's rim); the extra ones separate touching
    # buildings in tile-infer (docs/tile-infer.md, "Touching buildings").
    channels: tuple[str, ...] = ("building",)


@dataclass(frozen=True)
class TrainConfig:
    """Data, optimisation and callbacks of a training run."""

    # Images per batch.
    batch_size: int = 64
    # Maximum number of epochs (early stopping may end sooner).
    epochs: int = 200
    # Fraction of images for train+valid; the rest is the test split.
    train_size: float = 0.7
    # Fraction of train+valid held out for validation.
    valid_size: float = 0.3
    # Seed for splits and shuffling (the seed post's 108241).
    seed: int = 108241
    # COCO category ids whose union is the building mask (None: all categories in the file).
    category_ids: tuple[int, ...] | None = None
    # How images of another size than input_size are brought to it.
    resize_mode: Literal["resize", "crop"] = "resize"
    # Apply the seed's augmentation policy to training batches.
    augment: bool = True
    # Weight of binary cross-entropy in the combo loss (CL_CE_W); dice gets 1 - ce_weight.
    ce_weight: float = 0.05
    # Initial learning rate (LR_INITIAL).
    lr_initial: float = 0.005
    # "sgdr": CosineDecayRestarts (per optimizer step); "constant": lr_initial throughout.
    lr_schedule: Literal["sgdr", "constant"] = "sgdr"
    # Steps of the first SGDR cycle (LR_FIRST_DECAY_STEPS).
    lr_first_decay_steps: int = 50
    # SGDR cycle length multiplier.
    lr_t_mul: float = 1.0
    # SGDR restart amplitude multiplier.
    lr_m_mul: float = 0.7
    # SGDR floor as a fraction of lr_initial.
    lr_alpha: float = 0.1
    # ReduceLROnPlateau; only with lr_schedule="constant" (Keras cannot reduce a schedule).
    reduce_lr_on_plateau: bool = False
    # Epochs without val_loss improvement before early stopping (None: epochs // 3).
    early_stopping_patience: int | None = None
    # Epochs without improvement before ReduceLROnPlateau (None: max(5, epochs // 10)).
    reduce_lr_patience: int | None = None
    # TensorBoard weight histograms every N epochs (0: off).
    histogram_freq: int = 10
    # float16 compute with float32 variables (GPU only pays off).
    mixed_precision: bool = False
    # "mirrored": MirroredStrategy over this machine's GPUs; "multiworker":
    # MultiWorkerMirroredStrategy over the machines in TF_CONFIG (JAX: DataParallel for both).
    strategy: Literal["default", "mirrored", "multiworker"] = "default"
    # Parallel data-loading workers (threads) feeding the model.
    workers: int = 2
    # Number of test images in the prediction grid picture.
    preview_images: int = 8
    # Ground sampling distance of the training imagery in metres (crowdAI: ~0.3); used by tiling.
    gsd: float = 0.3
    # Metres per pixel of the COCO images when they are not at ``gsd`` (COCO carries no
    # resolution): samples are resampled to ``gsd``. None: each image record's ``gsd`` field
    # where it has one, else the images are taken to be at ``gsd``.
    image_gsd: float | None = None
    # Validate every N epochs (always also on the first epoch of a run or resume, and the last);
    # early-stopping and ReduceLROnPlateau patience stay in epochs. 1: every epoch (the seed).
    validation_freq: int = 1
    # Seconds between checkpoints (last.keras, best.keras, run.json); the first and last epoch
    # and Ctrl-C always save. A kill -9 loses at most this much training. 0: every epoch.
    checkpoint_interval: float = 120.0
    # Loss weight of each model channel (None: 1 for building, 0.5 for each other channel).
    channel_weights: tuple[float, ...] | None = None
    # Pixels within which two different buildings make a "contact" target pixel.
    contact_width: int = 2
    # Width in pixels of the "boundary" target rim inside each building.
    boundary_width: int = 2
    # Keep images without any building as negatives (all-background targets).
    keep_negatives: bool = True
    # Split by group instead of by image, so no group is in two splits (no leak between
    # neighbouring chips): "field:NAME" (a COCO image field, e.g. field:source, the raster
    # `mapseg chips` cut the chip from) or "pattern:REGEX" (first group of a regular
    # expression on file_name, e.g. pattern:^([a-z]+)_). None: split images at random.
    split_by: str | None = None
    # Choose the threshold, separation threshold and minimum building area on the
    # validation split after training, by building F1 (else 0.5 and the defaults).
    tune_threshold: bool = True

    def weights_for(self, channels: tuple[str, ...]) -> tuple[float, ...]:
        """Loss weight of each of ``channels`` (``channel_weights`` or the default)."""
        if self.channel_weights is not None:
            return tuple(float(w) for w in self.channel_weights)
        return tuple(1.0 if c == "building" else 0.5 for c in channels)

    @property
    def early_stopping(self) -> int:
        """Effective early-stopping patience (the seed's EPOCHS // 3)."""
        if self.early_stopping_patience is not None:
            return self.early_stopping_patience
        return max(1, self.epochs // 3)

    @property
    def reduce_lr(self) -> int:
        """Effective ReduceLROnPlateau patience (the seed's max(5, EPOCHS // 10))."""
        if self.reduce_lr_patience is not None:
            return self.reduce_lr_patience
        return max(5, self.epochs // 10)


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; saved as ``config.json`` in the run directory."""

    preset: str = "seed-b4"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(
            preset=data.get("preset", "custom"),
            model=_build(ModelConfig, data.get("model", {})),
            train=_build(TrainConfig, data.get("train", {})),
        )


PRESETS: dict[str, RunConfig] = {
    # The seed post, exactly.
    "seed-b4": RunConfig(preset="seed-b4"),
    # A CPU-friendly model that starts from the ImageNet EfficientNetB0 weights.
    "b0": RunConfig(
        preset="b0",
        model=ModelConfig(
            encoder="efficientnetb0", input_size=(256, 256), decoder_filters=(256, 128, 64, 32)
        ),
        train=TrainConfig(batch_size=8, epochs=30),
    ),
    # Seconds-per-epoch model for tests, demos and smoke runs; not for production maps.
    "tiny": RunConfig(
        preset="tiny",
        model=ModelConfig(
            encoder="tiny",
            input_size=(64, 64),
            skip_layers=("tiny_stage1", "tiny_stage2", "tiny_stage3", "tiny_stage4", "tiny_stage5"),
            decoder_filters=(64, 32, 16, 8),
            decoder_dropout=0.0,
            encoder_trainable=True,
            encoder_weights=None,
        ),
        train=TrainConfig(batch_size=4, epochs=3, lr_schedule="constant", lr_initial=0.003),
    ),
}


def _build(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} option(s) {sorted(unknown)}; valid ones are {sorted(names)}"
        )
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return validate(cls(**fixed))


def validate(config: Any) -> Any:
    """Check one config object; raise :class:`ConfigError` naming the fix."""
    if isinstance(config, ModelConfig):
        if config.encoder not in ENCODERS:
            raise ConfigError(f"unknown encoder {config.encoder!r}; choose one of {ENCODERS}")
        if len(config.decoder_filters) != len(config.skip_layers) - 1:
            raise ConfigError(
                f"decoder_filters has {len(config.decoder_filters)} entries but "
                f"{len(config.skip_layers)} skip layers need {len(config.skip_layers) - 1}"
            )
        if min(config.input_size) < 32:
            raise ConfigError("input_size must be at least 32x32 (the encoder downsamples 32x)")
        if config.encoder.startswith("efficientnet") and config.bands != 3:
            raise ConfigError("EfficientNet encoders take 3 bands; use --bands 3 or encoder tiny")
        from mapseg_core.data.targets import check_channels

        check_channels(config.channels)
        if config.output_channels != len(config.channels):
            raise ConfigError(
                f"output_channels is {config.output_channels} but channels lists "
                f"{len(config.channels)} ({', '.join(config.channels)}); drop output_channels "
                "and give --channels only"
            )
    if isinstance(config, TrainConfig):
        if config.reduce_lr_on_plateau and config.lr_schedule != "constant":
            raise ConfigError(
                "ReduceLROnPlateau cannot change a scheduled learning rate; "
                "pass --lr-schedule constant with --reduce-lr-on-plateau"
            )
        if not 0 < config.train_size < 1 or not 0 < config.valid_size < 1:
            raise ConfigError("train_size and valid_size must be between 0 and 1")
        if config.batch_size < 1 or config.epochs < 1:
            raise ConfigError("batch_size and epochs must be at least 1")
        if config.validation_freq < 1:
            raise ConfigError(
                f"validation_freq must be at least 1 epoch, got {config.validation_freq}; "
                "pass --validation-freq 1 to validate every epoch"
            )
        if not config.checkpoint_interval >= 0:
            raise ConfigError(
                f"checkpoint_interval must be 0 or more seconds, got {config.checkpoint_interval}; "
                "pass --checkpoint-interval 0 to save after every epoch"
            )
        if config.channel_weights is not None and min(config.channel_weights, default=0) < 0:
            raise ConfigError("channel_weights must be 0 or more, e.g. --channel-weights 1,0.5")
        if config.contact_width < 1 or config.boundary_width < 1:
            raise ConfigError("contact_width and boundary_width must be at least 1 pixel")
        for name in ("gsd", "image_gsd"):
            value = getattr(config, name)
            if value is not None and not value > 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{name} must be positive metres per pixel, got {value}; e.g. {flag} 0.3"
                )
        if config.split_by is not None:
            from mapseg_core.data.splits import parse_split_by

            parse_split_by(config.split_by)
    return config


#: ModelConfig fields that shape the network's weights: a fine-tuned model keeps its source's.
ARCHITECTURE_FIELDS = (
    "encoder",
    "bands",
    "skip_layers",
    "decoder_filters",
    "decoder_kernel_size",
    "decoder_activation",
    "size_fix",
    "output_channels",
    "channels",
)


def make_config(preset: str | None = "seed-b4", **overrides: Any) -> RunConfig:
    """The preset's configuration with field overrides (``None`` values are ignored).

    With ``init_model`` (fine-tuning a trained model), the model fields and the
    GSD default to that model's own and its architecture may not change; the
    preset defaults to the one it was trained with.

    Args:
        preset: one of :data:`PRESETS`; None: ``seed-b4``, or ``init_model``'s.
        **overrides: ModelConfig or TrainConfig field names, as the CLI options.
    """
    if overrides.get("init_model") is not None:
        source = init_model_config(str(overrides["init_model"]))
        overrides = _inherit(source, overrides)
        if preset is None and source.get("preset") in PRESETS:
            preset = source["preset"]
    preset = preset or "seed-b4"
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = PRESETS[preset]
    model_names = {f.name for f in dataclasses.fields(ModelConfig)}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    model_kw: dict[str, Any] = {}
    train_kw: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in model_names:
            model_kw[key] = value
        elif key in train_names:
            train_kw[key] = value
        else:
            raise ConfigError(f"unknown option {key!r}")
    if "encoder_weights" in model_kw and model_kw["encoder_weights"] in ("none", "None", ""):
        model_kw["encoder_weights"] = None
    if "channels" in model_kw and "output_channels" not in model_kw:
        model_kw["channels"] = tuple(model_kw["channels"])
        model_kw["output_channels"] = len(model_kw["channels"])
    model = validate(dataclasses.replace(base.model, **model_kw))
    train = validate(dataclasses.replace(base.train, **train_kw))
    if train.channel_weights is not None and len(train.channel_weights) != len(model.channels):
        raise ConfigError(
            f"channel_weights has {len(train.channel_weights)} entries for "
            f"{len(model.channels)} channels ({', '.join(model.channels)}); give one per channel"
        )
    return RunConfig(preset=preset, model=model, train=train)


def init_model_config(spec: str) -> dict[str, Any]:
    """The training config (``RunConfig.to_dict()``) stored in the model ``spec`` names.

    Raises:
        ConfigError: not a mapseg ``.keras`` model, or one without its training config.
    """
    from mapseg_core.models.artifact import init_model_path, read_metadata

    try:
        path = init_model_path(spec)
        meta = read_metadata(path)
    except MapsegError as exc:
        raise ConfigError(f"--init-model: {exc}") from None
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ConfigError(
            f"--init-model {spec} has no training config; pass a .keras model written by "
            "mapseg train (or bundled)"
        )
    return config


def _inherit(source: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` on top of a source model's fields; an architecture change is an error."""
    model = dict(source["model"])
    if overrides.get("encoder_weights") is not None:
        raise ConfigError(
            "--encoder-weights and --init-model both give the starting weights; "
            "drop --encoder-weights (a fine-tuned model starts from --init-model's)"
        )
    for name in ARCHITECTURE_FIELDS:
        given = overrides.get(name)
        mine = model.get(name)
        if given is not None and _plain(given) != _plain(mine):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {_show(given)} differs from --init-model's {_show(mine)}: a fine-tuned "
                f"model keeps its architecture; drop {flag}"
            )
    inherited = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in model.items()
        if k not in ("encoder_weights", "init_model")
    }
    train = source.get("train", {})
    if isinstance(train, dict) and train.get("gsd") is not None:
        inherited["gsd"] = train["gsd"]
    given = {k: v for k, v in overrides.items() if v is not None}
    # The weights come from the model: no ImageNet file is needed or used ("none": None).
    return {**inherited, **given, "encoder_weights": "none"}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


@dataclass(frozen=True)
class TileConfig:
    """Options of ``mapseg tile-infer`` (tiled inference over rasters -> GeoPackage).

    Field names are the CLI option names (``block_size`` is ``--block-size``).
    """

    # 1-based raster bands fed to the model, in model order (None: from the colour
    # interpretation, else the first bands; see docs/tile-infer.md for the rules).
    bands: tuple[int, ...] | None = None
    # Nodata override: a value ("255"), "none" to ignore the declared value, None: as declared.
    nodata: float | Literal["none"] | None = None
    # CRS to assume for rasters without one ("EPSG:32633"); None refuses such rasters.
    assume_crs: str | None = None
    # Metres per pixel to run the model at (None: the model's gsd; "native": never resample).
    gsd: float | Literal["native"] | None = None
    # Relative GSD difference below which a raster is used at its own resolution.
    gsd_tolerance: float = 0.05
    # Pixels cropped at each model-window side (None: the model's receptive_margin).
    overlap: int | None = None
    # Side of a processing block in pixels (rounded up to whole window cores).
    block_size: int = 1024
    # Model windows per predict call.
    batch_size: int = 8
    # Round the window core down to a multiple of this (network downsampling; 1 disables).
    align: int = 32
    # Probability at or above which a pixel is a building (None: the model's threshold).
    threshold: float | None = None
    # "auto": uint8 as is, other dtypes stretched by percentiles; "percentile"; "none".
    normalization: Literal["auto", "percentile", "none"] = "auto"
    # Low and high percentile of the per-raster stretch.
    percentiles: tuple[float, float] = (2.0, 98.0)
    # Buildings smaller than this (square metres) are dropped (None: the model's, 2.0 by default).
    min_area: float | None = None
    # Outline style: "clean" (simplified, right angles where the building has them), "simple"
    # (simplified only) or "pixel" (pixel-exact); None: the model's ("clean" by default).
    outline: Literal["clean", "simple", "pixel"] | None = None
    # Simplification tolerance in metres (None: simplify_px pixels of the model's grid).
    simplify: float | None = None
    # Tolerance in pixels of the grid the model runs on, used when simplify is None
    # (set from the model's metadata by tile-infer).
    simplify_px: float = 1.5
    # Older flag, same as outline="clean".
    regularize: bool = False
    # Output layer name.
    layer: str = "buildings"
    # Output CRS (None: the first raster's CRS).
    crs: str | None = None
    # Replace an existing output instead of refusing.
    overwrite: bool = False
    # Also write the probabilities (uint8 GeoTIFF, scale 1/255) on the input grid here.
    save_probabilities: str | None = None
    # Also write the building mask (uint8 0/1 GeoTIFF) on the input grid here.
    save_mask: str | None = None
    # Separate touching buildings with the model's contact/boundary channels
    # (None: when the model has them; False: connected components of the mask).
    separate: bool | None = None
    # Test-time augmentation: average each model input over flips and 90-degree rotations.
    tta: bool = False

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.batch_size < 1:
            raise ConfigError("block_size and batch_size must be at least 1")
        if self.overlap is not None and self.overlap < 0:
            raise ConfigError(f"overlap must be 0 or more pixels, got {self.overlap}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be between 0 and 1, got {self.threshold}")
        if (self.min_area or 0) < 0 or (self.simplify or 0) < 0 or self.simplify_px < 0:
            raise ConfigError("min_area and simplify must be 0 or more (metres)")
        if self.outline not in (None, "clean", "simple", "pixel"):
            raise ConfigError(f"unknown outline {self.outline!r}; use clean, simple or pixel")
        if self.outline == "pixel" and (self.regularize or self.simplify):
            raise ConfigError(
                "--outline pixel keeps pixel-exact outlines; drop --simplify / --regularize"
            )
        if isinstance(self.gsd, float | int) and self.gsd <= 0:
            raise ConfigError(f"gsd must be positive metres per pixel, got {self.gsd}")
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise ConfigError("bands are 1-based raster band numbers, e.g. --bands 1,2,3")
