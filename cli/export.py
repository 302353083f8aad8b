"""``mapseg export``: a mapseg model as an ONNX file for Deepness and the light engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mapseg_cli.options import is_quiet, json_output, overwrite, verbosity

_HELP = """Export a mapseg .keras model as ONNX: one file that Deepness (QGIS) runs as
is and that mapseg tile-infer / evaluate run on ONNX Runtime without TensorFlow.

\b
$ mapseg export run/model.keras -o buildings.onnx
$ mapseg export -o bundled.onnx                  # the bundled model
$ mapseg export run/best.keras -o best.onnx --overwrite
$ mapseg tile-infer ortho.tif -o buildings.gpkg --model buildings.onnx

The graph takes channels-first tiles [batch, bands, S, S] of uint8 pixels
divided by 255 (Deepness' input) and returns building probabilities
[batch, 1, S, S]. Deepness' settings (model_type, class_names, resolution in
cm/px, tile_size, tiles_overlap, seg_thresh, seg_small_segment) and the
model's mapseg metadata (GSD, margin, outline defaults, bands) are written
in the file's metadata. Needs TensorFlow and tf2onnx: pip install
'mapseg[tensorflow,export]'. See docs/onnx.md.
"""


@click.command("export", help=_HELP)
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="ONNX file to write (refused if it exists, unless --overwrite). "
    "$ mapseg export model.keras -o model.onnx",
)
@click.option(
    "--opset",
    type=int,
    default=17,
    show_default=True,
    help="ONNX opset (13..23). $ mapseg export model.keras -o model.onnx --opset 13",
)
@overwrite
@json_output
@verbosity
def export(model: Path | None, output: Path, opset: int, overwrite: bool, as_json: bool) -> None:
    from mapseg_core.models.onnx_export import export_onnx

    if model is None:
        from mapseg_core.models.artifact import bundled_model_path

        model = bundled_model_path("keras")

    def report(event: dict[str, Any]) -> None:
        if event["event"] == "start" and not is_quiet() and not as_json:
            click.echo(f"exporting {model} to ONNX (under a minute for an EfficientNet)", err=True)

    summary = export_onnx(model, output, overwrite=overwrite, opset=opset, report=report)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    deepness = summary["deepness"]
    click.echo(
        f"wrote {summary['output']} ({summary['bytes'] / 1e6:.1f} MB, opset {summary['opset']}, "
        f"{summary['seconds']} s): tile {deepness['tile_size']} px, "
        f"{deepness['resolution']} cm/px, overlap {deepness['tiles_overlap']} %"
    )
