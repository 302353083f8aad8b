"""tile-infer's outputs: the GeoPackage, probabilities and mask land together or not at all."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from rasters import scene, write_raster

from mapseg_core import atomic
from mapseg_core.config import TileConfig
from mapseg_core.errors import OutputError
from mapseg_core.inference.engine import tile_infer


def _config(tmp_path: Path, **options) -> TileConfig:
    return TileConfig(
        save_probabilities=str(tmp_path / "prob.tif"),
        save_mask=str(tmp_path / "mask.tif"),
        block_size=64,
        **options,
    )


def _fail_rename(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    """Make the ``at``-th rename of a staged output into place fail (disk full)."""
    real = os.replace
    count = {"n": 0}

    def flaky(src, dst) -> None:
        if ".tmp-" in Path(src).name:
            count["n"] += 1
            if count["n"] == at:
                raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)


OUTPUTS = ("o.gpkg", "prob.tif", "mask.tif")


@pytest.mark.parametrize("at", [1, 2, 3])
def test_failure_between_commits_leaves_no_output(stub_model, tmp_path, monkeypatch, at):
    img, _ = scene()
    raster = write_raster(tmp_path / "scene.tif", img, gsd=0.25)  # resampled: two tmp stages
    _fail_rename(monkeypatch, at)
    with pytest.raises(OutputError, match="nothing was replaced"):
        tile_infer([str(raster)], tmp_path / "o.gpkg", stub_model, _config(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]  # no output, no temp


def test_failure_between_commits_keeps_the_previous_outputs(stub_model, tmp_path, monkeypatch):
    img, _ = scene()
    raster = write_raster(tmp_path / "scene.tif", img)
    tile_infer([str(raster)], tmp_path / "o.gpkg", stub_model, _config(tmp_path))
    before = {name: (tmp_path / name).read_bytes() for name in OUTPUTS}
    _fail_rename(monkeypatch, 2)
    with pytest.raises(OutputError):
        tile_infer(
            [str(raster)],
            tmp_path / "o.gpkg",
            stub_model,
            _config(tmp_path, overwrite=True, threshold=0.9),
        )
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*OUTPUTS, "scene.tif"])


def test_a_failed_block_leaves_no_output(stub_model, tmp_path, monkeypatch):
    from mapseg_core.inference import runner

    img, _ = scene()
    raster = write_raster(tmp_path / "scene.tif", img)
    real = runner.finish_block
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "finish_block", failing)  # the in-process runner's vectorize step
    with pytest.raises(RuntimeError):
        tile_infer([str(raster)], tmp_path / "o.gpkg", stub_model, _config(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
    # the pipeline's threads stopped with the run, not left to the garbage collector
    assert not [t for t in threading.enumerate() if t.name.startswith("mapseg-")]


def test_each_rasters_geotiffs_are_open_only_while_it_runs(stub_model, tmp_path):
    """Over several rasters, a raster's GeoTIFFs are opened with its first block and
    finished (closed, overviews built) with its last, not all held open to the end."""
    import rasterio

    img, _ = scene()
    rasters = [str(write_raster(tmp_path / f"{name}.tif", img)) for name in "abc"]
    seen: dict[str, list[str]] = {}

    def report(event: dict) -> None:
        if event["event"] == "progress" and event["raster"] not in seen:
            temporaries = sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name)
            seen[event["raster"]] = temporaries
            for name in temporaries:
                if name.startswith((".prob_a.", ".mask_a.")) and event["raster"] == "b.tif":
                    with rasterio.open(tmp_path / name) as ds:  # a finished file
                        assert ds.overviews(1) == [2]

    tile_infer(rasters, tmp_path / "o.gpkg", stub_model, _config(tmp_path), report=report)
    # when b's first block is in, a's two files wait finished, b's are open, c's not yet made
    at_b = [name.split(".tmp-")[0] for name in seen["b.tif"]]
    assert at_b == [".mask_a", ".mask_b", ".prob_a", ".prob_b"]
    written = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tif")
    assert written == [
        "a.tif",
        "b.tif",
        "c.tif",
        "mask_a.tif",
        "mask_b.tif",
        "mask_c.tif",
        "prob_a.tif",
        "prob_b.tif",
        "prob_c.tif",
    ]
