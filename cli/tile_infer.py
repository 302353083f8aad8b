"""``mapseg tile-infer``: rasters in, one building layer out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mapseg_cli.options import band_list, config_default, is_quiet, overwrite, verbosity
from mapseg_cli.progress import ProgressPrinter, progress_option
from mapseg_core.config import TileConfig


def _nodata(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    if value is None or value.lower() == "none":
        return None if value is None else "none"
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter("give a number, or 'none' to ignore the declared nodata") from None


def _gsd(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    if value is None or value.lower() == "native":
        return None if value is None else "native"
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter("give metres per pixel, or 'native' to never resample") from None


@click.command("tile-infer")
@click.argument("rasters", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="GeoPackage to write (refused if it exists, unless --overwrite).",
)
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    help="mapseg model file: .keras written by mapseg train, or .onnx written by mapseg "
    "export (ONNX Runtime, no TensorFlow). Default: the bundled model.",
)
@click.option("--bands", callback=band_list, help="Raster bands in model order, e.g. 1,2,3.")
@click.option(
    "--nodata",
    callback=_nodata,
    help="Nodata value to use instead of the declared one; 'none' ignores it.",
)
@click.option("--assume-crs", help="CRS for rasters without one, e.g. EPSG:32633.")
@click.option(
    "--gsd",
    callback=_gsd,
    help="Metres per pixel to run the model at (default: the model's); 'native'.",
)
@click.option(
    "--overlap",
    type=int,
    help="Pixels cropped at each window side (default: the model's receptive margin).",
)
@click.option(
    "--block-size",
    type=int,
    default=config_default(TileConfig, "block_size"),
    show_default=True,
    help="Block side in pixels (memory per block; rounded to whole windows).",
)
@click.option(
    "--batch-size",
    type=int,
    default=config_default(TileConfig, "batch_size"),
    show_default=True,
    help="Windows per predict.",
)
@click.option("--threshold", type=float, help="Building probability (default: the model's).")
@click.option(
    "--normalization",
    type=click.Choice(["auto", "percentile", "none"]),
    default=config_default(TileConfig, "normalization"),
    show_default=True,
    help="Input scaling rule (see docs).",
)
@click.option(
    "--min-area",
    type=float,
    help="Drop buildings smaller than this, square metres (default: the model's, 2).",
)
@click.option(
    "--outline",
    type=click.Choice(["clean", "simple", "pixel"]),
    help="Building outlines: clean (simplified, right angles where the building has them), "
    "simple (simplified only), pixel (pixel-exact). Default: the model's (clean). "
    "$ mapseg tile-infer ortho.tif -o out.gpkg --outline pixel",
)
@click.option(
    "--simplify",
    type=float,
    help="Simplification tolerance in metres (default: the model's, 1.5 pixels of its GSD).",
)
@click.option("--regularize", is_flag=True, help="Same as --outline clean (older flag).")
@click.option(
    "--separate/--no-separate",
    default=None,
    help="Split touching buildings with the model's contact/boundary channels "
    "(default: when the model has them), e.g. --no-separate for connected components.",
)
@click.option(
    "--tta",
    is_flag=True,
    help="Test-time augmentation: average each window over flips and 90-degree rotations "
    "(8x the model time), e.g. --tta.",
)
@click.option(
    "--layer",
    default=config_default(TileConfig, "layer"),
    show_default=True,
    help="Output layer name.",
)
@click.option("--crs", help="Output CRS (default: the first raster's).")
@click.option(
    "--save-probabilities",
    type=click.Path(path_type=Path),
    help="Also write probabilities as a GeoTIFF on the input grid.",
)
@click.option(
    "--save-mask",
    type=click.Path(path_type=Path),
    help="Also write the building mask as a GeoTIFF on the input grid.",
)
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS",
    help="Run blocks on the Dask scheduler at ADDRESS, e.g. tcp://host:8786 (docs/cluster.md).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Run blocks on a local Dask cluster of N worker processes.",
)
@click.option(
    "--job-dir",
    type=click.Path(path_type=Path),
    help="Keep finished blocks here; the same command continues a killed run.",
)
@overwrite
@progress_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@verbosity
def tile_infer(
    rasters: tuple[str, ...],
    output: Path,
    model: Path | None,
    progress_mode: str,
    as_json: bool,
    **options: Any,
) -> None:
    """Detect buildings in RASTER(s) and write one GeoPackage layer.

    Reads block by block (never the whole raster), predicts overlapping
    windows and keeps each window's centre (no seams), merges buildings cut
    by block borders exactly, and writes polygons with id, area_m2, score and
    source. Several rasters go into one layer, in the first raster's CRS.

    \b
    $ mapseg tile-infer ortho.tif -o buildings.gpkg
    $ mapseg tile-infer ortho.tif -o buildings.gpkg --model run/model.keras
    $ mapseg tile-infer ortho.tif -o buildings.gpkg --model buildings.onnx
    $ mapseg tile-infer a.tif b.tif -o out.gpkg --model m.keras --simplify 0.5
    $ mapseg tile-infer ortho.tif -o pixels.gpkg --outline pixel
    $ mapseg tile-infer mass.tif -o out.gpkg --model m.keras --nodata none --progress json
    $ mapseg tile-infer 'tiles/*.tif' -o out.gpkg --model m.keras --workers 4 --job-dir job
    $ mapseg tile-infer mosaic.vrt -o out.gpkg --model m.keras --dask tcp://head:8786 --job-dir job
    $ mapseg tile-infer ortho.tif -o out.gpkg --model terraces.keras --tta --no-separate

    Outlines are clean by default (simplified by 1.5 pixels of the model's GSD,
    right angles where the building is rectilinear, any orientation); the
    model file can carry other defaults. --outline pixel gives the mask's
    pixel-exact outlines.

    With --job-dir, a killed run continues when the same command is run again.
    Exit code 4: some blocks failed twice; they are named, the rest is written.
    """
    import json

    from mapseg_core.config import TileConfig
    from mapseg_core.inference.engine import tile_infer as run
    from mapseg_core.models.artifact import resolve_model

    for key in ("save_probabilities", "save_mask"):
        if options.get(key) is not None:
            options[key] = str(options[key])
    from mapseg_core.distributed.inputs import expand_rasters

    dask_address = options.pop("dask_address")
    workers = options.pop("workers")
    job_dir = options.pop("job_dir")
    with ProgressPrinter(progress_mode, desc="tile-infer", quiet=is_quiet()) as printer:
        model = resolve_model(model)
        config = TileConfig(**options)
        paths = expand_rasters(rasters)
        if dask_address is None and workers is None and job_dir is None:
            summary = run(paths, output, model, config, report=printer)
        else:
            from mapseg_core.distributed.scheduler import JobOptions, tile_infer_job

            job = JobOptions(
                dask=dask_address,
                workers=workers,
                job_dir=None if job_dir is None else str(job_dir),
            )
            summary = tile_infer_job(paths, output, model, config, job, report=printer)
    if as_json and progress_mode != "json":
        click.echo(json.dumps(summary, default=str))
    elif progress_mode != "json" and not is_quiet():
        click.echo(
            f"{summary['features']} buildings -> {summary['output']} "
            f"({summary['seconds']:.1f} s, {summary['mpx_per_s'] or 0:.2f} Mpx/s, "
            f"{summary['km2_per_h'] or 0:.1f} km2/h)",
            err=True,
        )
