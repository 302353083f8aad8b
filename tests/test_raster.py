"""Opening rasters: files, GDAL virtual paths and QGIS-style connection strings."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.io import MemoryFile
from rasters import canonical, scene, transform, write_raster

from mapseg_cli.main import cli
from mapseg_core.errors import InputFileNotFound, RasterError
from mapseg_core.raster import is_gdal_path, open_raster


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/vsimem/x.tif", True),
        ("/vsis3/bucket/ortho.tif", True),
        ("/vsicurl/https://example.org/cog.tif", True),
        ("GPKG:/data/tiles.gpkg:ortho", True),
        ("/data/ortho.tif", False),
        ("C:/data/ortho.tif", False),  # a Windows drive letter is a file path
        ("ortho.tif", False),
    ],
)
def test_gdal_names_are_told_from_file_paths(path, expected):
    assert is_gdal_path(path) is expected


def _vsimem_copy(path) -> MemoryFile:
    return MemoryFile(open(path, "rb").read(), ext=".tif")


def test_open_raster_reads_a_vsimem_file(scene_raster):
    raster, _ = scene_raster
    with _vsimem_copy(raster) as mem:
        assert mem.name.startswith("/vsimem/")
        with open_raster(mem.name) as src, rasterio.open(raster) as ref:
            assert np.array_equal(src.read(), ref.read())


def test_missing_virtual_and_local_paths_get_one_line_errors(tmp_path):
    with pytest.raises(RasterError, match="cannot be opened by GDAL"):
        open_raster("/vsimem/nothing-here.tif")
    with pytest.raises(InputFileNotFound, match="not found"):
        open_raster(tmp_path / "nothing-here.tif")


def _buildings(path) -> set[str]:
    return canonical(gpd.read_file(path).geometry)


def test_tile_infer_chips_and_preview_take_a_vsimem_raster(tmp_path, scene_raster, stub_model):
    raster, _ = scene_raster
    args = ["--model", str(stub_model), "--progress", "none"]
    runner = CliRunner()
    on_disk = runner.invoke(cli, ["tile-infer", str(raster), "-o", str(tmp_path / "a.gpkg"), *args])
    assert on_disk.exit_code == 0, on_disk.output
    with _vsimem_copy(raster) as mem:
        virtual = runner.invoke(
            cli, ["tile-infer", mem.name, "-o", str(tmp_path / "b.gpkg"), *args]
        )
        assert virtual.exit_code == 0, virtual.output
        png = runner.invoke(
            cli, ["preview", mem.name, str(tmp_path / "b.gpkg"), "-o", str(tmp_path / "p.png")]
        )
        assert png.exit_code == 0, png.output
        chips = runner.invoke(
            cli,
            ["chips", mem.name, str(tmp_path / "b.gpkg"), "-o", str(tmp_path / "chips"),
             "--size", "64", "--progress", "none"],
        )  # fmt: skip
        assert chips.exit_code == 0, chips.output
    assert _buildings(tmp_path / "b.gpkg") == _buildings(tmp_path / "a.gpkg")
    assert len(_buildings(tmp_path / "a.gpkg")) > 3
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "chips" / "annotation.json").is_file()


def test_tile_infer_takes_a_geopackage_raster_table(tmp_path, stub_model):
    """QGIS passes raster layers stored in a GeoPackage as ``GPKG:file:table``."""
    img, _ = scene()
    tif = write_raster(tmp_path / "scene.tif", img)
    gpkg = tmp_path / "tiles.gpkg"
    profile = {
        "driver": "GPKG",
        "width": img.shape[2],
        "height": img.shape[1],
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": transform(),
    }
    with rasterio.open(gpkg, "w", RASTER_TABLE="ortho", **profile) as dst:
        dst.write(img)
    args = ["--model", str(stub_model), "--progress", "none"]
    runner = CliRunner()
    a = runner.invoke(cli, ["tile-infer", str(tif), "-o", str(tmp_path / "a.gpkg"), *args])
    b = runner.invoke(
        cli, ["tile-infer", f"GPKG:{gpkg}:ortho", "-o", str(tmp_path / "b.gpkg"), *args]
    )
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert _buildings(tmp_path / "b.gpkg") == _buildings(tmp_path / "a.gpkg")
