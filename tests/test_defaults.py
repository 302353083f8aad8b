"""Option defaults come from one place: the config dataclasses.

The CLI reads them from ``TileConfig``/``TrainConfig`` fields; the QGIS plugin,
which cannot import mapseg_core, writes the ones it shows in one ``DEFAULTS``
dict that is checked here against the same fields.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import click

from mapseg_cli.main import cli
from mapseg_core.config import ENCODERS, PRESETS, TileConfig

ROOT = Path(__file__).resolve().parents[1]


def _field_defaults(config_class: type) -> dict[str, object]:
    return {
        f.name: f.default
        for f in dataclasses.fields(config_class)
        if f.default is not dataclasses.MISSING
    }


def test_tile_infer_options_default_to_the_tile_config():
    fields = _field_defaults(TileConfig)
    command = cli.commands["tile-infer"]
    checked = 0
    for param in command.params:
        if not isinstance(param, click.Option) or param.name not in fields:
            continue
        default = param.default
        # Unset options (None, or click's UNSET sentinel) and off flags mean "TileConfig's
        # default" when not given: the command passes only what the user set.
        if default is None or type(default).__name__ == "Sentinel" or param.is_flag:
            continue
        assert default == fields[param.name], (param.name, default, fields[param.name])
        checked += 1
    assert checked >= 4  # block_size, batch_size, normalization, layer at least


def test_qgis_defaults_are_the_tile_config_defaults():
    source = (ROOT / "qgis_plugin" / "processing" / "segment_buildings.py").read_text()
    tree = ast.parse(source)
    found = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "DEFAULTS" for t in node.targets)
    ]
    assert found, "segment_buildings.py has no DEFAULTS dict"
    fields = _field_defaults(TileConfig)
    assert {k: fields[k] for k in found[0]} == found[0]


def test_train_choices_are_the_config_presets_and_encoders():
    command = cli.commands["train"]
    choices = {
        p.name: list(p.type.choices) for p in command.params if isinstance(p.type, click.Choice)
    }
    assert choices["preset"] == list(PRESETS)
    assert choices["encoder"] == list(ENCODERS)
