"""``mapseg export``: the ONNX file Deepness reads, checked the way Deepness reads it."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from rasters import GROUND, GSD, ROOF, make_stub_model

from mapseg_core.errors import ConfigError, ModelError, OutputError, OutputExistsError
from mapseg_core.models.onnx_export import deepness_metadata, export_onnx


def _deepness_session(path):
    """What Deepness' ModelBase does: a session, CUDA then CPU, and json.loads per key."""
    providers = [
        p
        for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
        if p in ort.get_available_providers()
    ]
    sess = ort.InferenceSession(str(path), providers=providers)
    meta = {k: json.loads(v) for k, v in sess.get_modelmeta().custom_metadata_map.items()}
    return sess, meta


def _tile(size: int) -> np.ndarray:
    """A uint8 RGB tile: ROOF squares on noisy GROUND (the stub fires on ROOF only)."""
    rng = np.random.default_rng(3)
    noise = rng.integers(-40, 41, (size, size, 3))
    tile = np.clip(np.array(GROUND) + noise, 0, 255).astype(np.uint8)
    tile[8:30, 10:40] = ROOF
    tile[40:60, 44:60] = ROOF
    return tile


def test_deepness_runs_the_file_as_is(stub_model, stub_onnx):
    from mapseg_core.backend import keras

    sess, meta = _deepness_session(stub_onnx)
    assert meta["model_type"] == "Segmentor"
    assert meta["class_names"] == {"0": "building"}
    assert meta["resolution"] == pytest.approx(GSD * 100)  # cm/px
    assert meta["tile_size"] == meta["tiles_size"] == 64
    assert meta["tiles_overlap"] == 25  # margin 8 px on each side of a 64 px tile
    assert meta["seg_thresh"] == 0.5
    assert meta["seg_small_segment"] == round(2.0 / GSD**2)
    assert meta["mapseg"]["gsd"] == GSD and meta["mapseg"]["receptive_margin"] == 8
    assert meta["mapseg"]["output"] == "probabilities"
    assert meta["mapseg"]["polish"]["outline"] == "clean"
    assert meta["mapseg"]["band_names"] == ["red", "green", "blue"]

    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert inp.shape[1:] == [3, 64, 64] and isinstance(inp.shape[0], str)  # dynamic batch
    assert out.shape[1:] == [1, 64, 64]

    tile = _tile(64)
    x = tile.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    mean = np.array(meta["standardization_mean"], np.float32)[None, :, None, None]
    std = np.array(meta["standardization_std"], np.float32)[None, :, None, None]
    (prob,) = sess.run(None, {inp.name: (x - mean) / std})

    model = keras.saving.load_model(stub_model)
    logits = np.asarray(model.predict_on_batch(tile[None].astype(np.float32)))[0, ..., 0]
    expected = 1.0 / (1.0 + np.exp(-logits))
    assert prob.shape == (1, 1, 64, 64)
    np.testing.assert_allclose(prob[0, 0], expected, atol=1e-5)
    assert (prob[0, 0] >= meta["seg_thresh"]).sum() == 22 * 30 + 20 * 16  # the two roofs


def test_batches_of_any_size(stub_onnx):
    sess, _ = _deepness_session(stub_onnx)
    x = np.stack([_tile(64)] * 3).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    (prob,) = sess.run(None, {"image": x})
    assert prob.shape == (3, 1, 64, 64)
    np.testing.assert_allclose(prob[0], prob[2], atol=1e-7)


def test_deepness_metadata_follows_the_model():
    meta = {
        "input_size": [256, 256],
        "gsd": 0.3,
        "receptive_margin": 32,
        "bands": 4,
        "threshold": 0.4,
        "polish": {"min_area_m2": 9.0},
        "class_names": ["building"],
    }
    d = deepness_metadata(meta)
    assert d["resolution"] == 30.0 and d["tiles_overlap"] == 25 and d["seg_thresh"] == 0.4
    assert d["seg_small_segment"] == 100  # 9 m2 at 0.3 m
    assert d["standardization_mean"] == [0.0] * 4 and d["standardization_std"] == [1.0] * 4
    with pytest.raises(ConfigError, match="square"):
        deepness_metadata({**meta, "input_size": [256, 128]})


def test_output_rules(stub_model, stub_onnx, tmp_path):
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_onnx(stub_model, stub_onnx)
    with pytest.raises(OutputError, match=r"\.onnx"):
        export_onnx(stub_model, tmp_path / "model.keras")
    with pytest.raises(ModelError, match="already an ONNX model"):
        export_onnx(stub_onnx, tmp_path / "again.onnx")
    with pytest.raises(ModelError, match="not found"):
        export_onnx(tmp_path / "missing.keras", tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="--opset"):
        export_onnx(stub_model, tmp_path / "m.onnx", opset=5)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_overwrite_replaces_atomically(tmp_path):
    model = make_stub_model(tmp_path / "wide.keras", input_size=(32, 32), receptive_margin=4)
    out = tmp_path / "wide.onnx"
    out.write_bytes(b"old")
    summary = export_onnx(model, out, overwrite=True)
    assert summary["tile_size"] == 32 and summary["deepness"]["tiles_overlap"] == 25
    _, meta = _deepness_session(out)
    assert meta["tile_size"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.keras", "wide.onnx"]


def test_a_separating_model_exports_a_building_head_and_a_contact_head(tmp_path):
    """Deepness reads [B, 1, S, S] sigmoid heads; mapseg reads both and separates on ONNX too."""
    import geopandas as gpd
    from rasters import canonical, make_contact_stub_model, terrace_scene, write_raster

    from mapseg_core.config import TileConfig
    from mapseg_core.inference.engine import tile_infer
    from mapseg_core.models.artifact import load_artifact

    keras_file = make_contact_stub_model(tmp_path / "contact.keras")
    onnx_file = tmp_path / "contact.onnx"
    export_onnx(keras_file, onnx_file)
    sess, meta = _deepness_session(onnx_file)
    assert [o.name for o in sess.get_outputs()] == ["probability", "separators"]
    assert all(o.shape[1:] == [1, 64, 64] for o in sess.get_outputs())
    assert meta["class_names"] == [{"0": "building"}, {"0": "contact"}]

    x = np.random.default_rng(2).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    keras_model, _ = load_artifact(keras_file)
    onnx_model, _ = load_artifact(onnx_file)
    expected = 1 / (1 + np.exp(-np.asarray(keras_model.predict_on_batch(x))))
    np.testing.assert_allclose(onnx_model.predict_on_batch(x), expected, atol=1e-5)

    img, _ = terrace_scene()
    raster = write_raster(tmp_path / "terraces.tif", img)
    layers = []
    for model in (keras_file, onnx_file):
        out = tmp_path / f"{model.suffix[1:]}.gpkg"
        tile_infer([raster], out, model, TileConfig(min_area=0.0, block_size=32, overlap=4))
        layers.append(canonical(gpd.read_file(out).geometry))
    assert layers[0] == layers[1] and len(layers[0]) == 12  # every house of the terrace
