"""Reading resampled rasters: a pixel's value does not depend on the window it is read with."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.windows import Window
from rasters import make_stub_model, write_raster

from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer
from mapseg_core.inference.plan import plan_raster
from mapseg_core.inference.reader import open_working, read_pixels
from mapseg_core.models.artifact import read_metadata


def _textured(size: int = 300, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture (uint8): every resampled pixel blends different values."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (3, size // 6, size // 6)).astype(np.float32)
    img = np.kron(coarse, np.ones((6, 6), np.float32))[:, :size, :size]
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("model_gsd", [0.6, 0.65, 0.8])
def test_resampled_pixels_are_the_same_in_every_window(tmp_path, model_gsd):
    """GDAL's warper derives its kernel scale from each read's window sizes, approximates the
    transform per read and rounds multi-band reads by row width; a block's pixels then changed
    by a grey level with the block size (2,000 of 1.9 M pixels at 0.3 -> 0.4 m)."""
    raster = write_raster(tmp_path / "t.tif", _textured())  # 0.5 m
    meta = read_metadata(make_stub_model(tmp_path / "m.keras", gsd=model_gsd))
    plan, _ = plan_raster(raster, meta, TileConfig())
    assert plan.resampled
    with open_working(plan) as ds:
        whole, _ = read_pixels(ds, plan, Window(0, 0, plan.width, plan.height))
    windows = [Window(0, 0, 97, 131), Window(13, 40, 160, 77), Window(50, 3, 121, 200)]
    for window in windows:
        with open_working(plan) as ds:  # a fresh dataset: nothing cached from other reads
            part, _ = read_pixels(ds, plan, window)
        rows = slice(window.row_off, window.row_off + part.shape[0])
        cols = slice(window.col_off, window.col_off + part.shape[1])
        np.testing.assert_array_equal(part, whole[rows, cols])


def test_resampled_raster_gives_the_same_outputs_for_any_block_size(tmp_path):
    """Probabilities and clean outlines, exactly (15 probabilities differed before)."""
    raster = write_raster(tmp_path / "t.tif", _textured(400, seed=3))
    model = make_stub_model(tmp_path / "m.keras", gsd=0.6)
    probabilities, outlines = [], []
    for block in (48, 4096):
        probability = tmp_path / f"p{block}.tif"
        out = tmp_path / f"b{block}.gpkg"
        config = TileConfig(block_size=block, min_area=0.0, save_probabilities=str(probability))
        tile_infer([raster], out, model, config)
        with rasterio.open(probability) as src:
            probabilities.append(src.read(1))
        geoms = pyogrio.read_dataframe(out).geometry.values
        outlines.append(sorted(shapely.normalize(geoms).tolist(), key=lambda g: g.wkb))
    assert probabilities[0].std() > 10 and len(outlines[0]) > 20  # every value, many shapes
    np.testing.assert_array_equal(probabilities[1], probabilities[0])
    assert [g.wkb for g in outlines[1]] == [g.wkb for g in outlines[0]]
