"""``mapseg evaluate``: the seed's report table for a model on COCO images."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapseg_cli.options import is_quiet, json_output, overwrite, verbosity
from mapseg_cli.progress import ProgressPrinter, progress_option

_HELP = """Score a mapseg model on a COCO export: loss, binary accuracy, Dice,
spatial true-positive rate and IoU.

\b
$ mapseg evaluate run/model.keras annotation.json images/ --split-file run/splits.json
$ mapseg evaluate model.keras annotation.json images/ --json
$ mapseg evaluate model.keras annotation.json images/ --csv scores.csv
$ mapseg evaluate model.keras chips/annotation.json chips/images --no-polygons

Besides the pixel table, buildings are scored as instances (connected
components of the prediction, score = mean probability): COCO AP, AP50, AP75,
AR (pycocotools COCOeval, segm) and F1 / precision / recall at IoU >= 0.5
(one-to-one matching, the SpaceNet rule).

Without --split-file every annotated image is scored as one column, "all".
"""


@click.command("evaluate", help=_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("annotations", type=click.Path(path_type=Path))
@click.argument("images_dir", type=click.Path(path_type=Path))
@click.option(
    "--split-file",
    type=click.Path(path_type=Path),
    help="A run's splits.json: score its train, valid and test images.",
)
@click.option(
    "--splits",
    default="train,valid,test",
    show_default=True,
    help="Which splits of --split-file to score.",
)
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option(
    "--csv", "csv_path", type=click.Path(path_type=Path), help="Also write the table as CSV."
)
@click.option(
    "--polygons/--no-polygons",
    default=True,
    show_default=True,
    help="Also score buildings as polygons: COCO AP/AP50/AP75/AR and F1@0.5 (SpaceNet rule).",
)
@click.option(
    "--image-gsd",
    type=click.FloatRange(min=0, min_open=True),
    help="Metres per pixel of the COCO images; they are resampled to the model's GSD "
    "(default: each image record's gsd field, else the model's). "
    "$ mapseg evaluate model.keras crowdai.json images/ --image-gsd 0.3",
)
@json_output
@overwrite
@progress_option
@verbosity
def evaluate(
    model: Path,
    annotations: Path,
    images_dir: Path,
    split_file: Path | None,
    splits: str,
    batch_size: int,
    csv_path: Path | None,
    polygons: bool,
    image_gsd: float | None,
    as_json: bool,
    overwrite: bool,
    progress_mode: str,
) -> None:
    from mapseg_core.atomic import check_output
    from mapseg_core.errors import ConfigError
    from mapseg_core.training.evaluate import SPLIT_NAMES, evaluate_model
    from mapseg_core.training.report import format_table, write_report_csv

    chosen = tuple(s.strip() for s in splits.split(",") if s.strip())
    if bad := [s for s in chosen if s not in SPLIT_NAMES]:
        raise ConfigError(f"unknown split(s) {bad}; use some of {','.join(SPLIT_NAMES)}")
    if csv_path is not None:
        check_output(csv_path, overwrite, "--csv")
    quiet = is_quiet() or as_json
    with ProgressPrinter(progress_mode, desc="evaluate", quiet=quiet) as printer:
        results = evaluate_model(
            model,
            annotations,
            images_dir,
            split_file=split_file,
            splits=chosen,
            batch_size=batch_size,
            polygons=polygons,
            image_gsd=image_gsd,
            report=printer,
        )
    if csv_path is not None:
        write_report_csv(results, csv_path)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    elif progress_mode != "json":
        click.echo(format_table(results))
        if polygons:
            from mapseg_core.evaluation.model import format_polygon_table

            click.echo("")
            click.echo(format_polygon_table(results))
