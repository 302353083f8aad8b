"""``mapseg preview``: a PNG of a raster with building polygons drawn over it."""

from __future__ import annotations

from pathlib import Path

import click

from mapseg_cli.options import overwrite, verbosity

_HELP = """Draw a GeoPackage's buildings over their raster, as a PNG.

\b
$ mapseg preview ortho.tif buildings.gpkg -o preview.png
$ mapseg preview ortho.tif buildings.gpkg -o preview.png --max-size 1000
"""


@click.command("preview", help=_HELP)
@click.argument("raster")
@click.argument("vectors", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="PNG to write."
)
@click.option("--layer", help="Layer of VECTORS (default: its first).")
@click.option("--max-size", default=1600, show_default=True, help="Longest side in pixels.")
@overwrite
@verbosity
def preview(
    raster: str, vectors: Path, output: Path, layer: str | None, max_size: int, overwrite: bool
) -> None:
    from mapseg_core.atomic import check_output
    from mapseg_core.preview import render_preview

    check_output(output, overwrite)
    click.echo(render_preview(raster, vectors, output, layer=layer, max_size=max_size))
