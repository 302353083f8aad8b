"""Fine-tuning (``--init-model``): a run starts from a trained model's weights and architecture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import make_learnable_coco

from mapseg_cli.main import cli
from mapseg_core.config import make_config
from mapseg_core.errors import ConfigError
from mapseg_core.models.artifact import file_sha256, load_artifact, read_metadata
from mapseg_core.training.train import _new_model, train


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    return make_learnable_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def source(tmp_path_factory, learnable):
    """A trained two-channel tiny model: what gets fine-tuned."""
    config = make_config(
        "tiny", batch_size=4, workers=1, epochs=1, channels=("building", "contact"), gsd=0.5
    )
    run = tmp_path_factory.mktemp("source") / "run"
    return train(*learnable, run, config).model_path


def _weights_equal(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_fine_tuning_starts_from_the_source_weights_and_architecture(source):
    config = make_config(None, init_model=str(source), epochs=1, workers=1)
    assert config.preset == "tiny"
    assert config.model.channels == ("building", "contact") and config.model.output_channels == 2
    assert config.model.encoder_weights is None
    assert config.train.gsd == 0.5  # the source's working resolution
    source_model, _ = load_artifact(source)
    model = _new_model(config)
    assert _weights_equal(model.get_weights(), source_model.get_weights())
    image = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(
        model.predict_on_batch(image), source_model.predict_on_batch(image), atol=1e-4
    )
    fresh = _new_model(make_config("tiny", channels=("building", "contact")))
    assert not _weights_equal(fresh.get_weights(), source_model.get_weights())
    # Pretrained batch norm stays frozen (small batches would make it drift), as with
    # ImageNet weights; a run from scratch trains it.
    assert config.model.encoder_trainable
    assert _encoder_norms(model) and not any(layer.trainable for layer in _encoder_norms(model))
    assert all(layer.trainable for layer in _encoder_norms(fresh))


def _encoder_norms(model) -> list:
    import keras

    return [
        layer
        for layer in model.get_layer("encoder").layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def test_fine_tuned_model_records_its_source(tmp_path, learnable, source):
    config = make_config(None, init_model=str(source), epochs=1, workers=1, batch_size=4)
    result = train(*learnable, tmp_path / "run", config)
    meta = read_metadata(result.model_path)
    assert meta["init_model"] == {"model": "model.keras", "sha256": file_sha256(source)}
    # The portable config names the file, not the training machine's folder.
    assert meta["config"]["model"]["init_model"] == "model.keras"
    assert meta["channels"] == ["building", "contact"]
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["model"]["init_model"] == str(source)


def test_bundled_model_resolves_to_its_own_training_setup():
    config = make_config(None, init_model="bundled")
    assert config.preset == "b0"
    assert config.model.encoder == "efficientnetb0"
    assert config.model.channels == ("building", "contact")
    assert config.model.input_size == (256, 256)  # as trained; it runs in 512 px windows
    assert config.train.gsd == 0.3 and config.model.encoder_weights is None


def test_an_architecture_change_is_refused(source):
    with pytest.raises(ConfigError, match="--channels building differs .* drop --channels"):
        make_config(None, init_model=str(source), channels=("building",))
    with pytest.raises(ConfigError, match="--decoder-filters 8,8,8,8 differs"):
        make_config(None, init_model=str(source), decoder_filters=(8, 8, 8, 8))
    with pytest.raises(ConfigError, match="drop --encoder-weights"):
        make_config(None, init_model=str(source), encoder_weights="imagenet")
    # Options that do not change the weights' shapes may change.
    config = make_config(None, init_model=str(source), encoder_trainable=False, epochs=2)
    assert config.model.encoder_trainable is False and config.train.epochs == 2


def test_cli_bad_init_model_is_one_line_and_writes_nothing(tmp_path, learnable, source):
    runs = [
        (["--init-model", str(tmp_path / "missing.keras")], "not found"),
        (["--init-model", str(tmp_path / "model.onnx")], "not a .keras model"),
        (["--init-model", str(source), "--channels", "building"], "drop --channels"),
    ]
    for extra, fragment in runs:
        out = tmp_path / "run"
        result = CliRunner().invoke(
            cli, ["train", str(learnable[0]), str(learnable[1]), "-o", str(out), "-q", *extra]
        )
        assert result.exit_code not in (0, 70), result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mapseg: error: "), lines
        assert "--init-model" in lines[0] and fragment in lines[0], lines[0]
        assert not out.exists()


@pytest.mark.slow
def test_bundled_model_fine_tunes_from_its_own_weights():
    """The shipped model, run in 512 px windows, starts a 256 px run with the same weights."""
    from mapseg_core.models.artifact import bundled_model_path

    bundled, _ = load_artifact(bundled_model_path("keras"))
    model = _new_model(make_config(None, init_model="bundled"))
    assert tuple(model.inputs[0].shape[1:3]) == (256, 256)
    assert _weights_equal(model.get_weights(), bundled.get_weights())
    # The same network, not just the same arrays: EfficientNet's input normalization
    # caches its mean and variance, which set_weights alone leaves at the build's 0 and 1.
    model = _new_model(make_config(None, init_model="bundled", input_size=(512, 512)))
    image = np.random.default_rng(0).uniform(0, 255, (1, 512, 512, 3)).astype(np.float32)
    np.testing.assert_allclose(
        model.predict_on_batch(image), bundled.predict_on_batch(image), atol=1e-3
    )
