"""Presets and validation of the frozen configuration."""

from __future__ import annotations

import json

import pytest

from mapseg_core.config import PRESETS, RunConfig, make_config
from mapseg_core.errors import ConfigError


def test_seed_b4_preset_is_the_seed_setup():
    cfg = make_config("seed-b4")
    assert cfg.model.encoder == "efficientnetb4"
    assert cfg.model.input_size == (300, 300)
    assert cfg.model.decoder_filters == (1024, 512, 256, 128)
    assert cfg.model.decoder_dropout == 0.2 and not cfg.model.encoder_trainable
    t = cfg.train
    assert (t.batch_size, t.epochs, t.train_size, t.valid_size, t.seed) == (
        64,
        200,
        0.7,
        0.3,
        108241,
    )
    assert (t.ce_weight, t.lr_initial, t.lr_first_decay_steps) == (0.05, 0.005, 50)
    assert (t.lr_t_mul, t.lr_m_mul, t.lr_alpha) == (1.0, 0.7, 0.1)
    assert t.early_stopping == 200 // 3 and t.reduce_lr == 20


def test_overrides_and_none_is_ignored():
    cfg = make_config("tiny", epochs=7, batch_size=None, encoder_weights="none")
    assert cfg.train.epochs == 7 and cfg.train.batch_size == PRESETS["tiny"].train.batch_size
    assert cfg.model.encoder_weights is None


def test_reduce_lr_on_plateau_needs_constant_rate():
    with pytest.raises(ConfigError, match="--lr-schedule constant"):
        make_config("seed-b4", reduce_lr_on_plateau=True)
    cfg = make_config("seed-b4", reduce_lr_on_plateau=True, lr_schedule="constant")
    assert cfg.train.reduce_lr_on_plateau


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"decoder_filters": (8, 4)}, "decoder_filters"),
        ({"input_size": (16, 16)}, "at least 32"),
        ({"unknown_option": 1}, "unknown option"),
        ({"bands": 4}, "3 bands"),
    ],
)
def test_bad_options_name_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("seed-b4", **overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="choose one of"):
        make_config("b9")


def test_round_trip_through_dict():
    cfg = make_config("b0", epochs=3, category_ids=(100,))
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_outline_options_are_checked_and_filled_from_the_model():
    import pytest as _pytest

    from mapseg_core.config import TileConfig
    from mapseg_core.errors import ConfigError
    from mapseg_core.vectorize.pipeline import model_polish

    with _pytest.raises(ConfigError, match="--outline pixel"):
        TileConfig(outline="pixel", simplify=1.0)
    with _pytest.raises(ConfigError, match="unknown outline"):
        TileConfig(outline="round")  # type: ignore[arg-type]
    filled = model_polish(TileConfig(), {"polish": {"outline": "simple", "min_area_m2": 9.0}})
    assert filled.outline == "simple" and filled.min_area == 9.0 and filled.simplify_px == 1.5
    assert model_polish(TileConfig(), {}).outline == "clean"  # models without polish: clean
    assert model_polish(TileConfig(regularize=True), {"polish": {"outline": "pixel"}}).outline == (
        "clean"
    )
    assert model_polish(TileConfig(outline="pixel"), {}).outline == "pixel"
