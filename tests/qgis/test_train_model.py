"""``mapseg:trainmodel``: a COCO export in, the model file and report out."""

from __future__ import annotations

import csv

import pytest


@pytest.mark.slow  # about 40 s on 2 cores (TensorFlow start, one epoch, report figures)
def test_tiny_preset_writes_model_and_report(qgis_app, data, feedback, tmp_path):
    import processing

    run_dir = tmp_path / "run"
    result = processing.run(
        "mapseg:trainmodel",
        {
            "ANNOTATIONS": str(data["annotations"]),
            "IMAGES_DIR": str(data["images"]),
            "PRESET": 2,
            "EPOCHS": 1,
            "OUTPUT": str(run_dir),
        },
        feedback=feedback,
    )
    assert result["MODEL"] == str(run_dir / "model.keras")
    assert (run_dir / "model.keras").is_file()
    with open(result["REPORT"], newline="") as fh:
        assert list(csv.reader(fh))
    assert any(line.startswith("epoch 1/1") for line in feedback.infos)
    assert feedback.progress_values[-1] == 100.0
