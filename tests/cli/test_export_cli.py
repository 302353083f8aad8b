"""``mapseg export`` through the CLI: help, the written file, one-line errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mapseg_cli.main import cli


def test_help_has_an_example():
    result = CliRunner().invoke(cli, ["export", "--help"])
    assert result.exit_code == 0 and "$ mapseg export" in result.output
    assert "--opset" in result.output and "--overwrite" in result.output


def test_export_writes_an_onnx_file_and_refuses_to_clobber(stub_model, tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli, ["export", str(stub_model), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["tile_size"] == 64 and out.stat().st_size == summary["bytes"]
    result = CliRunner().invoke(cli, ["export", str(stub_model), "-o", str(out)])
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        f"mapseg: error: output {out} exists; pass --overwrite or choose another -o"
    ]
    result = CliRunner().invoke(
        cli, ["export", str(tmp_path / "nope.keras"), "-o", str(tmp_path / "n.onnx")]
    )
    assert result.exit_code == 2 and "not found" in result.output
    assert len(result.output.strip().splitlines()) == 1
