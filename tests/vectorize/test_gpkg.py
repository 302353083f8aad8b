"""The GeoPackage writer is atomic, refuses to overwrite, and records provenance."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from shapely.geometry import box

from mapseg_core.atomic import check_output
from mapseg_core.errors import OutputError, OutputExistsError
from mapseg_core.vectorize.gpkg import GpkgWriter


def test_features_metadata_and_reprojection(tmp_path: Path):
    out = tmp_path / "b.gpkg"
    with GpkgWriter(
        out, "buildings", "EPSG:32633", {"model_sha256": "ab", "p": {"x": 1}}, chunk=2
    ) as w:
        for k in range(3):
            w.add(
                box(500000 + k * 10, 5000000, 500005 + k * 10, 5000005),
                {"area_m2": 25.0, "score": 0.9, "source": "a.tif"},
                "EPSG:32633",
            )
        w.add(
            box(15.0, 45.1, 15.0001, 45.1001),
            {"area_m2": 1.0, "score": 0.5, "source": "b"},
            "EPSG:4326",
        )
        w.commit()
    df = gpd.read_file(out, layer="buildings")
    assert list(df["id"]) == [1, 2, 3, 4] and df.crs.to_epsg() == 32633
    assert df.geometry.iloc[3].bounds[0] > 100000  # reprojected from degrees
    meta = pyogrio.read_info(out, layer="buildings")["layer_metadata"]
    assert meta["model_sha256"] == "ab" and json.loads(meta["p"]) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["b.gpkg"]


def test_empty_layer_is_written(tmp_path: Path):
    out = tmp_path / "e.gpkg"
    with GpkgWriter(out, "buildings", "EPSG:32633", {}) as w:
        w.commit()
    df = gpd.read_file(out, layer="buildings")
    assert len(df) == 0 and df.crs.to_epsg() == 32633


def test_failure_leaves_nothing(tmp_path: Path):
    out = tmp_path / "b.gpkg"
    with pytest.raises(RuntimeError), GpkgWriter(out, "b", "EPSG:32633", {}, chunk=1) as w:
        w.add(box(0, 0, 1, 1), {"area_m2": 1.0, "score": 1.0, "source": "x"}, "EPSG:32633")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_existing_and_unwritable_outputs_are_refused(tmp_path: Path):
    (tmp_path / "x.gpkg").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output(tmp_path / "x.gpkg", overwrite=False)
    assert check_output(tmp_path / "x.gpkg", overwrite=True)
    with pytest.raises(OutputError, match="does not exist"):
        check_output(tmp_path / "missing" / "x.gpkg", overwrite=False)
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path, overwrite=False)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell fds apart")
def test_commit_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    import os

    from mapseg_core import atomic

    log: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        log.append("fsync-dir" if os.path.isdir(target) else f"fsync {Path(target).suffix}")
        real_fsync(fd)

    def replace(src, dst) -> None:
        log.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with GpkgWriter(tmp_path / "b.gpkg", "b", "EPSG:32633", {}) as w:
        w.add(box(0, 0, 1, 1), {"area_m2": 1.0, "score": 1.0, "source": "x"}, "EPSG:32633")
        w.commit()
    assert log == ["fsync .gpkg", "replace b.gpkg", "fsync-dir"]
    assert len(gpd.read_file(tmp_path / "b.gpkg")) == 1
