"""tile_infer on every CRS and pixel type: true ground scale, NaN as nodata, any orientation.

Each case is a real GeoTIFF written or warped through GDAL, compared with the
native north-up uint8 original through the stub model (tests/rasters.py).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
import shapely.affinity
import shapely.geometry
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasters import canonical, expected_world, scene, transform, write_raster
from shapely.geometry import box

from mapseg_core.config import TileConfig
from mapseg_core.errors import RasterError
from mapseg_core.inference.engine import tile_infer
from mapseg_core.inference.outputs import polish_on_ground
from mapseg_core.inference.plan import plan_raster
from mapseg_core.models.artifact import read_metadata
from mapseg_core.raster import ground_scale
from mapseg_core.vectorize.polish import PolishOptions
from mapseg_core.vectorize.polygons import Building

EXACT = {"min_area": 0.0, "outline": "pixel", "overwrite": True}


def _run(raster: Path, out: Path, model: Path, **options) -> tuple[dict, gpd.GeoDataFrame]:
    summary = tile_infer([str(raster)], out, model, TileConfig(**{**EXACT, **options}))
    return summary, gpd.read_file(out)


def _warp(src_path: Path, dst_path: Path, crs: str, resolution=None) -> Path:
    """``gdalwarp -t_srs crs [-tr res]`` with nearest resampling, through rasterio."""
    with rasterio.open(src_path) as src:
        tfm, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds, resolution=resolution
        )
        profile = src.profile | {"crs": crs, "transform": tfm, "width": width, "height": height}
        with rasterio.open(dst_path, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(
                    rasterio.band(src, band),
                    rasterio.band(dst, band),
                    resampling=Resampling.nearest,
                )
    return dst_path


def _degrees_per_metre(lon: float, lat: float) -> tuple[float, float]:
    """Degrees of longitude and of latitude per ground metre there (WGS84 geodesics)."""
    geod = pyproj.Geod(ellps="WGS84")
    d = 1e-3
    east = geod.inv(lon - d / 2, lat, lon + d / 2, lat)[2]
    north = geod.inv(lon, lat - d / 2, lon, lat + d / 2)[2]
    return d / east, d / north


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320x400 scene at 0.5 m in UTM 33N, at 45° N (Web Mercator scale there: 1.41)."""
    img, _ = scene(320, 400)
    return write_raster(tmp_path_factory.mktemp("native") / "native.tif", img)


@pytest.mark.parametrize(
    ("crs", "ground_m", "resampled"),
    [
        ("EPSG:3857", 0.5, False),  # 0.707 Mercator units per pixel = 0.5 m on the ground
        ("EPSG:3857", 0.25, True),  # finer than the model: resampled by the true scale
        ("EPSG:4326", 0.5, False),  # degrees, 0.5 m on the ground both ways
        ("EPSG:4326", 0.25, True),  # degrees, resampled per axis to square 0.5 m pixels
    ],
)
def test_reprojected_raster_gives_the_native_buildings(
    native, stub_model, tmp_path, crs, ground_m, resampled
):
    _, want = _run(native, tmp_path / "native.gpkg", stub_model)
    if crs == "EPSG:3857":
        lat = 45.15
        res: tuple[float, float] = (ground_m / np.cos(np.radians(lat)),) * 2
    else:
        dx, dy = _degrees_per_metre(15.0, 45.15)
        res = (ground_m * dx, ground_m * dy)
    warped = _warp(native, tmp_path / "warped.tif", crs, res)
    summary, got = _run(warped, tmp_path / "warped.gpkg", stub_model)
    assert summary["rasters"][0]["resampled"] == resampled
    assert summary["rasters"][0]["gsd_m"] == pytest.approx(ground_m, rel=0.01)
    assert got.crs.to_epsg() == int(crs.split(":")[1])
    assert abs(len(got) - len(want)) <= 0.05 * len(want)
    assert got["area_m2"].sum() == pytest.approx(want["area_m2"].sum(), rel=0.01)
    # --min-area is in ground m² too: the same buildings pass a threshold
    # between the smallest building (4 m²) and the next (34 m²).
    _, want_big = _run(native, tmp_path / "n.gpkg", stub_model, min_area=20.0)
    _, got_big = _run(warped, tmp_path / "w.gpkg", stub_model, min_area=20.0)
    assert len(want_big) == len(want) - 1 and len(got_big) == len(want_big)


def _building(mask: np.ndarray) -> Building:
    geoms = [shapely.geometry.shape(g) for g, v in rasterio.features.shapes(mask) if v == 1]
    return Building(geoms[0], int(mask.sum()), float(mask.sum()))


def test_simplify_tolerance_is_in_ground_metres():
    mask = np.zeros((40, 40), np.uint8)
    for k in range(30):  # a staircase of 1 px steps: vertices 0.7 px off the diagonal
        mask[k, : k + 1] = 1
    building = _building(mask)
    options = PolishOptions(simplify=1.0)
    # 1 unit = 2 ground metres: a 1 m tolerance is 0.5 units, the steps stay
    kept = polish_on_ground(building, Affine.identity(), (2.0, 2.0, 4.0), options)
    # 1 unit = 0.5 ground metres: 2 units, the staircase becomes a triangle
    gone = polish_on_ground(building, Affine.identity(), (0.5, 0.5, 0.25), options)
    assert len(kept[0][0].exterior.coords) > 50 and len(gone[0][0].exterior.coords) <= 6
    assert kept[0][1] == pytest.approx(mask.sum() * 4.0) and gone[0][1] == pytest.approx(
        mask.sum() * 0.25
    )


def test_regularized_corners_are_right_angles_on_the_ground_in_degrees():
    ground = shapely.affinity.rotate(box(10, 20, 50, 40), 30, origin=(30, 30))
    mask = rasterio.features.rasterize([(ground, 1)], out_shape=(60, 60), dtype="uint8")
    building = _building(mask)
    lon, lat = 15.0, 60.0  # a degree of longitude is half one of latitude here
    dx, dy = _degrees_per_metre(lon, lat)
    tfm = Affine(0.5 * dx, 0, lon, 0, -0.5 * dy, lat)  # square 0.5 m pixels on the ground
    scale = ground_scale(rasterio.crs.CRS.from_epsg(4326), lon, lat, 1e-5)
    parts = polish_on_ground(
        building,
        tfm,
        (float(scale.x), float(scale.y), float(scale.area)),
        PolishOptions(regularize=True, simplify=0.5),
    )
    on_ground = shapely.affinity.affine_transform(parts[0][0], (~tfm).to_shapely())
    ring = np.asarray(on_ground.exterior.coords)
    edges = np.diff(ring, axis=0)
    directions = np.degrees(np.arctan2(edges[:, 1], edges[:, 0])) % 90.0
    # every edge along the building's own axes (30°, mod 90) on the ground; squared
    # in degrees instead, they would be 90° apart only on the map, not on the ground
    assert np.allclose(
        np.minimum(np.abs(directions - 30.0), 90 - np.abs(directions - 30.0)), 0, atol=1.0
    )
    assert parts[0][1] == pytest.approx(ground.area * 0.25, rel=0.05)


def test_scale_that_varies_across_a_mosaic_is_reported(stub_model, tmp_path):
    img = np.zeros((3, 64, 64), np.uint8)
    tfm = Affine(10000.0, 0, 1_000_000.0, 0, -10000.0, 6_000_000.0)  # 640 km of Mercator
    raster = write_raster(tmp_path / "big.tif", img, crs="EPSG:3857", tfm=tfm)
    plan, notes = plan_raster(raster, read_metadata(stub_model), TileConfig())
    assert any("scale varies" in n and "gdalwarp" in n for n in notes)
    # the centre's ground resolution: 10 km Mercator units * cos(latitude of the centre)
    lat = np.degrees(2 * np.arctan(np.exp((6_000_000 - 320_000) / 6378137)) - np.pi / 2)
    assert plan.gsd == pytest.approx(10000 * np.cos(np.radians(lat)), rel=0.01)


# === NaN and infinite pixels ===


def _float_copy_with_holes(img: np.ndarray) -> np.ndarray:
    data = img.astype(np.float32)
    data[:, :15, 180:] = np.nan  # top-right corner, no building there
    data[1, 150, 100] = np.inf
    data[2, 80, 10] = -np.inf
    return data


@pytest.mark.parametrize("gsd", [None, 0.25])
def test_float_raster_with_nan_corner_gives_the_uint8_buildings(stub_model, tmp_path, gsd):
    img, shapes = scene()
    data = _float_copy_with_holes(img)
    if gsd is not None:  # a finer raster: goes through the resampling VRT
        data = np.repeat(np.repeat(data, 2, axis=1), 2, axis=2)
        img = np.repeat(np.repeat(img, 2, axis=1), 2, axis=2)
    uint8 = write_raster(tmp_path / "u8.tif", img, gsd=gsd or 0.5)
    raster = write_raster(tmp_path / "f32.tif", data, gsd=gsd or 0.5)
    mask = tmp_path / "mask.tif"
    _, want = _run(uint8, tmp_path / "u8.gpkg", stub_model)
    summary, got = _run(raster, tmp_path / "f32.gpkg", stub_model, save_mask=str(mask))
    assert len(want) == len(shapes)
    if gsd is None:
        assert canonical(got.geometry) == canonical(expected_world(shapes))
    else:
        assert len(got) == len(want)
        assert got["area_m2"].sum() == pytest.approx(want["area_m2"].sum(), rel=0.01)
    assert summary["rasters"][0]["normalization"]["kind"] == "percentile"
    assert all(np.isfinite(v) for v in summary["rasters"][0]["normalization"]["low"])
    nan_notes = [w for w in summary["warnings"] if "NaN" in w]
    assert len(nan_notes) == 1 and "nodata" in nan_notes[0]
    with rasterio.open(mask) as ds:
        assert ds.read(1).any()


def test_float_raster_with_declared_nodata_and_nan(stub_model, tmp_path):
    img, shapes = scene()
    data = _float_copy_with_holes(img)
    data[:, 150:, :20] = -9999.0
    raster = write_raster(tmp_path / "f32.tif", data, nodata=-9999.0)
    _, got = _run(raster, tmp_path / "o.gpkg", stub_model)
    assert canonical(got.geometry) == canonical(expected_world(shapes))


# === Orientation ===


def _orientations(img: np.ndarray, north_up: Affine) -> dict[str, tuple[np.ndarray, Affine]]:
    _, height, width = img.shape
    return {
        # rows stored south to north (positive y pixel size)
        "south-up": (
            np.ascontiguousarray(img[:, ::-1, :]),
            north_up @ Affine.translation(0, height) @ Affine.scale(1, -1),
        ),
        # rotated 90°: the geotransform's rotation terms carry the whole georeference
        "rotated": (
            np.ascontiguousarray(np.rot90(img, k=1, axes=(1, 2))),
            north_up @ Affine(0, -1, width, 1, 0, 0),
        ),
    }


@pytest.mark.parametrize("kind", ["south-up", "rotated"])
@pytest.mark.parametrize("gsd", [0.5, 0.25])
def test_rotated_and_south_up_rasters_match_north_up(stub_model, tmp_path, kind, gsd):
    img, shapes = scene()
    factor = round(0.5 / gsd)
    fine = np.repeat(np.repeat(img, factor, axis=1), factor, axis=2)
    north = write_raster(tmp_path / "north.tif", fine, gsd=gsd)
    data, tfm = _orientations(fine, transform(gsd))[kind]
    other = write_raster(tmp_path / f"{kind}.tif", data, tfm=tfm)
    _, want = _run(north, tmp_path / "n.gpkg", stub_model, block_size=96)
    _, got = _run(other, tmp_path / "o.gpkg", stub_model, block_size=96)
    if factor == 1:
        assert canonical(got.geometry) == canonical(expected_world(shapes))
    assert canonical(got.geometry, digits=3) == canonical(want.geometry, digits=3)
    np.testing.assert_allclose(
        sorted(got["area_m2"]), sorted(want["area_m2"]), rtol=1e-6, atol=1e-3
    )


def test_sheared_geotransform_is_refused_naming_gdalwarp(stub_model, tmp_path):
    img, _ = scene()
    tfm = Affine(0.5, 0.2, 500000.0, 0.0, -0.5, 5000000.0)
    raster = write_raster(tmp_path / "shear.tif", img, tfm=tfm)
    with pytest.raises(RasterError, match="sheared geotransform.*gdalwarp"):
        tile_infer([str(raster)], tmp_path / "o.gpkg", stub_model, TileConfig())
    assert not (tmp_path / "o.gpkg").exists()
