"""``mapseg train --strategy multiworker``: one worker of MultiWorkerMirroredStrategy.

A multi-machine run needs several hosts; without ``TF_CONFIG`` the strategy
runs as one worker, which checks that the model is built, trained,
checkpointed and saved under it. (It must be created at program start, so
the run is a fresh process.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import make_learnable_coco

from mapseg_core.models.artifact import read_metadata


@pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="MultiWorkerMirroredStrategy is TensorFlow's",
)
def test_multiworker_strategy_trains_as_a_single_worker(tmp_path):
    annotations, images = make_learnable_coco(tmp_path / "coco")
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mapseg_cli.main",
            "train",
            str(annotations),
            str(images),
            "-o",
            str(tmp_path / "run"),
            "--preset",
            "tiny",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--workers",
            "1",
            "--strategy",
            "multiworker",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = read_metadata(tmp_path / "run" / "model.keras")
    assert meta["config"]["train"]["strategy"] == "multiworker"
