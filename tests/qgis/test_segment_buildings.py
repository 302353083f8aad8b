"""``mapseg:segmentbuildings`` in real QGIS: same polygons as the CLI, cancel, errors, batch."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from support import MASSACHUSETTS, cli_reference, read_layer

ALG = "mapseg:segmentbuildings"


def _params(raster: Path, model: Path, output: Path, **extra) -> dict:
    return {"INPUT": str(raster), "MODEL": str(model), "OUTPUT": str(output), **extra}


def _layer_metadata(gpkg: Path) -> dict:
    """The layer metadata items the engine records (``model``, ``parameters``...)."""
    with sqlite3.connect(gpkg) as db:
        (xml,) = db.execute("SELECT metadata FROM gpkg_metadata").fetchone()
    return {e.get("key"): e.text for e in ElementTree.fromstring(xml).iter("MDI")}


def _layer_parameters(gpkg: Path) -> dict:
    """The engine's TileConfig as recorded in the layer metadata (``parameters``)."""
    return json.loads(_layer_metadata(gpkg)["parameters"])


def test_same_polygons_as_the_cli(qgis_app, data, engine, feedback, tmp_path):
    import processing

    options = {"BLOCK_SIZE": 48, "OVERLAP": 4, "MIN_AREA": 0.0, "BANDS": [1, 2, 3]}
    out = tmp_path / "qgis.gpkg"
    result = processing.run(
        ALG, _params(data["scene"], data["model"], out, **options), feedback=feedback
    )
    reference = cli_reference(
        engine,
        data["scene"],
        data["model"],
        tmp_path / "cli.gpkg",
        "--block-size",
        "48",
        "--overlap",
        "4",
        "--min-area",
        "0",
        "--bands",
        "1,2,3",
    )
    got = read_layer(result["OUTPUT"])
    assert got == read_layer(reference)
    assert len(got) == int(data["buildings"]) == result["FEATURES"]
    # The options reached the engine under their CLI names.
    recorded = _layer_parameters(out)
    assert recorded["block_size"] == 48 and recorded["overlap"] == 4
    assert recorded["bands"] == [1, 2, 3] and recorded["min_area"] == 0.0
    assert feedback.progress_values[-1] == 100.0 and len(feedback.progress_values) > 2
    assert any("tile-infer" in c and "--progress json" in c for c in feedback.commands)
    assert not list(tmp_path.glob(".*tmp*"))


def test_an_onnx_model_gives_the_keras_models_polygons(qgis_app, data, feedback, tmp_path):
    """The file dialog offers .onnx models (what the light engine runs): same buildings."""
    import processing
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById(ALG)
    assert "*.onnx" in algorithm.parameterDefinition("MODEL").fileFilter()
    runs = {}
    for kind in ("model", "onnx_model"):
        out = tmp_path / f"{kind}.gpkg"
        result = processing.run(
            ALG, _params(data["scene"], data[kind], out, MIN_AREA=0.0), feedback=feedback
        )
        runs[kind] = read_layer(result["OUTPUT"])
    assert runs["onnx_model"] == runs["model"] and len(runs["model"]) == int(data["buildings"])


@pytest.mark.realdata
def test_massachusetts_same_as_the_cli(qgis_app, data, engine, feedback, tmp_path):
    if not MASSACHUSETTS.is_file():
        pytest.skip("../shared/data/massachusetts/22978945_15.tif not found (real-data test)")
    import processing

    result = processing.run(
        ALG,
        _params(
            MASSACHUSETTS,
            data["model"],
            tmp_path / "qgis.gpkg",
            BLOCK_SIZE=512,
            THRESHOLD=0.01,
            NODATA="none",
        ),
        feedback=feedback,
    )
    reference = cli_reference(
        engine,
        MASSACHUSETTS,
        data["model"],
        tmp_path / "cli.gpkg",
        "--block-size",
        "512",
        "--threshold",
        "0.01",
        "--nodata",
        "none",
    )
    got = read_layer(result["OUTPUT"])
    assert got and got == read_layer(reference)


def _engine_processes(marker: str) -> list[int]:
    """Pids of running processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the engine")
def test_cancel_stops_the_engine_and_leaves_no_output(qgis_app, data, feedback, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    out = tmp_path / "cancelled.gpkg"
    seen = {}

    def cancel_once_blocks_run(progress: float) -> None:
        if 0 < progress < 100 and not feedback.isCanceled():
            seen["pids"] = _engine_processes(str(out))
            feedback.cancel()

    feedback.progressChanged.connect(cancel_once_blocks_run)
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run(
            ALG, _params(data["big"], data["model"], out, BLOCK_SIZE=64), feedback=feedback
        )
    assert seen["pids"], "the engine was not running when cancelled"
    assert time.monotonic() - started < 60
    assert not _engine_processes(str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["missing engine", "not a raster", "bad model"])
def test_errors_are_processing_exceptions_with_the_fix(
    qgis_app, data, use_engine, feedback, tmp_path, case
):
    import processing
    from qgis.core import QgsProcessingException

    params = _params(data["scene"], data["model"], tmp_path / "o.gpkg")
    expected = {
        "missing engine": "does not exist",
        "not a raster": "not a raster",
        "bad model": "not a mapseg model",
    }[case]
    if case == "missing engine":
        use_engine(str(tmp_path / "nowhere" / "mapseg"))
    elif case == "not a raster":
        params["INPUT"] = str(data["notes"])
    else:
        params["MODEL"] = str(data["fake_model"])
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(ALG, params, feedback=feedback)
    assert expected in str(raised.value)
    assert "Traceback" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_no_model_uses_the_engines_bundled_model(qgis_app, data, use_engine, feedback, tmp_path):
    import processing

    out = tmp_path / "o.gpkg"
    params = _params(data["scene"], data["model"], out)
    params["MODEL"] = ""
    processing.run(ALG, params, feedback=feedback)
    assert _layer_metadata(out)["model"].endswith("buildings-b0.keras")


def test_no_engine_anywhere_says_how_to_get_one(
    qgis_app, use_engine, feedback, monkeypatch, tmp_path, data
):
    import processing
    from qgis.core import QgsProcessingException

    use_engine("")
    monkeypatch.delenv("MAPSEG_ENGINE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(QgsProcessingException, match="Set up mapseg engine"):
        processing.run(
            ALG, _params(data["scene"], data["model"], tmp_path / "o.gpkg"), feedback=feedback
        )


def test_batch_two_rasters_in_a_loop(qgis_app, data, tmp_path):
    import processing

    outputs = []
    for raster in (data["scene"], data["scene_east"]):
        out = tmp_path / f"{raster.stem}.gpkg"
        outputs.append(processing.run(ALG, _params(raster, data["model"], out, MIN_AREA=0.0)))
    first, second = (read_layer(r["OUTPUT"]) for r in outputs)
    assert len(first) == len(second) == int(data["buildings"])
    assert first.isdisjoint(second)
    assert {s for _, _, s in first} == {"scene.tif"} and {s for _, _, s in second} == {
        "scene_east.tif"
    }


def _qgis_process() -> str:
    """``qgis_process``; on Debian its wrapper passes --noversioncheck (a Debian bug in
    /etc/default/qgis, shared with the desktop app) which qgis_process 3.22 refuses, so
    the real binary is called."""
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None
        )
        if found:
            return found
    pytest.skip("qgis_process not found")


def test_qgis_process_from_a_shell(qgis_app, profiles, data, engine, tmp_path):
    out = tmp_path / "shell.gpkg"
    env = {
        **os.environ,
        "QGIS_CUSTOM_CONFIG_PATH": str(profiles),
        "MAPSEG_ENGINE": str(engine),
        "QT_QPA_PLATFORM": "offscreen",
    }
    proc = subprocess.run(
        [
            _qgis_process(),
            "run",
            ALG,
            "--",
            f"INPUT={data['scene']}",
            f"MODEL={data['model']}",
            "MIN_AREA=0",
            f"OUTPUT={out}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(read_layer(out)) == int(data["buildings"])
    assert f"OUTPUT:\t{out}" in proc.stdout


def test_toolbox_task_with_every_tuning_option(qgis_app, data, tmp_path):
    """The toolbox runs algorithms in a QgsTask thread; the engine loop must work there."""
    from qgis.core import (
        QgsApplication,
        QgsProcessingAlgRunnerTask,
        QgsProcessingContext,
        QgsProcessingFeedback,
    )

    algorithm = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    context, task_feedback = QgsProcessingContext(), QgsProcessingFeedback()
    out = tmp_path / "task.gpkg"
    tuned = _params(
        data["scene"],
        data["model"],
        out,
        BLOCK_SIZE=64,
        THRESHOLD=0.6,
        MIN_AREA=5.0,
        SIMPLIFY=0.5,
        REGULARIZE=True,
        NODATA="none",
        GSD="native",
        BATCH_SIZE=2,
    )
    task = QgsProcessingAlgRunnerTask(algorithm, tuned, context, task_feedback)
    done = threading.Event()
    outcome = {}

    def finished(ok, results):
        outcome.update(ok=ok, results=results)
        done.set()

    task.executed.connect(finished)
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.05)
    assert outcome.get("ok"), outcome
    assert 0 < len(read_layer(out)) < int(data["buildings"])  # min area 5 m² drops some
    recorded = _layer_parameters(out)  # each option reached the engine under its CLI name
    assert recorded["threshold"] == 0.6 and recorded["min_area"] == 5.0
    assert recorded["simplify"] == 0.5 and recorded["regularize"] is True
    assert recorded["nodata"] == "none" and recorded["gsd"] == "native"
    assert recorded["batch_size"] == 2 and recorded["block_size"] == 64
