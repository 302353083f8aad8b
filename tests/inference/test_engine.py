"""tile_infer end to end with the stub model: exact polygons, rasters of every kind."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
from rasters import (
    GROUND,
    ORIGIN,
    ROOF,
    WHITE,
    canonical,
    expected_world,
    scene,
    transform,
    write_raster,
)
from shapely.geometry import box

from mapseg_core.config import TileConfig
from mapseg_core.errors import ConfigError, ModelError, OutputExistsError, RasterError
from mapseg_core.inference import predictor
from mapseg_core.inference.engine import tile_infer
from mapseg_core.inference.plan import choose_bands, plan_raster
from mapseg_core.models.artifact import file_sha256, read_metadata
from mapseg_core.raster import working_grid

EXACT = {"min_area": 0.0, "outline": "pixel", "overwrite": True}


def _utm_areal_scale() -> float:
    """Grid area per ground area of the synthetic rasters' place (PROJ's own factors)."""
    lon, lat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(*ORIGIN)
    return pyproj.Proj("EPSG:32633").get_factors(lon, lat).areal_scale


def _run(rasters, out, model, **options):
    events: list[dict] = []
    summary = tile_infer(
        [str(r) for r in rasters], out, model, TileConfig(**{**EXACT, **options}), events.append
    )
    return summary, gpd.read_file(out, layer=options.get("layer", "buildings")), events


@pytest.mark.parametrize("windows", ["spans", "model-sized"])
@pytest.mark.parametrize(
    ("block_size", "overlap", "batch_size"), [(32, 8, 1), (48, 4, 3), (100, 16, 8), (4096, 0, 64)]
)
def test_exact_polygons_for_any_block_size_and_overlap(
    scene_raster, stub_model, tmp_path, monkeypatch, block_size, overlap, batch_size, windows
):
    asked = []
    if windows == "model-sized":  # as for a model built for one input size (the U-Nets)
        monkeypatch.setattr(predictor, "_takes_any_size", lambda model: asked.append(1) or False)
    raster, shapes = scene_raster
    summary, df, events = _run(
        [raster],
        tmp_path / "o.gpkg",
        stub_model,
        block_size=block_size,
        overlap=overlap,
        batch_size=batch_size,
    )
    assert canonical(df.geometry) == canonical(expected_world(shapes))
    assert df.crs.to_epsg() == 32633
    assert sorted(df["id"]) == list(range(1, len(shapes) + 1))
    assert (df["source"] == "scene.tif").all()
    assert bool(asked) == (windows == "model-sized")  # the patched path was the one taken
    # area_m2 is ground area: UTM's grid metres are 0.9996 of a ground metre here
    np.testing.assert_allclose(df["area_m2"], df.geometry.area / _utm_areal_scale(), atol=1e-3)
    expected_score = 1 / (1 + np.exp(-8.0))  # the stub's logit on ROOF
    np.testing.assert_allclose(df["score"], expected_score, atol=1e-4)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds
    assert events[-2]["fraction"] == 1.0
    assert summary["features"] == len(shapes)


def test_provenance_is_in_the_layer_metadata(scene_raster, stub_model, tmp_path):
    raster, _ = scene_raster
    _run([raster], tmp_path / "o.gpkg", stub_model, simplify=0.5, outline="clean")
    meta = pyogrio.read_info(tmp_path / "o.gpkg", layer="buildings")["layer_metadata"]
    assert meta["model_sha256"] == file_sha256(stub_model)
    assert json.loads(meta["parameters"])["simplify"] == 0.5
    assert json.loads(meta["rasters"])[0]["normalization"]["kind"] == "identity"
    assert meta["mapseg_version"]


def test_min_area_drops_small_buildings(scene_raster, stub_model, tmp_path):
    raster, shapes = scene_raster
    _, df, _ = _run([raster], tmp_path / "o.gpkg", stub_model, min_area=5.0)  # 4x4 px = 4 m²
    assert len(df) == len(shapes) - 1


def test_uint16_input_is_stretched_once_and_gives_the_same_polygons(stub_model, tmp_path):
    img, shapes = scene()
    raster = write_raster(tmp_path / "u16.tif", img.astype(np.uint16) * 257 + 1000)
    summary, df, _ = _run([raster], tmp_path / "o.gpkg", stub_model, block_size=48)
    assert canonical(df.geometry) == canonical(expected_world(shapes))
    assert summary["rasters"][0]["normalization"]["kind"] == "percentile"


def test_alpha_band_masks_buildings(stub_model, tmp_path):
    img, shapes = scene()
    alpha = np.full(img.shape[1:], 255, np.uint8)
    alpha[:, :100] = 0  # left half transparent
    raster = write_raster(
        tmp_path / "rgba.tif",
        np.concatenate([img, alpha[None]]),
        colorinterp=["red", "green", "blue", "alpha"],
    )
    _, df, _ = _run([raster], tmp_path / "o.gpkg", stub_model)
    clip = box(*expected_world([box(100, 0, 200, 160)])[0].bounds)
    want = [g.intersection(clip) for g in expected_world(shapes) if g.intersects(clip)]
    assert canonical(df.geometry) == canonical([w for w in want if w.area > 0])


def test_declared_nodata_is_never_a_building_and_can_be_overridden(stub_model, tmp_path):
    img, shapes = scene()
    img[:, 100:, :] = 0
    raster = write_raster(tmp_path / "nd.tif", img, nodata=0)
    _, df, _ = _run([raster], tmp_path / "o.gpkg", stub_model)
    above = [s for s in shapes if s.bounds[3] <= 100]
    assert canonical(df.geometry) == canonical(expected_world(above))
    # Overriding nodata with a value no pixel has: the black rows are data (and not roofs).
    summary, _, _ = _run([raster], tmp_path / "o.gpkg", stub_model, nodata=7)
    assert summary["rasters"][0]["nodata"] == 7


def test_all_nodata_raster_warns_and_writes_an_empty_layer(stub_model, tmp_path):
    img = np.full((3, 40, 50), 255, np.uint8)
    raster = write_raster(tmp_path / "blank.tif", img, nodata=255)
    summary, df, events = _run([raster], tmp_path / "o.gpkg", stub_model)
    assert len(df) == 0 and df.crs.to_epsg() == 32633
    assert any("entirely nodata" in w for w in summary["warnings"])
    summary, _, _ = _run([raster], tmp_path / "o.gpkg", stub_model, nodata="none")
    assert not any("entirely nodata" in w for w in summary["warnings"])


def test_white_roof_is_not_nodata_with_nodata_none(stub_model, tmp_path):
    # The Massachusetts trap: nodata=255 is also the colour of white roofs.
    img, _ = scene()
    img[:, 0:10, 0:10] = np.array(WHITE, np.uint8)[:, None, None]
    raster = write_raster(tmp_path / "w.tif", img, nodata=255)
    plan, notes = plan_raster(raster, read_metadata(stub_model), TileConfig())
    assert any("--nodata none" in n for n in notes)
    plan, _ = plan_raster(raster, read_metadata(stub_model), TileConfig(nodata="none"))
    assert plan.nodata is None and not plan.use_gdal_mask


@pytest.mark.parametrize("option", ["assume_crs", "crs"])
def test_a_crs_option_that_is_not_a_crs_names_the_option(stub_model, tmp_path, option):
    img, _ = scene()
    raster = write_raster(tmp_path / "nocrs.tif", img, crs=None)
    flag = "--" + option.replace("_", "-")
    extra = {option: "EPSG:nonsense"}
    if option == "crs":
        extra["assume_crs"] = "EPSG:32633"
    with pytest.raises(ConfigError, match=f"{flag} 'EPSG:nonsense' is not a CRS"):
        _run([raster], tmp_path / "o.gpkg", stub_model, **extra)
    assert not (tmp_path / "o.gpkg").exists()


def test_raster_without_crs_is_refused_unless_assumed(stub_model, tmp_path):
    img, shapes = scene()
    raster = write_raster(tmp_path / "nocrs.tif", img, crs=None)
    with pytest.raises(RasterError, match="--assume-crs"):
        _run([raster], tmp_path / "o.gpkg", stub_model)
    assert not (tmp_path / "o.gpkg").exists()
    _, df, _ = _run([raster], tmp_path / "o.gpkg", stub_model, assume_crs="EPSG:32633")
    assert canonical(df.geometry) == canonical(expected_world(shapes))


def test_bad_inputs_raise_before_writing(scene_raster, stub_model, tmp_path):
    raster, _ = scene_raster
    (tmp_path / "exists.gpkg").write_text("x")
    with pytest.raises(OutputExistsError):
        tile_infer([raster], tmp_path / "exists.gpkg", stub_model, TileConfig())
    with pytest.raises(ModelError):
        tile_infer([raster], tmp_path / "o.gpkg", tmp_path / "nope.keras", TileConfig())
    bogus = tmp_path / "bogus.tif"
    bogus.write_text("not a tiff")
    with pytest.raises(RasterError, match="not a raster"):
        tile_infer([bogus], tmp_path / "o.gpkg", stub_model, TileConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.tif", "exists.gpkg", "scene.tif"]


def _degree_lengths(latitude: float) -> tuple[float, float]:
    """Metres per degree of longitude and latitude on WGS84 (series expansion, < 1 cm/degree).

    An independent reference for the engine's pyproj-based ground scale.
    """
    phi = np.radians(latitude)
    m_lat = 111132.92 - 559.82 * np.cos(2 * phi) + 1.175 * np.cos(4 * phi)
    m_lon = 111412.84 * np.cos(phi) - 93.5 * np.cos(3 * phi)
    return float(m_lon), float(m_lat)


def test_geographic_raster_converts_metres(stub_model, tmp_path):
    img, _ = scene()
    deg = 0.5 / 111320.0
    tfm = rasterio.Affine(deg / 0.92, 0, 15.0, 0, -deg, 45.0)  # lon degree ~ 0.707 * lat degree
    raster = write_raster(tmp_path / "geo.tif", img[:, :64, :64], crs="EPSG:4326", tfm=tfm)
    summary, df, _ = _run([raster], tmp_path / "o.gpkg", stub_model, gsd="native")
    assert df.crs.to_epsg() == 4326 and len(df) > 0
    assert summary["rasters"][0]["gsd_m"] == pytest.approx(0.5 * np.sqrt(0.7071 / 0.92), rel=0.02)
    mx, my = _degree_lengths(45.0)
    assert mx == pytest.approx(78847, rel=1e-3) and my == pytest.approx(111132, rel=1e-3)
    first = df.sort_values("area_m2").iloc[-1]
    assert first["area_m2"] == pytest.approx(first.geometry.area * mx * my, abs=1e-3)


def test_resampling_to_the_model_gsd_and_back(stub_model, tmp_path):
    img, shapes = scene()
    fine = np.repeat(np.repeat(img, 2, axis=1), 2, axis=2)  # 0.25 m, same scene
    raster = write_raster(tmp_path / "fine.tif", fine, gsd=0.25)
    prob = tmp_path / "prob.tif"
    summary, df, _ = _run(
        [raster], tmp_path / "o.gpkg", stub_model, save_probabilities=str(prob), block_size=64
    )
    assert summary["rasters"][0]["resampled"]
    # Each 0.5 m pixel is the mean of 4 equal 0.25 m pixels: the model sees the scene exactly.
    assert canonical(df.geometry) == canonical(expected_world(shapes))
    with rasterio.open(prob) as ds, rasterio.open(raster) as src:
        assert (ds.width, ds.height, ds.transform, ds.crs) == (
            src.width,
            src.height,
            src.transform,
            src.crs,
        )
        assert ds.overviews(1) and ds.profile["tiled"] and ds.compression is not None
        p = ds.read(1)
        assert p[300, 300] > 200 and p[0, 0] < 10
    summary, _, _ = _run([raster], tmp_path / "o.gpkg", stub_model, gsd="native")
    assert not summary["rasters"][0]["resampled"]


def test_mask_output_matches_the_scene(scene_raster, stub_model, tmp_path):
    raster, _ = scene_raster
    mask = tmp_path / "mask.tif"
    _run([raster], tmp_path / "o.gpkg", stub_model, save_mask=str(mask), block_size=48)
    img, _ = scene()
    with rasterio.open(mask) as ds:
        np.testing.assert_array_equal(ds.read(1), ((img[0] == ROOF[0]) & (img[2] == ROOF[2])))


def test_several_rasters_into_one_layer_in_the_first_crs(stub_model, tmp_path):
    img, shapes = scene()
    a = write_raster(tmp_path / "a.tif", img)
    b = write_raster(
        tmp_path / "b.tif", img, crs="EPSG:32632", tfm=transform(origin=(900000.0, 5000000.0))
    )
    summary, df, _ = _run([a, b], tmp_path / "o.gpkg", stub_model)
    assert df.crs.to_epsg() == 32633 and len(df) == 2 * len(shapes)
    assert set(df["source"]) == {"a.tif", "b.tif"}
    assert sorted(df["id"]) == list(range(1, 2 * len(shapes) + 1))


def test_band_rules():
    rgb = ["red", "green", "blue"]
    assert choose_bands(["red", "green", "blue", "alpha"], 3, rgb, None)[0] == (1, 2, 3)
    assert choose_bands(["blue", "green", "red", "undefined"], 3, rgb, None)[0] == (3, 2, 1)
    assert choose_bands(["undefined"] * 3, 3, rgb, None)[0] == (1, 2, 3)
    bands, notes = choose_bands(["gray"], 3, rgb, None)
    assert bands == (1, 1, 1) and notes
    with pytest.raises(RasterError, match="--bands"):
        choose_bands(["undefined"] * 5, 3, rgb, None)
    assert choose_bands(["undefined"] * 5, 3, rgb, (4, 2, 1))[0] == (4, 2, 1)
    with pytest.raises(RasterError, match="within 1..5"):
        choose_bands(["undefined"] * 5, 3, rgb, (6, 2, 1))


def test_single_band_raster_is_repeated_with_a_warning(stub_model, tmp_path):
    raster = write_raster(tmp_path / "g.tif", np.full((1, 20, 20), 200, np.uint8))
    summary, df, events = _run([raster], tmp_path / "o.gpkg", stub_model)
    assert len(df) == 0 and any("single-band" in w for w in summary["warnings"])
    assert any(e["event"] == "warning" for e in events)


def test_working_grid():
    tfm = transform(0.25)
    assert working_grid(tfm, 100, 80, 0.25, 0.26, 0.05) == (tfm, 100, 80)
    new, w, h = working_grid(tfm, 100, 80, 0.25, 0.5, 0.05)
    assert (w, h) == (50, 40) and new.a == 0.5 and new.c == tfm.c


def test_the_stub_model_finds_roof_pixels_and_not_ground(stub_model):
    from mapseg_core.models.artifact import load_artifact

    model, _ = load_artifact(stub_model)
    x = np.empty((1, 64, 64, 3), np.float32)
    x[:, :32] = GROUND
    x[:, 32:] = ROOF
    logits = np.asarray(model.predict_on_batch(x))[0, ..., 0]
    assert (logits[:32] < 0).all() and (logits[32:] > 0).all()


def test_spans_predict_what_model_sized_windows_predict(tmp_path):
    """A 3x3 CNN (receptive margin 3 <= overlap 8) gives the same probabilities either way."""
    import keras

    from mapseg_core.inference.blocks import run_block
    from mapseg_core.inference.predictor import Predictor
    from mapseg_core.inference.reader import open_working

    raster = write_raster(tmp_path / "scene.tif", scene()[0])
    keras.utils.set_random_seed(20)  # fixed weights: the spread check below must not be luck
    inputs = keras.Input(shape=(None, None, 3))
    x = keras.layers.Rescaling(1 / 64)(inputs)
    for k in range(3):
        x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name=f"c{k}")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(x))
    metadata = {"input_size": [64, 64], "receptive_margin": 8, "bands": 3, "gsd": 0.3}
    metadata |= {"output": "logits", "threshold": 0.5, "band_names": ["red", "green", "blue"]}
    plan, _ = plan_raster(raster, metadata, TileConfig(block_size=100, batch_size=3, gsd="native"))
    spans = Predictor(model, 3, any_size=True)
    windows = Predictor(model, 3, any_size=False)
    spread = []
    with open_working(plan) as ds:
        for block in plan.grid.blocks():
            a = run_block(ds, plan, block, spans, keep_probability=True).probability
            b = run_block(ds, plan, block, windows, keep_probability=True).probability
            np.testing.assert_allclose(a, b, atol=1e-5)
            spread.append(a.std())
    assert max(spread) > 0.01  # the network's output varies with the context: a real check
