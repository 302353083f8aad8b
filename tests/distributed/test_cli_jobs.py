"""``mapseg tile-infer --workers/--job-dir`` as users run it: SIGKILL, rerun, same layer.

Each CLI run with ``--workers 2`` starts a LocalCluster whose two workers
import TensorFlow (5-8 s each on two cores), so this module keeps to the
runs that prove resumption: killed with SIGKILL mid-run, then the same
command again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import psutil
import pytest
from conftest import BLOCK_ARGS, tiled_scene
from rasters import canonical

from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer

pytest.importorskip("distributed")

TOTAL = 130  # blocks of the 320x400 scene with BLOCK_ARGS


@pytest.fixture(scope="module")
def scene_and_expected(tmp_path_factory, stub_model):
    folder = tmp_path_factory.mktemp("cli")
    raster = tiled_scene(folder / "big.tif", (2, 2))
    tile_infer(
        [raster],
        folder / "single.gpkg",
        stub_model,
        TileConfig(min_area=0.0, block_size=32, overlap=4),
    )
    return raster, canonical(gpd.read_file(folder / "single.gpkg").geometry)


def _command(raster: Path, out: Path, model: Path, *extra: str | Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mapseg_cli.main",
        "tile-infer",
        str(raster),
        "-o",
        str(out),
        "--model",
        str(model),
        *BLOCK_ARGS,
        "--progress",
        "json",
        *map(str, extra),
    ]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def _kill_mid_run(command: list[str], after: int) -> set[int]:
    """Start ``command``, SIGKILL it (the CLI process only) after ``after`` blocks.

    Returns the pids of its child processes (Dask nanny and workers) at that moment.
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["done"] >= after:
            break
    else:
        pytest.fail("the run ended before it could be killed")
    children = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return children


def _done_blocks(job_dir: Path) -> int:
    with sqlite3.connect(job_dir / "manifest.sqlite") as conn:
        return int(conn.execute("SELECT count(*) FROM blocks").fetchone()[0])


def _summary(proc: subprocess.CompletedProcess[str]) -> dict:
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "done", proc.stderr
    return events[-1]["summary"]


def test_sigkill_of_the_cli_with_local_workers_then_rerun(scene_and_expected, stub_model, tmp_path):
    raster, expected = scene_and_expected
    out, job = tmp_path / "o.gpkg", tmp_path / "job"
    command = _command(raster, out, stub_model, "--workers", "2", "--job-dir", job)
    children = _kill_mid_run(command, after=20)
    assert not out.exists()
    done = _done_blocks(job)
    assert 20 <= done < TOTAL
    deadline = time.monotonic() + 30  # orphaned nanny/workers notice their parent died
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in children):
        assert time.monotonic() < deadline, "Dask workers outlived the killed CLI"
        time.sleep(0.5)
    proc = _run(command)
    assert proc.returncode == 0, proc.stderr
    summary = _summary(proc)
    assert summary["blocks_resumed"] == done and summary["blocks_run"] == TOTAL - done
    assert summary["km2_per_h"] > 0 and summary["mpx_per_s"] > 0
    assert canonical(gpd.read_file(out).geometry) == expected


def test_sigkill_of_a_single_process_job_then_rerun_and_mismatch(
    scene_and_expected, stub_model, tmp_path
):
    raster, expected = scene_and_expected
    out, job = tmp_path / "o.gpkg", tmp_path / "job"
    command = _command(raster, out, stub_model, "--job-dir", job)
    _kill_mid_run(command, after=30)
    done = _done_blocks(job)
    assert 30 <= done < TOTAL and not out.exists()

    other = [*command[:-2], "--block-size", "64", "--job-dir", str(job)]
    refused = _run(other)
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("mapseg: error:") and "--block-size" in line
    assert "--overwrite" in line and "new --job-dir" in line and "Traceback" not in refused.stderr

    proc = _run(command)
    assert proc.returncode == 0, proc.stderr
    assert _summary(proc)["blocks_resumed"] == done
    assert canonical(gpd.read_file(out).geometry) == expected


def test_failed_block_exit_code_4_names_it_and_writes_the_rest(
    bad_tile_raster, stub_model, tmp_path
):
    out = tmp_path / "o.gpkg"
    command = [
        sys.executable,
        "-m",
        "mapseg_cli.main",
        "tile-infer",
        str(bad_tile_raster),
        "-o",
        str(out),
        "--model",
        str(stub_model),
        "--min-area",
        "0",
        "--block-size",
        "64",
        "--overlap",
        "0",
        "--job-dir",
        str(tmp_path / "job"),
        "--progress",
        "json",
    ]
    proc = _run(command)
    name = "bad.tif block (1, 1) rows 64..128 cols 64..128"
    assert proc.returncode == 4, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mapseg: error: 1 block(s) failed") and name in last
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events][-2:] == ["done", "error"]
    assert events[-1]["exit_code"] == 4
    assert any(e["event"] == "warning" and name in e["message"] for e in events)
    assert out.exists() and len(gpd.read_file(out)) > 0


def test_sigkill_with_separation_then_rerun_gives_the_same_houses(tmp_path):
    import numpy as np
    from rasters import make_contact_stub_model, terrace_scene, write_raster

    model = make_contact_stub_model(tmp_path / "contact.keras")
    img, _ = terrace_scene()
    raster = write_raster(tmp_path / "terraces.tif", np.tile(img, (1, 3, 3)))
    single = tmp_path / "single.gpkg"
    tile_infer([raster], single, model, TileConfig(min_area=0.0, block_size=32, overlap=4))
    expected = canonical(gpd.read_file(single).geometry)
    assert len(expected) == 9 * 12
    out, job = tmp_path / "o.gpkg", tmp_path / "job"
    command = _command(raster, out, model, "--job-dir", job)
    _kill_mid_run(command, after=20)
    done = _done_blocks(job)
    assert 20 <= done < 135 and not out.exists()
    proc = _run(command)
    assert proc.returncode == 0, proc.stderr
    assert _summary(proc)["blocks_resumed"] == done
    assert canonical(gpd.read_file(out).geometry) == expected


def _band(path: Path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.scales


def test_sigkill_of_a_job_writing_probabilities_and_mask_then_rerun(
    scene_and_expected, stub_model, tmp_path
):
    """--save-probabilities/--save-mask with --job-dir: kill -9, rerun, tile-infer's rasters."""
    import numpy as np

    raster, expected = scene_and_expected
    single = tmp_path / "single"
    single.mkdir()
    reference = _run(
        _command(
            raster,
            single / "o.gpkg",
            stub_model,
            "--save-probabilities",
            single / "p.tif",
            "--save-mask",
            single / "m.tif",
        )
    )
    assert reference.returncode == 0, reference.stderr
    out, job = tmp_path / "o.gpkg", tmp_path / "job"
    prob, mask = tmp_path / "p.tif", tmp_path / "m.tif"
    command = _command(
        raster, out, stub_model, "--job-dir", job, "--save-probabilities", prob, "--save-mask", mask
    )
    _kill_mid_run(command, after=30)
    done = _done_blocks(job)
    assert 30 <= done < TOTAL
    assert not out.exists() and not prob.exists() and not mask.exists()
    proc = _run(command)
    assert proc.returncode == 0, proc.stderr
    assert _summary(proc)["blocks_resumed"] == done
    assert canonical(gpd.read_file(out).geometry) == expected
    for ours, theirs in ((prob, single / "p.tif"), (mask, single / "m.tif")):
        a, b = _band(ours), _band(theirs)
        assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert _band(mask)[0].max() == 1 and _band(prob)[0].max() > 200  # not empty rasters
