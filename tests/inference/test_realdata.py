"""tile_infer on the real sample rasters (stub model): CRS, georeferencing, nodata."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
import rasterio
from shapely.geometry import box

from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer

pytestmark = pytest.mark.realdata

#: The stub detects the synthetic roof colour; at this threshold (logit > -4.6, i.e.
#: red - blue > 54) it also fires on real reddish roofs, so there is something to map.
LOW = 0.01


def test_massachusetts_declared_nodata_255(shared_data: Path, stub_model, tmp_path):
    raster = shared_data / "massachusetts" / "22978945_15.tif"
    out = tmp_path / "mass.gpkg"
    summary = tile_infer([raster], out, stub_model, TileConfig(block_size=512, threshold=LOW))
    assert any("--nodata none" in w for w in summary["warnings"])
    assert summary["rasters"][0]["resampled"]  # 1 m raster, 0.5 m model
    df = gpd.read_file(out)
    assert df.crs.to_epsg() == 26986 and len(df) > 0 and df.is_valid.all()
    with rasterio.open(raster) as src:
        assert box(*src.bounds).buffer(1e-6).contains(df.union_all())
    meta = pyogrio.read_info(out)["layer_metadata"]
    assert "model_sha256" in meta
    summary = tile_infer(
        [raster], out, stub_model, TileConfig(nodata="none", gsd="native", overwrite=True)
    )
    assert not summary["rasters"][0]["resampled"] and summary["rasters"][0]["nodata"] is None


def test_spacenet_rio_tiles_in_degrees_into_one_layer(shared_data: Path, stub_model, tmp_path):
    tiles = sorted((shared_data / "spacenet-rio" / "3band").glob("*.tif"))
    out = tmp_path / "rio.gpkg"
    # The tiles declare no nodata, but black (0, 0, 0) is their fill: img58 is all black.
    config = TileConfig(block_size=512, min_area=1.0, threshold=LOW, nodata=0)
    summary = tile_infer(tiles, out, stub_model, config)
    assert any("img58.tif is entirely nodata" in w for w in summary["warnings"])
    df = gpd.read_file(out)
    assert df.crs.to_epsg() == 4326 and df.is_valid.all()
    assert len(df) > 0
    assert df["area_m2"].min() >= 0.9
    lon, lat = df.bounds["minx"], df.bounds["miny"]
    assert lon.between(-43.8, -43.6).all() and lat.between(-23.0, -22.9).all()
    assert 0.3 < summary["rasters"][0]["gsd_m"] < 0.7
    assert len(summary["rasters"]) == len(tiles)
