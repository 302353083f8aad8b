"""``mapseg evaluate-vectors`` door: table, --json, histogram PNG, refusal, one-line errors."""

from __future__ import annotations

import json

import geopandas as gpd
from click.testing import CliRunner
from PIL import Image
from rasters import CRS
from shapely.geometry import box

from mapseg_cli.main import cli


def _layers(tmp_path):
    refs = [box(k * 20, 0, k * 20 + 10, 10) for k in range(3)]
    preds = [box(0, 0, 10, 10), box(20, 0, 30, 8)]
    ref, pred = tmp_path / "ref.gpkg", tmp_path / "pred.gpkg"
    gpd.GeoDataFrame(geometry=refs, crs=CRS).to_file(ref)
    gpd.GeoDataFrame(geometry=preds, crs=CRS).to_file(pred)
    return pred, ref


def test_json_and_histogram(tmp_path):
    pred, ref = _layers(tmp_path)
    png = tmp_path / "iou.png"
    args = [
        "evaluate-vectors",
        str(pred),
        str(ref),
        "--aoi",
        "-1,-1,60,11",
        "--histogram",
        str(png),
    ]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    data = json.loads(result.stdout)
    assert (data["tp"], data["fp"], data["fn"]) == (2, 0, 1)
    assert data["precision"] == 1.0 and Image.open(png).format == "PNG"
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 3 and "--overwrite" in refused.stderr
    table = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert table.exit_code == 0 and "F1@0.5" in table.stdout


def test_missing_reference_is_one_line(tmp_path):
    pred, _ = _layers(tmp_path)
    result = CliRunner().invoke(cli, ["evaluate-vectors", str(pred), str(tmp_path / "no.gpkg")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no.gpkg" in lines[0] and lines[0].startswith("mapseg: error:")
