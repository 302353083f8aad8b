"""The preview picture: polygons land where they are on the raster."""

from __future__ import annotations

import io

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from shapely.geometry import box

from mapseg_core.errors import InputFileNotFound
from mapseg_core.preview import draw_preview, render_preview

YELLOW = np.array([255, 204, 0])


def _outline_pixels(png: bytes) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return np.abs(rgb - YELLOW).sum(axis=-1) < 60


def test_outline_is_drawn_at_the_polygon(tmp_path):
    rgb = np.zeros((100, 200, 3), np.uint8)
    transform = from_origin(1000.0, 5000.0, 2.0, 2.0)  # 2 m pixels
    # A building from column 50 to 100 and row 20 to 60, in map coordinates.
    building = box(1000 + 50 * 2, 5000 - 60 * 2, 1000 + 100 * 2, 5000 - 20 * 2)
    mask = _outline_pixels(draw_preview(rgb, transform, [building]))
    assert mask.shape == (100, 200)
    rows, cols = np.nonzero(mask)
    assert abs(cols.min() - 50) <= 2 and abs(cols.max() - 100) <= 2
    assert abs(rows.min() - 20) <= 2 and abs(rows.max() - 60) <= 2
    assert not mask[35:45, 70:80].any()  # outline only, interior untouched


def test_render_preview_reprojects_the_layer(tmp_path):
    raster = tmp_path / "r.tif"
    transform = from_origin(500000.0, 4000000.0, 1.0, 1.0)
    with rasterio.open(
        raster,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=transform,
    ) as dst:
        dst.write(np.full((3, 64, 64), 40, np.uint8))
    building = box(500010, 3999970, 500030, 3999990)  # cols 10-30, rows 10-30
    frame = gpd.GeoDataFrame({"id": [1]}, geometry=[building], crs="EPSG:32633").to_crs(4326)
    frame.to_file(tmp_path / "b.gpkg", layer="buildings")
    out = render_preview(raster, tmp_path / "b.gpkg", tmp_path / "p.png")
    png = out.read_bytes()
    mask = _outline_pixels(png)
    top = Image.open(io.BytesIO(png)).size[1] - 64  # the title band above the image
    rows, cols = np.nonzero(mask[top:])
    assert abs(cols.min() - 10) <= 1 and abs(cols.max() - 30) <= 1
    assert abs(rows.min() - 10) <= 1 and abs(rows.max() - 30) <= 1


def test_missing_inputs(tmp_path):
    with pytest.raises(InputFileNotFound):
        render_preview(tmp_path / "no.tif", tmp_path / "no.gpkg", tmp_path / "p.png")
