"""``mapseg chips``: a georeferenced raster and its footprints -> a COCO training set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mapseg_cli.options import band_list, is_quiet, json_output, overwrite, verbosity
from mapseg_cli.progress import ProgressPrinter, progress_option

_HELP = """Cut RASTER and its building LABELS into image chips and a COCO annotation.json
that `mapseg train` reads as it is.

\b
$ mapseg chips ortho.tif buildings.gpkg -o chips/
$ mapseg train chips/annotation.json chips/images -o run --preset b0
$ mapseg chips ortho.tif landcover.gpkg -o chips/ --where "Niveau_2 = 'Building'"
$ mapseg chips austin.tif austin_mask.tif -o chips/ --size 512 --skip-empty
$ mapseg chips rio.tif rio_mask.tif -o chips/ --nodata 0 --skip-nodata 0.5 --gsd 0.5

LABELS is a vector layer (GeoPackage, GeoJSON, Shapefile; any CRS, reprojected
to the raster's) or a raster mask (.tif: buildings where the value is > 0, or
equal to --mask-value). Each building is rasterized by the pixel-centre rule and
written as its exact pixel outline (COCO polygon), or as RLE when it has a hole.

Nodata: a pixel is nodata when all bands equal the nodata value (the declared
one unless --nodata). Pixels under a labelled building never count as nodata,
so white roofs equal to a declared nodata of 255 cannot get a chip dropped.
"""


def _nodata(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str:
    if value is None or value.lower() in ("auto", "none"):
        return "auto" if value is None else value.lower()
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(
            "give a number, 'none' to ignore the declared nodata, or 'auto'"
        ) from None


@click.command("chips", help=_HELP)
@click.argument("raster")
@click.argument("labels", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write annotation.json and images/ into.",
)
@click.option(
    "--size",
    default=300,
    show_default=True,
    type=int,
    help="Chip side in pixels (of the --gsd grid when resampling).",
)
@click.option("--stride", type=int, help="Pixels between chips (default: --size, no overlap).")
@click.option(
    "--gsd", type=float, help="Resample to this many metres per pixel (default: the raster's own)."
)
@click.option("--skip-empty", is_flag=True, help="Leave out chips without any building.")
@click.option(
    "--skip-nodata",
    type=float,
    metavar="FRACTION",
    help="Leave out chips with more than this fraction of nodata pixels.",
)
@click.option(
    "--nodata",
    callback=_nodata,
    help="Nodata value instead of the declared one; 'none' ignores it.",
)
@click.option("--bands", callback=band_list, help="Raster bands written as R,G,B, e.g. 1,2,3.")
@click.option("--layer", help="Layer of a multi-layer vector file.")
@click.option(
    "--where", help="SQL filter handed to GDAL (pyogrio where=), e.g. \"Niveau_2 = 'Building'\"."
)
@click.option("--labels-crs", help="CRS of labels that declare none, e.g. EPSG:32633.")
@click.option("--mask-value", type=int, help="Mask labels: building value (default: any > 0).")
@click.option(
    "--category-name",
    default="building",
    show_default=True,
    help="Name of the COCO category (id 1).",
)
@click.option(
    "--format",
    "image_format",
    type=click.Choice(["png", "jpg"]),
    default="png",
    show_default=True,
    help="Chip image format.",
)
@click.option(
    "--segmentation",
    type=click.Choice(["polygon", "rle"]),
    default="polygon",
    show_default=True,
    help="Pixel-exact polygons (RLE when holed), or RLE throughout.",
)
@click.option(
    "--min-pixels",
    default=1,
    show_default=True,
    type=int,
    help="Leave out building pieces smaller than this in a chip.",
)
@json_output
@overwrite
@progress_option
@verbosity
def chips(
    raster: str,
    labels: Path,
    output: Path,
    as_json: bool,
    overwrite: bool,
    progress_mode: str,
    **options: Any,
) -> None:
    from mapseg_core.data.chips import ChipConfig, make_chips

    config = ChipConfig(**options)
    quiet = is_quiet() or as_json
    with ProgressPrinter(progress_mode, desc="chips", quiet=quiet) as printer:
        summary = make_chips(raster, labels, output, config, overwrite=overwrite, report=printer)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    elif progress_mode != "json" and not is_quiet():
        click.echo(
            f"{summary.chips} chips, {summary.annotations} annotations "
            f"({summary.buildings} buildings on the raster; skipped: {summary.skipped_empty} "
            f"empty, {summary.skipped_nodata} nodata) -> {summary.output}/annotation.json"
        )
