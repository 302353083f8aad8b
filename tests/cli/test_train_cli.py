"""``mapseg train`` / ``evaluate`` doors: one-line errors, exit codes, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import make_learnable_coco

from mapseg_cli.main import cli


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return make_learnable_coco(tmp_path_factory.mktemp("coco"), n_images=6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(data[0]),
            str(data[1]),
            "-o",
            str(run),
            "--preset",
            "tiny",
            "--epochs",
            "1",
            "--workers",
            "1",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    return run


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code not in (0, 70), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapseg: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _train(args: list[str]):
    return CliRunner().invoke(cli, ["train", *args, "--preset", "tiny", "--epochs", "1", "-q"])


def _copy(data: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    images = tmp_path / "images"
    shutil.copytree(data[1], images)
    annotations = tmp_path / "annotation.json"
    annotations.write_text(data[0].read_text())
    return annotations, images


def test_missing_annotations(tmp_path, data):
    result = _train([str(tmp_path / "nope.json"), str(data[1]), "-o", str(tmp_path / "run")])
    _one_line_error(result, "nope.json")
    assert not (tmp_path / "run").exists()


def test_annotations_not_json(tmp_path, data):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    _one_line_error(_train([str(bad), str(data[1]), "-o", str(tmp_path / "run")]), "JSON")
    assert not (tmp_path / "run").exists()


def test_annotations_not_coco(tmp_path, data):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    _one_line_error(_train([str(bad), str(data[1]), "-o", str(tmp_path / "run")]), "COCO")
    assert not (tmp_path / "run").exists()


def test_no_images_of_category(tmp_path, data):
    result = _train(
        [str(data[0]), str(data[1]), "-o", str(tmp_path / "run"), "--category-ids", "999"]
    )
    _one_line_error(result, "999")
    assert not (tmp_path / "run").exists()


def test_image_files_missing(tmp_path, data):
    annotations, images = _copy(data, tmp_path)
    for name in ("0001.png", "0002.png"):
        (images / name).unlink()
    result = _train([str(annotations), str(images), "-o", str(tmp_path / "run")])
    _one_line_error(result, "2", "0001.png")
    assert not (tmp_path / "run").exists()


def test_unreadable_image(tmp_path, data):
    annotations, images = _copy(data, tmp_path)
    (images / "0003.png").write_bytes(b"this is not a png")
    result = _train([str(annotations), str(images), "-o", str(tmp_path / "run")])
    _one_line_error(result, "0003.png", "corrupt")
    assert not (tmp_path / "run").exists()


def test_output_exists_and_is_not_a_run(tmp_path, data):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("x")
    _one_line_error(_train([str(data[0]), str(data[1]), "-o", str(run)]), "--overwrite")
    assert [p.name for p in run.iterdir()] == ["keep.txt"]


def test_resume_on_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path), "-q"])
    _one_line_error(result, "not a mapseg run directory")


def test_weights_that_do_not_fit_the_encoder(tmp_path, data):
    import keras

    weights = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(weights)
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(data[0]),
            str(data[1]),
            "-o",
            str(tmp_path / "run"),
            "--preset",
            "b0",
            "--input-size",
            "64,64",
            "--encoder-weights",
            str(weights),
            "-q",
        ],
    )
    _one_line_error(result, "do not fit efficientnetb0")
    assert not (tmp_path / "run").exists()


def test_reduce_lr_with_schedule_is_refused(tmp_path, data):
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(data[0]),
            str(data[1]),
            "-o",
            str(tmp_path / "run"),
            "--reduce-lr-on-plateau",
            "--lr-schedule",
            "sgdr",
        ],
    )
    _one_line_error(result, "--lr-schedule constant")


def test_error_line_through_a_real_process(tmp_path):
    """The installed entry point: exit code 2, one line, no traceback."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mapseg_cli.main",
            "train",
            str(tmp_path / "missing.json"),
            str(tmp_path),
            "-o",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("mapseg: error:") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_evaluate_prints_the_seed_table(trained, data):
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(trained / "model.keras"),
            str(data[0]),
            str(data[1]),
            "--split-file",
            str(trained / "splits.json"),
            "--progress",
            "none",
        ],
    )
    assert result.exit_code == 0, result.stderr
    for row in ("Loss", "Binary Accuracy", "Dice Coefficient", "Spatial True Positive Rate", "IoU"):
        assert row in result.output
    assert "train" in result.output and "valid" in result.output and "test" in result.output


def test_evaluate_json_and_csv(trained, data, tmp_path):
    csv_path = tmp_path / "scores.csv"
    args = [
        "evaluate",
        str(trained / "model.keras"),
        str(data[0]),
        str(data[1]),
        "--json",
        "--csv",
        str(csv_path),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.output)
    assert set(scores) == {"all"} and 0 <= scores["all"]["dice_coef"] <= 1
    assert csv_path.read_text().splitlines()[0] == "metric,all"
    again = CliRunner().invoke(cli, args)
    _one_line_error(again, "--overwrite")


def test_evaluate_with_a_file_that_is_not_a_model(tmp_path, data):
    fake = tmp_path / "model.keras"
    fake.write_text("no")
    result = CliRunner().invoke(cli, ["evaluate", str(fake), str(data[0]), str(data[1])])
    _one_line_error(result, "not a mapseg model")


def test_every_command_help_has_an_example():
    from mapseg_cli.commands import COMMAND_MODULES

    assert len(cli.commands) == len(COMMAND_MODULES)
    for name in cli.commands:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and f"$ mapseg {name}" in result.output, name
    version = CliRunner().invoke(cli, ["--version"])
    assert version.exit_code == 0 and "mapseg, version" in version.output


@pytest.mark.slow
@pytest.mark.realdata
def test_seed_b4_one_epoch_on_crowdai(tmp_path, shared_data):
    """The issue's acceptance run: seed-b4 for one epoch on CPU, then evaluate (~2-3 min)."""
    crowdai = shared_data / "crowdai-sample" / "train"
    run = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(crowdai / "annotation.json"),
            str(crowdai / "images"),
            "-o",
            str(run),
            "--preset",
            "seed-b4",
            "--epochs",
            "1",
            "--encoder-weights",
            "none",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.stderr
    for name in (
        "model.keras",
        "report.csv",
        "lr_schedule.png",
        "training_curves.png",
        "predictions.png",
    ):
        assert (run / name).is_file(), name
    table = CliRunner().invoke(
        cli,
        [
            "evaluate",
            str(run / "model.keras"),
            str(crowdai / "annotation.json"),
            str(crowdai / "images"),
            "--split-file",
            str(run / "splits.json"),
            "--progress",
            "none",
        ],
    )
    assert table.exit_code == 0, table.stderr
    assert "Dice Coefficient" in table.output and "test" in table.output


def test_a_runs_checkpoints_work_as_model(tmp_path, trained, scene_raster):
    """best.keras and last.keras (plain Keras checkpoints) run in tile-infer like model.keras."""
    import shutil

    import geopandas as gpd

    from mapseg_core.models.artifact import read_metadata

    raster, _ = scene_raster
    outputs = {}
    for name in ("model.keras", "best.keras", "last.keras"):
        out = tmp_path / f"{name}.gpkg"
        args = ["tile-infer", str(raster), "-o", str(out), "--model", str(trained / name)]
        result = CliRunner().invoke(cli, [*args, "--progress", "none"])
        assert result.exit_code == 0, result.output + result.stderr
        outputs[name] = sorted(g.wkb for g in gpd.read_file(out).geometry)
    # One epoch: the last weights are the best ones; both take model.keras's metadata
    # (its tuned threshold and measured margin), so they write the same polygons.
    assert outputs["best.keras"] == outputs["last.keras"]
    final, best = read_metadata(trained / "model.keras"), read_metadata(trained / "best.keras")
    assert best["checkpoint"] == "best.keras" and "metrics" not in best
    assert (best["threshold"], best["receptive_margin"], best["channels"]) == (
        final["threshold"],
        final["receptive_margin"],
        final["channels"],
    )
    # A run still training has no model.keras: its config.json describes the checkpoint.
    running = tmp_path / "running"
    shutil.copytree(trained, running)
    (running / "model.keras").unlink()
    meta = read_metadata(running / "best.keras")
    assert meta["input_size"] == final["input_size"] and meta["threshold"] == 0.5
    out = tmp_path / "running.gpkg"
    args = ["tile-infer", str(raster), "-o", str(out), "--model", str(running / "best.keras")]
    result = CliRunner().invoke(cli, [*args, "--progress", "none"])
    assert result.exit_code == 0, result.output + result.stderr
    assert gpd.read_file(out).is_valid.all()


def test_a_keras_file_outside_a_run_is_refused_with_the_fix(tmp_path, trained):
    import shutil

    lone = tmp_path / "lone.keras"
    shutil.copy(trained / "best.keras", lone)
    result = CliRunner().invoke(
        cli,
        [
            "tile-infer",
            str(tmp_path / "x.tif"),
            "-o",
            str(tmp_path / "o.gpkg"),
            "--model",
            str(lone),
        ],
    )
    _one_line_error(result, "without mapseg metadata", "best.keras")


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--channels", "contact,building", "'building' first"),
        ("--channels", "building,roof", "e.g. --channels building,contact"),
        ("--channel-weights", "1,x", "e.g. 1,0.5"),
        ("--channel-weights", "1,0.5,2", "one per channel"),
        ("--split-by", "source", "field:NAME"),
        ("--split-by", "pattern:(", "not a regular expression"),
        ("--contact-width", "0", "at least 1 pixel"),
    ],
)
def test_bad_instance_and_split_options_are_one_line_errors(
    tmp_path, data, option, value, fragment
):
    result = _train([str(data[0]), str(data[1]), "-o", str(tmp_path / "run"), option, value])
    _one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_help_lists_the_instance_options():
    result = CliRunner().invoke(cli, ["train", "--help"])
    for name in ("--channels", "--split-by", "--keep-negatives", "--tune-threshold"):
        assert name in result.output
    assert "$ mapseg train chips.json chips/ -o run --preset b0 --channels" in result.output
