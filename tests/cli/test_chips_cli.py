"""``mapseg chips`` door: output, --json, one-line errors, refusal to overwrite."""

from __future__ import annotations

import json

import geopandas as gpd
from click.testing import CliRunner
from rasters import CRS, expected_world, scene, write_raster

from mapseg_cli.main import cli


def _inputs(tmp_path):
    img, shapes = scene()
    raster = write_raster(tmp_path / "scene.tif", img)
    labels = tmp_path / "labels.geojson"
    gpd.GeoDataFrame(geometry=expected_world(shapes), crs=CRS).to_file(labels, driver="GeoJSON")
    return raster, labels


def _one_line_error(result, *fragments):
    assert result.exit_code not in (0, 70), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapseg: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_chips_json_and_refusal(tmp_path):
    raster, labels = _inputs(tmp_path)
    out = tmp_path / "chips"
    args = ["chips", str(raster), str(labels), "-o", str(out), "--size", "64"]
    result = CliRunner().invoke(cli, [*args, "--json", "--skip-empty"])
    assert result.exit_code == 0, result.output + result.stderr
    summary = json.loads(result.stdout)
    assert summary["chips"] == len(list((out / "images").iterdir())) > 0
    assert summary["buildings"] == 8
    again = CliRunner().invoke(cli, args)
    _one_line_error(again, "--overwrite")
    replaced = CliRunner().invoke(cli, [*args, "--overwrite", "-q", "--format", "jpg"])
    assert replaced.exit_code == 0, replaced.stderr
    assert all(p.suffix == ".jpg" for p in (out / "images").iterdir())


def test_chips_errors_are_one_line(tmp_path):
    raster, labels = _inputs(tmp_path)
    missing = CliRunner().invoke(
        cli, ["chips", str(raster), str(tmp_path / "x.gpkg"), "-o", str(tmp_path / "o")]
    )
    _one_line_error(missing, "x.gpkg", "not found")
    bad_where = CliRunner().invoke(
        cli, ["chips", str(raster), str(labels), "-o", str(tmp_path / "o"), "--where", "nope = 1"]
    )
    _one_line_error(bad_where, "--where")
    bad_size = CliRunner().invoke(
        cli, ["chips", str(raster), str(labels), "-o", str(tmp_path / "o"), "--size", "2"]
    )
    _one_line_error(bad_size, "--size")
    assert not (tmp_path / "o").exists()
