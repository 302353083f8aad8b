"""rewindow.py: the same U-Net weights for larger model windows and another working GSD."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from mapseg_core.config import make_config
from mapseg_core.models.artifact import load_artifact, metadata_from_config, save_artifact
from mapseg_core.models.unet import build_unet

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bundled_model" / "rewindow.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_rewindowed_model_has_the_weights_the_window_and_the_gsd(tmp_path):
    config = make_config("tiny", encoder_weights="none")
    model = build_unet(config.model)
    path = save_artifact(model, tmp_path / "m.keras", {**metadata_from_config(config), "gsd": 0.3})
    done = _run(str(path), str(tmp_path / "w.keras"), "--window", "128", "--gsd", "0.4")
    assert done.returncode == 0, done.stderr
    wide, meta = load_artifact(tmp_path / "w.keras")
    assert meta["input_size"] == [128, 128] and meta["gsd"] == 0.4
    assert meta["config"]["model"]["input_size"] == [64, 64]  # trained as it was
    assert (
        meta["rewindowed"]["trained_gsd"] == 0.3 and "--window 128" in meta["rewindowed"]["command"]
    )
    assert tuple(wide.inputs[0].shape[1:3]) == (128, 128)
    for a, b in zip(wide.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_window_not_a_multiple_of_32_is_refused(tmp_path):
    done = _run(str(tmp_path / "m.keras"), str(tmp_path / "w.keras"), "--window", "100")
    assert done.returncode != 0 and "multiple of 32" in done.stderr
    assert "Traceback" not in done.stderr
