"""Quiet by default, through real processes: one-line errors, no backend notices.

TensorFlow writes start-up notices ("All log messages before absl::InitializeLog()",
"oneDNN custom operations are on", CPU feature lines) to file descriptor 2 from
C++ when it is imported; an in-process CliRunner cannot see them, so these tests
run the installed entry point in a subprocess and read its real stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest

from mapseg_core.backend import keras, quiet_stderr

#: Wrapper that runs the CLI and reports, on stdout at exit, which backends it imported.
RUN_CLI = """
import atexit, json, sys
atexit.register(lambda: print("BACKENDS=" + json.dumps(
    sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules))))
sys.argv = ["mapseg", *sys.argv[1:]]
from mapseg_cli.main import cli
cli()
"""

#: Substrings of the backends' start-up notices; none may reach a user's terminal.
NOTICES = ("absl::InitializeLog", "oneDNN", "cpu_feature_guard", "TF_ENABLE_ONEDNN_OPTS", "I0000")


def _process(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``mapseg ARGS`` in a fresh process, environment as a user's shell has it."""
    full_env = {k: v for k, v in os.environ.items() if k != "MAPSEG_BACKEND_NOTICES"}
    full_env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # a user's shell does not set it
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", RUN_CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=full_env,
    )


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    out = _process(args, env)
    backends = [
        json.loads(line.split("=", 1)[1])
        for line in out.stdout.splitlines()
        if line.startswith("BACKENDS=")
    ]
    assert backends, out.stdout + out.stderr
    return out.returncode, out.stderr, backends[-1]


def _bad_inputs(tmp: Path) -> dict[str, list[str]]:
    missing = str(tmp / "missing")
    return {
        "train": ["train", f"{missing}.json", str(tmp), "-o", str(tmp / "run")],
        "train --resume": ["train", "--resume", str(tmp / "no-run")],
        "evaluate": ["evaluate", f"{missing}.keras", f"{missing}.json", str(tmp)],
        "tile-infer": ["tile-infer", f"{missing}.tif", "-o", str(tmp / "out.gpkg")],
        "chips": ["chips", f"{missing}.tif", f"{missing}.gpkg", "-o", str(tmp / "chips")],
        "evaluate-vectors": ["evaluate-vectors", f"{missing}.gpkg", f"{missing}-ref.gpkg"],
        "preview": ["preview", f"{missing}.tif", f"{missing}.gpkg", "-o", str(tmp / "p.png")],
    }


@pytest.mark.parametrize(
    "command",
    ["train", "train --resume", "evaluate", "tile-infer", "chips", "evaluate-vectors", "preview"],
)
def test_a_bad_path_gets_one_line_without_importing_a_backend(tmp_path, command):
    code, stderr, backends = _run(_bad_inputs(tmp_path)[command])
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapseg: error:"), stderr
    assert "missing" in lines[0] or "no-run" in lines[0], lines[0]  # names the bad path
    assert backends == [], f"{command} imported {backends} before a path check"


def test_a_command_that_loads_the_backend_prints_none_of_its_notices(
    tmp_path, stub_model, scene_raster
):
    raster, _ = scene_raster
    out = tmp_path / "b.gpkg"
    args = ["tile-infer", str(raster), "-o", str(out), "--model", str(stub_model)]
    code, stderr, backends = _run([*args, "--progress", "none"])
    assert code == 0, stderr
    assert "keras" in backends and out.exists()
    leaked = [line for line in stderr.splitlines() if any(n in line for n in NOTICES)]
    assert leaked == [], leaked


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's notices")
def test_verbose_lets_the_backend_notices_through(tmp_path):
    code, stderr, backends = _run(["info", "-v"])
    assert code == 0, stderr
    assert "tensorflow" in backends
    assert any(n in stderr for n in NOTICES), stderr


def test_no_backend_installed_names_the_extra_to_install(tmp_path):
    # A meta-path hook that makes the backend's package unimportable, as on a
    # machine where only `pip install mapseg` ran.
    backend = keras.backend.backend()
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {backend!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    code, stderr, _ = _run(["info"], env=env)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapseg: error: no Keras backend"), stderr
    assert "mapseg[tensorflow]" in lines[0]


def test_quiet_stderr_keeps_what_the_c_level_wrote():
    with quiet_stderr() as captured:
        os.write(2, b"a C++ notice\n")
    assert captured == ["a C++ notice\n"]


#: What a `pip install mapseg[onnx]` environment lacks: the backends and the `train` extra.
NOT_IN_LIGHT = (
    "keras",
    "tensorflow",
    "jax",
    "torch",
    "albumentations",
    "matplotlib",
    "geopandas",
    "pandas",
    "scipy",
    "h5py",
)


def test_onnx_models_run_without_keras_tensorflow_or_the_training_packages(
    tmp_path, stub_onnx, scene_raster
):
    """tile-infer and evaluate on an exported .onnx model, with Keras, TensorFlow and
    the `train` extra made unimportable (as in a `pip install mapseg[onnx]` environment);
    a command that needs them says which extra to install."""
    from helpers import make_learnable_coco

    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {NOT_IN_LIGHT!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    raster, shapes = scene_raster
    out = tmp_path / "onnx.gpkg"
    args = ["tile-infer", str(raster), "-o", str(out), "--model", str(stub_onnx), "--json"]
    code, stderr, backends = _run([*args, "--progress", "none"], env=env)
    assert code == 0, stderr
    assert backends == [] and out.exists()
    assert stderr.strip() == "", stderr
    annotations, images = make_learnable_coco(tmp_path / "coco", n_images=4)
    code, stderr, backends = _run(
        ["evaluate", str(stub_onnx), str(annotations), str(images), "--json"], env=env
    )
    assert code == 0, stderr
    assert backends == []
    # The engine reports ONNX Runtime, and its default model is the bundled .onnx export.
    out_info = _process(["info", "--json"], env)
    assert out_info.returncode == 0, out_info.stderr
    info = json.loads(out_info.stdout[: out_info.stdout.rindex("}") + 1])
    assert info["backend"] == "onnxruntime" and info["keras_version"] is None
    assert info["default_model"]["path"].endswith("buildings-b0.onnx")
    # ... which tile-infer runs when no --model is given (the QGIS light engine's default).
    demo = Path(__file__).parents[2] / "examples" / "inria-austin-sample.tif"
    default_out = tmp_path / "default.gpkg"
    code, stderr, backends = _run(
        ["tile-infer", str(demo), "-o", str(default_out), "--progress", "none"], env=env
    )
    assert code == 0 and backends == [], stderr
    written = pyogrio.read_info(default_out)
    assert written["layer_metadata"]["model"].endswith("buildings-b0.onnx")
    assert written["features"] > 10
    # Drawing a preview needs matplotlib and geopandas (`train` extra): one line names it.
    code, stderr, _ = _run(
        ["preview", str(raster), str(out), "-o", str(tmp_path / "p.png")], env=env
    )
    assert code == 2 and not (tmp_path / "p.png").exists()
    assert stderr.strip().splitlines() == [
        "mapseg: error: this command needs geopandas, which this install lacks: "
        "pip install 'mapseg[train]'"
    ], stderr


def test_a_missing_extra_is_named_but_a_broken_package_is_not():
    from mapseg_cli.main import missing_extra

    fix = missing_extra(ModuleNotFoundError("No module named 'scipy'", name="scipy"))
    assert fix == "this command needs scipy, which this install lacks: pip install 'mapseg[train]'"
    said = ImportError("geopandas is required to use pyogrio.read_dataframe()")  # pyogrio's words
    assert missing_extra(said) is not None and "mapseg[train]" in missing_extra(said)
    assert "mapseg[distributed]" in missing_extra(ModuleNotFoundError("x", name="dask.distributed"))
    # installed but broken, or not ours: an internal error with its traceback under -v
    assert missing_extra(ImportError("cannot import name 'x' from 'pandas'", name="pandas")) is None
    assert missing_extra(ModuleNotFoundError("No module named 'foo'", name="foo")) is None
