"""The mapseg model file: metadata, atomic save, plain Keras reload."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from mapseg_core.config import make_config
from mapseg_core.errors import ModelError, OutputError
from mapseg_core.models.artifact import (
    load_artifact,
    metadata_from_config,
    portable_path,
    read_metadata,
    save_artifact,
    update_metadata,
)
from mapseg_core.models.unet import build_unet


@pytest.fixture(scope="module")
def tiny_model():
    return build_unet(make_config("tiny").model)


def test_round_trip_keeps_predictions_and_metadata(tmp_path, tiny_model):
    path = save_artifact(tiny_model, tmp_path / "m.keras", {"preset": "tiny", "gsd": 0.5})
    model, meta = load_artifact(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), tiny_model.predict(x, verbose=0))
    assert meta["format"] == "mapseg-model" and meta["gsd"] == 0.5 and meta["preset"] == "tiny"
    assert meta["normalization"] == {"kind": "range", "min": 0.0, "max": 255.0}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_plain_keras_load_model_in_a_fresh_process(tmp_path, tiny_model):
    """A colleague needs only ``import mapseg_core`` and ``keras.saving.load_model``."""
    path = save_artifact(tiny_model, tmp_path / "m.keras", {})
    x = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, keras, mapseg_core.models.losses\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "np.save(sys.argv[2], m.predict(np.load(sys.argv[3]), verbose=0))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), tiny_model.predict(x, verbose=0))


def test_optimizer_state_is_not_shipped(tmp_path):
    import h5py
    import keras

    from mapseg_core.models.losses import ComboLoss

    model = build_unet(make_config("tiny").model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ComboLoss())
    x = np.zeros((2, 64, 64, 3), "float32")
    model.fit(x, np.zeros((2, 64, 64, 1), "float32"), verbose=0)
    path = save_artifact(model, tmp_path / "m.keras", {})
    with zipfile.ZipFile(path) as zf:
        zf.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5") as weights:
        assert "optimizer" not in weights
    loaded, _ = load_artifact(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_not_a_model_file(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_text("hello")
    with pytest.raises(ModelError, match="not a mapseg model"):
        read_metadata(junk)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("mapseg.json", json.dumps({"format": "other"}))
    with pytest.raises(ModelError, match="not a mapseg model"):
        read_metadata(plain)
    with pytest.raises(ModelError, match="--model"):
        read_metadata(tmp_path / "missing.keras")


def test_newer_format_is_refused(tmp_path):
    path = tmp_path / "future.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mapseg.json", json.dumps({"format": "mapseg-model", "format_version": 99}))
    with pytest.raises(ModelError, match="upgrade mapseg"):
        read_metadata(path)


def test_wrong_suffix(tmp_path, tiny_model):
    with pytest.raises(OutputError, match=".keras"):
        save_artifact(tiny_model, tmp_path / "m.h5", {})


def test_update_metadata_keeps_weights_and_merges_fields(tmp_path, tiny_model):
    src = save_artifact(tiny_model, tmp_path / "m.keras", {"gsd": 0.5, "created": "2026-01-01"})
    out = update_metadata(
        src, {"gsd": 0.3, "credits": ["someone"], "format_version": 99}, tmp_path / "shipped.keras"
    )
    meta = read_metadata(out)
    assert meta["gsd"] == 0.3 and meta["credits"] == ["someone"]
    assert meta["format_version"] == 1 and meta["created"] == "2026-01-01"
    assert read_metadata(src)["gsd"] == 0.5  # the source is left as it was
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out) as b:
        members = [n for n in a.namelist() if n != "mapseg.json"]
        assert members and all(a.read(n) == b.read(n) for n in members)
        assert b.namelist().count("mapseg.json") == 1
    model, _ = load_artifact(out)
    x = np.random.default_rng(0).uniform(0, 255, (1, *tiny_model.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(model.predict_on_batch(x), tiny_model.predict_on_batch(x), atol=1e-5)
    with pytest.raises(OutputError, match=".keras"):
        update_metadata(src, {}, tmp_path / "m.h5")


def test_portable_path_is_relative_or_a_bare_name(tmp_path):
    data = tmp_path / "data"
    assert portable_path(data / "train" / "images", data) == "train/images"
    assert portable_path(data, data) == "."
    assert portable_path(tmp_path / "elsewhere" / "images", data) == "images"


def test_config_metadata_names_the_weights_file_not_its_folder(tmp_path):
    weights = tmp_path / "secret-user" / "efficientnetb0_imagenet_notop.weights.h5"
    config = make_config("b0", encoder_weights=str(weights))
    meta = metadata_from_config(config)
    assert meta["config"]["model"]["encoder_weights"] == weights.name
    assert "secret-user" not in json.dumps(meta)
    assert metadata_from_config(make_config("b0"))["config"]["model"]["encoder_weights"] == (
        "imagenet"
    )
    assert config.model.encoder_weights == str(weights)  # the run itself still uses the path
