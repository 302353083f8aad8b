"""``mapseg evaluate-vectors``: a predicted building layer against reference footprints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapseg_cli.options import is_quiet, json_output, overwrite, verbosity

_HELP = """Score predicted buildings PRED against reference footprints REFERENCE:
building F1 / precision / recall at IoU >= 0.5 (one-to-one matching, the
SpaceNet rule), IoU of the union, counts, polygon quality (mask and boundary
IoU, C-IoU, N-ratio, PoLiS in metres, max tangent angle error: see
docs/chips-and-metrics.md), and a per-building IoU histogram.

\b
$ mapseg evaluate-vectors buildings.gpkg reference.gpkg
$ mapseg evaluate-vectors buildings.gpkg landcover.gpkg --ref-where "Niveau_2 = 'Building'"
$ mapseg evaluate-vectors buildings.gpkg ref.geojson --aoi tile.gpkg --histogram iou.png --json
$ mapseg evaluate-vectors buildings.gpkg reference.gpkg --csv scores.csv

The reference is reprojected to the predictions' CRS. Both layers are clipped
to the common extent of their bounding boxes, or to --aoi (a polygon layer or
minx,miny,maxx,maxy in the predictions' CRS).
"""


@click.command("evaluate-vectors", help=_HELP)
@click.argument("pred", type=click.Path(path_type=Path))
@click.argument("reference", type=click.Path(path_type=Path))
@click.option("--pred-layer", help="Layer of PRED (default: the first).")
@click.option("--ref-layer", help="Layer of REFERENCE (default: the first).")
@click.option("--ref-where", help="SQL filter on REFERENCE, e.g. \"Niveau_2 = 'Building'\".")
@click.option("--aoi", help="Area to compare: a polygon layer, or minx,miny,maxx,maxy.")
@click.option(
    "--iou", default=0.5, show_default=True, type=float, help="IoU a matched pair must reach."
)
@click.option(
    "--histogram",
    type=click.Path(path_type=Path),
    help="Write the per-building IoU histogram to this PNG.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
    help="Also write the figures as CSV (metric,value). $ mapseg evaluate-vectors p.gpkg "
    "r.gpkg --csv scores.csv",
)
@json_output
@overwrite
@verbosity
def evaluate_vectors(
    pred: Path,
    reference: Path,
    pred_layer: str | None,
    ref_layer: str | None,
    ref_where: str | None,
    aoi: str | None,
    iou: float,
    histogram: Path | None,
    csv_path: Path | None,
    as_json: bool,
    overwrite: bool,
) -> None:
    from mapseg_core.atomic import check_output
    from mapseg_core.evaluation.vectors import evaluate_vectors as run
    from mapseg_core.evaluation.vectors import format_quality, plot_iou_histogram, write_vector_csv

    if histogram is not None:
        check_output(histogram, overwrite, "--histogram")
    if csv_path is not None:
        check_output(csv_path, overwrite, "--csv")
    result = run(
        pred,
        reference,
        pred_layer=pred_layer,
        ref_layer=ref_layer,
        ref_where=ref_where,
        aoi=aoi,
        iou=iou,
    )
    if histogram is not None:
        plot_iou_histogram(result, histogram)
    if csv_path is not None:
        write_vector_csv(result, csv_path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if is_quiet():
        return
    m = result.match
    click.echo(f"F1@{iou:g}         {m.f1:.4f}")
    click.echo(f"precision@{iou:g}  {m.precision:.4f}")
    click.echo(f"recall@{iou:g}     {m.recall:.4f}")
    click.echo(f"union IoU       {result.union_iou:.4f}")
    click.echo(
        f"buildings       {result.predicted} predicted, {result.reference} reference "
        f"({m.tp} matched, {m.fp} false, {m.fn} missed)"
    )
    for line in format_quality(result.quality):
        click.echo(line)
    if histogram is not None:
        click.echo(f"histogram       {histogram}")
