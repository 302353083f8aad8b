"""The measured window margin, and seams with a real small U-Net (tiny encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from rasters import write_raster

from mapseg_core.config import TileConfig, make_config
from mapseg_core.models.margin import measure_margin, mosaic_samples, noise_samples


@pytest.fixture(scope="module")
def tiny_unet():
    """A random-weight tiny-encoder U-Net with 128 px input, rebuilt for any input size."""
    from mapseg_core.models.unet import build_unet, flexible_copy

    config = make_config("tiny", input_size=(128, 128)).model
    model = build_unet(config)
    flexible = flexible_copy(model, config)
    assert flexible is not None and tuple(flexible.inputs[0].shape[1:3]) == (None, None)
    x = np.random.default_rng(0).uniform(0, 255, (1, 128, 128, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), flexible.predict(x, verbose=0))
    return flexible


def _probabilities(model):
    def predict(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(model.predict_on_batch(x))))

    return predict


def test_a_1x1_model_needs_no_margin():
    measure = measure_margin(lambda x: x[..., :1] / 255.0, (64, 64), noise_samples((64, 64), 3))
    assert measure.margin == 0 and measure.at_zero == 0.0 and measure.converged


def test_margin_grows_as_the_tolerance_shrinks(tiny_unet):
    samples = noise_samples((128, 128), 3, count=1)
    loose = measure_margin(_probabilities(tiny_unet), (128, 128), samples, tolerance=1e-2)
    tight = measure_margin(_probabilities(tiny_unet), (128, 128), samples, tolerance=1e-4)
    assert tight.converged and 0 < loose.margin <= tight.margin < 48
    assert tight.residual <= 1e-4 < tight.at_zero


def test_mosaics_need_nine_model_sized_images():
    images = np.zeros((4, 32, 32, 3), np.float32)
    (mosaic,) = mosaic_samples(images, (32, 32))
    assert mosaic.shape == (96, 96, 3)
    assert mosaic_samples(np.zeros((2, 16, 16, 3), np.float32), (32, 32)) == []


@pytest.mark.parametrize("block_size", [128, 1024])
def test_stitched_probabilities_have_no_seam_above_the_measured_margin(
    tiny_unet, tmp_path, block_size
):
    """tile-infer's pixels equal one whole-image prediction above the margin, not below."""
    from mapseg_core.inference.blocks import run_block
    from mapseg_core.inference.plan import plan_raster
    from mapseg_core.inference.predictor import Predictor
    from mapseg_core.inference.reader import open_working
    from mapseg_core.models.artifact import read_metadata, save_artifact

    tolerance = 1e-4
    measure = measure_margin(
        _probabilities(tiny_unet), (128, 128), noise_samples((128, 128), 3), tolerance
    )
    path = save_artifact(
        tiny_unet,
        tmp_path / "tiny.keras",
        {"input_size": [128, 128], "gsd": 0.5, "receptive_margin": measure.margin},
    )
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (3, 230, 300), dtype=np.uint8)
    raster = write_raster(tmp_path / "noise.tif", img)
    height, width = img.shape[1:]

    def stitched(overlap: int | None) -> np.ndarray:
        config = TileConfig(block_size=block_size, overlap=overlap, min_area=0.0)
        plan, _ = plan_raster(raster, read_metadata(path), config)
        predictor = Predictor(tiny_unet, batch_size=4)
        assert predictor.any_size  # the span path, as for every flexible model
        out = np.zeros((height, width), np.float32)
        with open_working(plan) as ds:
            for block in plan.grid.blocks():
                result = run_block(ds, plan, block, predictor, keep_probability=True)
                out[
                    block.row_off : block.row_off + block.height,
                    block.col_off : block.col_off + block.width,
                ] = result.probability
        return out, plan.grid.margin

    def whole(margin: int) -> np.ndarray:
        x = np.moveaxis(img, 0, -1).astype(np.float32)
        bottom = (-(height + margin) % 32) + 32
        right = (-(width + margin) % 32) + 32
        padded = np.pad(x, ((margin, bottom), (margin, right), (0, 0)), mode="reflect")
        p = _probabilities(tiny_unet)(padded[None])[0, ..., 0]
        return p[margin : margin + height, margin : margin + width]

    above, margin = stitched(None)  # the model's measured margin
    assert margin == measure.margin
    # The margin was measured on other (noise) inputs: allow twice its tolerance here.
    assert np.abs(above - whole(margin)).max() <= 2 * tolerance
    below, _ = stitched(0)
    assert np.abs(below - whole(0)).max() > 10 * tolerance  # window edges show
