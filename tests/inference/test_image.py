"""An in-memory image gets the probabilities tile-infer computes for a raster of it."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasters import make_contact_stub_model, terrace_scene, write_raster

from mapseg_core.config import TileConfig
from mapseg_core.inference import predictor as predictor_module
from mapseg_core.inference.engine import tile_infer
from mapseg_core.inference.image import predict_image
from mapseg_core.inference.predictor import Predictor
from mapseg_core.models.artifact import load_artifact


@pytest.mark.parametrize("windows", ["spans", "model-sized"])
def test_predict_image_equals_tile_infer_on_the_same_pixels(tmp_path, monkeypatch, windows):
    if windows == "model-sized":
        monkeypatch.setattr(predictor_module, "_takes_any_size", lambda model: False)
    img, _ = terrace_scene()
    # A texture the stub's 1x1 conv turns into probabilities of every value.
    rng = np.random.default_rng(0)
    img = np.clip(img.astype(int) + rng.integers(-60, 60, img.shape), 0, 255).astype(np.uint8)
    raster = write_raster(tmp_path / "t.tif", img)
    model_path = make_contact_stub_model(tmp_path / "m.keras")
    saved = tmp_path / "p.tif"
    config = TileConfig(block_size=32, save_probabilities=str(saved), min_area=0.0)
    tile_infer([raster], tmp_path / "o.gpkg", model_path, config)
    with rasterio.open(saved) as src:
        expected = src.read(1)
    model, meta = load_artifact(model_path)
    predictor = Predictor(model, 4)
    assert predictor.any_size is (windows == "spans")
    prob = predict_image(predictor, np.moveaxis(img, 0, -1), meta)
    assert prob.shape == (*img.shape[1:], 2)
    np.testing.assert_array_equal(np.rint(prob[..., 0] * 255).astype(np.uint8), expected)
    assert len(np.unique(expected)) > 50
