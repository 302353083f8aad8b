"""``mapseg train``: train a U-Net on a COCO export."""

from __future__ import annotations

from pathlib import Path

import click

from mapseg_cli.options import is_quiet, overwrite, verbosity
from mapseg_cli.progress import ProgressPrinter, progress_option
from mapseg_core.config import ENCODERS, PRESETS

_HELP = """Train a building U-Net on a COCO export (CVAT, Label Studio, crowdAI...).

\b
$ mapseg train annotation.json images/ -o run --preset b0 \\
      --encoder-weights ../shared/weights/efficientnetb0_imagenet_notop.weights.h5
$ mapseg train annotation.json images/ -o run --preset seed-b4 --epochs 1 --encoder-weights none
$ mapseg train --resume run --epochs 40
$ mapseg train annotation.json images/ -o run --preset b0 --validation-freq 5
$ mapseg train chips.json chips/ -o run --preset b0 --channels building,contact \\
      --split-by field:source
$ mapseg train chips.json chips/ -o run --init-model bundled --epochs 20 --lr-initial 0.0001

Writes RUN_DIR/model.keras (the model file for evaluate, tile-infer and QGIS),
best.keras, splits.json, config.json, history.csv, report.csv, TensorBoard logs
and three pictures: lr_schedule.png, training_curves.png, predictions.png.
Every option defaults to the preset's value (seed-b4 is the seed post's setup).
--init-model fine-tunes a trained model (bundled: the one mapseg ships) on
these labels: the run starts from its weights and keeps its architecture;
its preset, model options and GSD are the defaults.
The learning rate is either the SGDR schedule or constant; ReduceLROnPlateau
only works with a constant rate (--lr-schedule constant --reduce-lr-on-plateau),
because Keras cannot lower a scheduled rate. An interrupted run (Ctrl-C, kill)
resumes with --resume RUN_DIR: from its last finished epoch after Ctrl-C, from
its last checkpoint (at most --checkpoint-interval seconds old) after a kill.
"""


def _int_pair(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter("use HEIGHT,WIDTH, e.g. 256,256") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise click.BadParameter("use HEIGHT,WIDTH, e.g. 256,256")
    return (parts[0], parts[1])


def _int_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("use comma-separated integers, e.g. 100,101") from None


def _name_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """Channel names; checked by the config (one-line ConfigError naming the valid ones)."""
    if value is None:
        return None
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _float_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, ...] | None:
    from mapseg_core.errors import ConfigError

    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"{param.opts[0]} {value!r}: use comma-separated numbers, e.g. 1,0.5"
        ) from None


@click.command("train", help=_HELP)
@click.argument("annotations", required=False, type=click.Path(path_type=Path))
@click.argument("images_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", "run_dir", type=click.Path(path_type=Path), help="Run directory to create."
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    help="Continue the run in this directory from its last finished epoch.",
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    help="Starting configuration (default: seed-b4, or --init-model's).",
)
@click.option(
    "--init-model",
    help="Fine-tune: start from this trained mapseg .keras model's weights, or bundled. "
    "$ mapseg train a.json images -o run --init-model bundled --lr-initial 0.0001",
)
@click.option("--encoder", type=click.Choice(list(ENCODERS)))
@click.option("--encoder-weights", help="imagenet, a local weights file, or none.")
@click.option(
    "--encoder-trainable/--encoder-frozen",
    default=None,
    help="Fine-tune the encoder (batch norm stays frozen) or keep it frozen.",
)
@click.option("--input-size", callback=_int_pair, help="Model input HEIGHT,WIDTH in pixels.")
@click.option(
    "--decoder-filters", callback=_int_list, help="Decoder widths, e.g. 1024,512,256,128."
)
@click.option(
    "--size-fix",
    type=click.Choice(["crop", "conv"]),
    help="crop: the seed's Cropping2D; conv: its learned-conv idea.",
)
@click.option("--epochs", type=int, help="Maximum epochs.")
@click.option("--batch-size", type=int, help="Images per batch.")
@click.option("--lr-initial", type=float, help="Initial learning rate.")
@click.option(
    "--lr-schedule",
    type=click.Choice(["sgdr", "constant"]),
    help="SGDR (cosine decay with restarts) or constant; excludes ReduceLROnPlateau.",
)
@click.option("--lr-first-decay-steps", type=int, help="Steps of the first SGDR cycle.")
@click.option(
    "--reduce-lr-on-plateau",
    is_flag=True,
    default=None,
    help="Lower a constant learning rate when val_loss stalls (needs --lr-schedule constant).",
)
@click.option("--ce-weight", type=float, help="BCE weight of the combo loss (dice gets the rest).")
@click.option(
    "--category-ids", callback=_int_list, help="COCO category ids to segment (default all)."
)
@click.option(
    "--resize-mode",
    type=click.Choice(["resize", "crop"]),
    help="Bring other image sizes to the input size by resizing or centre-cropping.",
)
@click.option(
    "--augment/--no-augment", default=None, help="The seed's augmentation on train batches."
)
@click.option("--mixed-precision", is_flag=True, default=None, help="float16 compute (GPUs).")
@click.option(
    "--strategy",
    type=click.Choice(["default", "mirrored", "multiworker"]),
    help="mirrored: MirroredStrategy over all visible GPUs; multiworker: "
    "MultiWorkerMirroredStrategy over the machines in TF_CONFIG (docs/cluster.md); "
    "with KERAS_BACKEND=jax both use keras.distribution.DataParallel.",
)
@click.option("--workers", type=int, help="Data-loading threads.")
@click.option("--seed", type=int, help="Seed of the splits and shuffling.")
@click.option("--train-size", type=float, help="Fraction of images for train+valid (rest: test).")
@click.option("--valid-size", type=float, help="Fraction of train+valid held out for validation.")
@click.option(
    "--gsd",
    type=float,
    help="Metres per pixel the model learns at (its GSD); the images too unless --image-gsd.",
)
@click.option(
    "--image-gsd",
    type=float,
    help="Metres per pixel of the COCO images, resampled to --gsd (default: each image "
    "record's gsd field, else --gsd). $ mapseg train a.json images -o run --gsd 0.3 "
    "--image-gsd 0.15",
)
@click.option(
    "--validation-freq",
    type=click.IntRange(min=1),
    help="Validate every N epochs (and on the first and last); patience stays in epochs. "
    "$ mapseg train a.json images -o run --preset b0 --validation-freq 5",
)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(min=0),
    help="Seconds between checkpoints (Ctrl-C, the first and the last epoch always save; "
    "kill -9 loses at most this much); 0: every epoch. "
    "$ mapseg train a.json images -o run --checkpoint-interval 0",
)
@click.option(
    "--channels",
    callback=_name_list,
    help="Model outputs, building first, e.g. building,contact (or building,contact,boundary): "
    "the extra channels let tile-infer separate touching buildings.",
)
@click.option(
    "--channel-weights",
    callback=_float_list,
    help="Loss weight per channel, e.g. 1,0.5 (default: 1 for building, 0.5 for the others).",
)
@click.option(
    "--contact-width", type=int, help="Contact target: pixels near two buildings, e.g. 2."
)
@click.option("--boundary-width", type=int, help="Boundary target: rim width in pixels, e.g. 2.")
@click.option(
    "--keep-negatives/--no-keep-negatives",
    default=None,
    help="Train on images without buildings too (default: yes), e.g. --no-keep-negatives.",
)
@click.option(
    "--split-by",
    help="Spatial splits: whole groups per split, by a COCO image field (field:source, the "
    "raster of a mapseg chips chip) or a file-name pattern ('pattern:^([a-z]+)_').",
)
@click.option(
    "--tune-threshold/--no-tune-threshold",
    default=None,
    help="Choose the threshold, separation threshold and minimum area on the validation "
    "split after training, by building F1@0.5 (default: yes; see postprocess_search in the "
    "model file).",
)
@overwrite
@progress_option
@verbosity
def train(
    annotations: Path | None,
    images_dir: Path | None,
    run_dir: Path | None,
    resume_dir: Path | None,
    preset: str | None,
    overwrite: bool,
    progress_mode: str,
    **options: object,
) -> None:
    from mapseg_core.config import make_config
    from mapseg_core.training import train as training
    from mapseg_core.training.report import format_table

    with ProgressPrinter(progress_mode, desc="train", quiet=is_quiet()) as printer:
        if resume_dir is not None:
            if annotations or run_dir:
                raise click.UsageError("--resume RUN_DIR takes no ANNOTATIONS, IMAGES_DIR or -o")
            result = training.resume(
                resume_dir,
                epochs=options.get("epochs"),  # type: ignore[arg-type]
                report=printer,
            )
        else:
            if annotations is None or images_dir is None or run_dir is None:
                raise click.UsageError(
                    "give ANNOTATIONS IMAGES_DIR -o RUN_DIR, or --resume RUN_DIR"
                )
            config = make_config(preset, **options)
            result = training.train(
                annotations, images_dir, run_dir, config, overwrite=overwrite, report=printer
            )
    if progress_mode != "json" and not is_quiet():
        click.echo(format_table(result.results))
        click.echo(f"model: {result.model_path}")
