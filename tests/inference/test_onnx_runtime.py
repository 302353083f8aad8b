"""ONNX models on ONNX Runtime: the engine, the Dask worker and evaluate take them like Keras."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from helpers import make_learnable_coco
from rasters import canonical, expected_world

from mapseg_core.config import TileConfig
from mapseg_core.errors import ModelError
from mapseg_core.inference.onnx_runtime import OnnxModel, load_onnx
from mapseg_core.models.artifact import load_artifact, read_metadata

EXACT = {"min_area": 0.0, "outline": "pixel", "overwrite": True}


def test_the_adapter_matches_keras_band_last(stub_model, stub_onnx):
    keras_model, _ = load_artifact(stub_model)
    model, meta = load_artifact(stub_onnx)
    assert isinstance(model, OnnxModel) and meta["output"] == "probabilities"
    assert model.inputs[0].shape == (None, 64, 64, 3)  # fixed tiles: the engine uses windows
    x = np.random.default_rng(1).uniform(0, 255, (5, 64, 64, 3)).astype(np.float32)
    logits = np.asarray(keras_model.predict_on_batch(x))
    np.testing.assert_allclose(model.predict_on_batch(x), 1 / (1 + np.exp(-logits)), atol=1e-5)


@pytest.mark.parametrize(("block_size", "batch_size"), [(48, 1), (100, 3), (4096, 16)])
def test_tile_infer_writes_the_same_buildings(
    scene_raster, stub_onnx, tmp_path, block_size, batch_size
):
    from mapseg_core.inference.engine import tile_infer

    raster, shapes = scene_raster
    out = tmp_path / "o.gpkg"
    config = TileConfig(**EXACT, block_size=block_size, batch_size=batch_size)
    summary = tile_infer([str(raster)], out, stub_onnx, config)
    df = gpd.read_file(out)
    assert canonical(df.geometry) == canonical(expected_world(shapes))
    np.testing.assert_allclose(df["score"], 1 / (1 + np.exp(-8.0)), atol=1e-4)
    assert summary["features"] == len(shapes)


def test_probability_rasters_agree_with_keras(scene_raster, stub_model, stub_onnx, tmp_path):
    from mapseg_core.inference.engine import tile_infer

    raster, _ = scene_raster
    probs = []
    for name, model in (("keras", stub_model), ("onnx", stub_onnx)):
        prob = tmp_path / f"{name}.tif"
        config = TileConfig(**EXACT, save_probabilities=str(prob))
        tile_infer([str(raster)], tmp_path / f"{name}.gpkg", model, config)
        with rasterio.open(prob) as ds:
            probs.append(ds.read(1).astype(int))
    assert np.abs(probs[0] - probs[1]).max() <= 1  # uint8 probabilities, rounding only


def test_worker_predictor_loads_onnx_without_tensorflow_threads(stub_onnx):
    from mapseg_core.distributed.cluster import worker_predictor
    from mapseg_core.models.artifact import file_sha256

    predictor = worker_predictor(str(stub_onnx), file_sha256(stub_onnx), 4, 2)
    # Wrapped so the worker's threads take turns (distributed.cluster._SerialModel).
    assert isinstance(predictor.model.wrapped, OnnxModel) and not predictor.any_size
    assert predictor.model.session.get_session_options().intra_op_num_threads == 2
    windows = np.zeros((6, 64, 64, 3), np.float32)
    assert predictor(windows).shape == (6, 64, 64)


def test_evaluate_scores_onnx_like_keras(stub_model, tmp_path):
    """The numpy pixel table (ONNX) equals Keras' model.evaluate, and the polygon scores too."""
    from rasters import make_stub_model

    from mapseg_core.models.onnx_export import export_onnx
    from mapseg_core.training.evaluate import evaluate_model

    annotations, images = make_learnable_coco(tmp_path, n_images=6)
    keras_file = make_stub_model(tmp_path / "stub48.keras", input_size=(48, 48))
    onnx_file = tmp_path / "stub48.onnx"
    export_onnx(keras_file, onnx_file)
    by_keras = evaluate_model(keras_file, annotations, images, workers=1, batch_size=4)["all"]
    by_onnx = evaluate_model(onnx_file, annotations, images, workers=1, batch_size=4)["all"]
    assert set(by_onnx) == set(by_keras)
    for key in ("binary_accuracy", "dice_coef", "spatial_true_positive_rate", "iou_coef"):
        assert by_onnx[key] == pytest.approx(by_keras[key], abs=1e-5), key
    assert by_onnx["loss"] == pytest.approx(by_keras["loss"], abs=2e-3)
    for key in ("AP", "F1@0.5", "mask_IoU", "N-ratio"):
        assert by_onnx[key] == pytest.approx(by_keras[key], abs=1e-6), key


def test_evaluate_scores_a_two_channel_onnx_model_like_keras(tmp_path):
    """A separating model (building + contact heads, like the bundled one): same figures."""
    from rasters import make_contact_stub_model

    from mapseg_core.models.onnx_export import export_onnx
    from mapseg_core.training.evaluate import evaluate_model

    annotations, images = make_learnable_coco(tmp_path, n_images=6)
    keras_file = make_contact_stub_model(tmp_path / "contact48.keras", input_size=(48, 48))
    onnx_file = tmp_path / "contact48.onnx"
    export_onnx(keras_file, onnx_file)
    by_keras = evaluate_model(keras_file, annotations, images, workers=1, batch_size=4)["all"]
    by_onnx = evaluate_model(onnx_file, annotations, images, workers=1, batch_size=4)["all"]
    assert set(by_onnx) == set(by_keras)
    for key in ("binary_accuracy", "dice_coef", "spatial_true_positive_rate", "iou_coef"):
        assert by_onnx[key] == pytest.approx(by_keras[key], abs=1e-5), key
    for key in ("AP", "F1@0.5", "mask_IoU", "N-ratio"):
        assert by_onnx[key] == pytest.approx(by_keras[key], abs=1e-6), key


def test_onnx_files_without_mapseg_metadata_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelError, match="without mapseg metadata.*mapseg export"):
        read_metadata(path)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        load_onnx(broken)
    with pytest.raises(ModelError, match="not found"):
        read_metadata(tmp_path / "missing.onnx")
