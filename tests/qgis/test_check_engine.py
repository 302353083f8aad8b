"""``mapseg:checkengine``: which engine, its version and backend, or what to do."""

from __future__ import annotations

import subprocess

import pytest


def test_reports_the_engine_version_and_backend(qgis_app, engine, feedback):
    import processing

    result = processing.run("mapseg:checkengine", {}, feedback=feedback)
    cli_version = subprocess.run([str(engine), "--version"], capture_output=True, text=True)
    assert result["VERSION"] in cli_version.stdout
    assert result["ENGINE"] == str(engine.resolve()) and result["SOURCE"] == "plugin setting"
    assert result["BACKEND"].startswith(("tensorflow", "torch", "jax"))
    assert isinstance(result["GPU"], bool)
    assert any(line.startswith("GPU:") for line in feedback.infos)


def test_a_broken_engine_says_what_to_do(qgis_app, use_engine, feedback, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    broken = tmp_path / "mapseg"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named keras' >&2\nexit 1\n")
    broken.chmod(0o755)
    use_engine(str(broken))
    with pytest.raises(QgsProcessingException, match="does not work.*Set up mapseg engine"):
        processing.run("mapseg:checkengine", {}, feedback=feedback)
