"""``mapseg info``: what the QGIS plugin and users ask of an engine."""

from __future__ import annotations

import json

import keras
from click.testing import CliRunner

from mapseg_cli.main import cli
from mapseg_core import __version__


def test_info_json_reports_engine_and_backend():
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.output)
    assert report["mapseg_version"] == __version__
    assert report["backend"] == keras.backend.backend()
    assert isinstance(report["gpus"], list)
    assert report["default_model"] is None or report["default_model"]["path"].endswith(".keras")
