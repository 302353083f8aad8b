"""Real imagery reprojected to Web Mercator gives the native buildings (true ground scale)."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from rasterio.warp import transform as warp_points
from test_crs_and_pixels import _warp

from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer

pytestmark = pytest.mark.realdata

ROOT = Path(__file__).resolve().parents[2]


def _latitude(raster: Path) -> float:
    with rasterio.open(raster) as src:
        b = src.bounds
        _, lat = warp_points(
            src.crs, "EPSG:4326", [(b.left + b.right) / 2], [(b.top + b.bottom) / 2]
        )
    return lat[0]


def _buildings(raster: Path, out: Path, model: Path, config: TileConfig) -> gpd.GeoDataFrame:
    tile_infer([str(raster)], out, model, config)
    return gpd.read_file(out)


def test_massachusetts_in_web_mercator_matches_native(shared_data: Path, stub_model, tmp_path):
    raster = shared_data / "massachusetts" / "22978945_15.tif"  # 1 m, EPSG:26986
    # 1 m on the ground = 1/cos(lat) Mercator units; nodata=255 is a white-roof trap
    mercator = _warp(
        raster,
        tmp_path / "m.tif",
        "EPSG:3857",
        (1 / math.cos(math.radians(_latitude(raster))),) * 2,
    )
    config = TileConfig(
        threshold=0.01, nodata="none", gsd="native", min_area=5.0, block_size=512, overwrite=True
    )
    want = _buildings(raster, tmp_path / "n.gpkg", stub_model, config)
    got = _buildings(mercator, tmp_path / "m.gpkg", stub_model, config)
    assert len(want) >= 20 and got.crs.to_epsg() == 3857
    assert abs(len(got) - len(want)) <= 0.05 * len(want)
    assert got["area_m2"].sum() == pytest.approx(want["area_m2"].sum(), rel=0.01)


def test_bundled_model_on_web_mercator_measures_ground_area(tmp_path):
    """The issue's case with the real model: 1.3x the area before (Mercator units as metres)."""
    model = ROOT / "mapseg_core" / "models" / "bundled" / "buildings-b0.keras"
    raster = ROOT / "examples" / "inria-austin-sample.tif"
    if not model.exists():
        pytest.skip("bundled model not present")
    mercator = _warp(raster, tmp_path / "m.tif", "EPSG:3857")
    config = TileConfig(overwrite=True)
    want = _buildings(raster, tmp_path / "n.gpkg", model, config)
    got = _buildings(mercator, tmp_path / "m.gpkg", model, config)
    # the warp itself resamples the image (bilinear, up to half a pixel): the model sees
    # another image, so real-model figures agree less tightly than the stub's. The 0.3 m
    # model runs the native sample unresampled, so only the Mercator copy is blurred:
    # measured 1.054x. The bug this guards against is 1/cos²(30.3°) = 1.34x.
    assert abs(len(got) - len(want)) <= 0.15 * len(want)
    assert got["area_m2"].sum() == pytest.approx(want["area_m2"].sum(), rel=0.10)
