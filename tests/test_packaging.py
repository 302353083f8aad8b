"""The distribution: one version, the CLI installed under a non-generic name."""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
from pathlib import Path

import mapseg_core

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_the_same_in_metadata_txt_and_the_package():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    assert meta["general"]["version"] == mapseg_core.__version__


def test_the_plugin_folder_carries_the_same_metadata_txt():
    """qgis-plugin-ci reads qgis_plugin/metadata.txt; the root file is the one users edit."""
    root = (ROOT / "metadata.txt").read_bytes()
    assert (ROOT / "qgis_plugin" / "metadata.txt").read_bytes() == root, (
        "qgis_plugin/metadata.txt differs from metadata.txt: cp metadata.txt qgis_plugin/"
    )


def test_cli_is_installed_as_mapseg_cli_not_cli():
    top_level = importlib.metadata.distribution("mapseg").read_text("top_level.txt") or ""
    assert sorted(top_level.split()) == ["mapseg_cli", "mapseg_core"]
    assert importlib.util.find_spec("mapseg_cli.main") is not None
    entry = importlib.metadata.distribution("mapseg").entry_points
    assert [e.value for e in entry if e.name == "mapseg"] == ["mapseg_cli.main:cli"]


def test_every_engine_package_is_listed_in_pyproject():
    """A package missing from pyproject's list would vanish from a wheel install."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "mapseg_core").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)


def test_geopackage_spatial_index_works_after_tensorflow(tmp_path):
    """Importing mapseg first keeps GDAL's SQLite (with R*Tree) even once TensorFlow loads.

    Without the early GDAL import in ``mapseg_core/__init__``, reading this file
    with a bbox in a process that imported Keras first fails with "no such
    module: rtree" (checked by hand: ``import keras, pyogrio`` then the read).
    """
    import sqlite3
    import subprocess
    import sys

    import geopandas as gpd
    from shapely.geometry import box

    path = tmp_path / "b.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1), box(5, 5, 6, 6)], crs=3857).to_file(path)
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert any(t.startswith("rtree_") for t in tables)  # the file has a spatial index
    code = (
        "import sys, mapseg_core, keras, pyogrio\n"
        "print(len(pyogrio.read_dataframe(sys.argv[1], bbox=(-1, -1, 2, 2))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == "1"
