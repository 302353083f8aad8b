"""The bundled model exported to ONNX agrees with itself on Keras, on real imagery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from mapseg_cli.main import cli
from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer
from mapseg_core.models.artifact import bundled_model_path

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_bundled_model_onnx_and_keras_agree_on_inria_austin(shared_data: Path, tmp_path):
    raster = shared_data / "inria-austin" / "aerial_sample.tif"
    keras_file = bundled_model_path()
    onnx_file = tmp_path / "buildings-b0.onnx"
    # `mapseg export` with no MODEL exports the bundled one (what the README shows).
    result = CliRunner().invoke(cli, ["export", "-o", str(onnx_file), "-q"])
    assert result.exit_code == 0, result.output + result.stderr
    masks, probs, counts = [], [], []
    for name, model in (("keras", keras_file), ("onnx", onnx_file)):
        config = TileConfig(
            save_mask=str(tmp_path / f"{name}-mask.tif"),
            save_probabilities=str(tmp_path / f"{name}-prob.tif"),
        )
        summary = tile_infer([raster], tmp_path / f"{name}.gpkg", model, config)
        counts.append(summary["features"])
        with rasterio.open(tmp_path / f"{name}-mask.tif") as ds:
            masks.append(ds.read(1))
        with rasterio.open(tmp_path / f"{name}-prob.tif") as ds:
            probs.append(ds.read(1).astype(int))
    assert masks[0].shape == (1000, 1000) and 0.05 < masks[0].mean() < 0.6  # it found buildings
    agreement = (masks[0] == masks[1]).mean()
    assert agreement >= 0.999, agreement
    assert np.abs(probs[0] - probs[1]).max() <= 2  # uint8 probabilities
    assert abs(counts[0] - counts[1]) <= max(1, counts[0] // 100)
