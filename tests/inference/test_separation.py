"""tile-infer with separation: touching houses come out one polygon each, for any layout."""

from __future__ import annotations

import geopandas as gpd
import pytest
from rasters import canonical, expected_world, make_contact_stub_model, terrace_scene, write_raster

from mapseg_core.config import TileConfig
from mapseg_core.errors import ConfigError
from mapseg_core.inference import predictor
from mapseg_core.inference.engine import tile_infer


@pytest.fixture(scope="module")
def contact_model(tmp_path_factory):
    return make_contact_stub_model(tmp_path_factory.mktemp("contact") / "contact.keras")


@pytest.fixture
def terrace(tmp_path):
    img, shapes = terrace_scene()
    return write_raster(tmp_path / "terrace.tif", img), shapes


def _polygons(raster, model, out, **options):
    config = TileConfig(**{"min_area": 0.0, "overwrite": True, **options})
    summary = tile_infer([str(raster)], out, model, config)
    return summary, gpd.read_file(out)


@pytest.mark.parametrize("windows", ["spans", "model-sized"])
@pytest.mark.parametrize(("block_size", "overlap"), [(32, 4), (64, 8), (4096, 0), (32, 16)])
@pytest.mark.parametrize("tta", [False, True])
def test_each_house_of_a_terrace_is_one_polygon_for_any_block_layout(
    terrace, contact_model, tmp_path, monkeypatch, windows, block_size, overlap, tta
):
    if windows == "model-sized":
        monkeypatch.setattr(predictor, "_takes_any_size", lambda model: False)
    raster, shapes = terrace
    summary, df = _polygons(
        raster, contact_model, tmp_path / "o.gpkg", block_size=block_size, overlap=overlap, tta=tta
    )
    assert canonical(df.geometry) == canonical(expected_world(shapes))
    record = summary["rasters"][0]
    assert record["channels"] == ["building", "contact"]
    assert record["separation"] == {"radius": 4, "threshold": 0.5} and record["tta"] is tta


def test_no_separate_gives_the_connected_components(terrace, contact_model, tmp_path):
    raster, shapes = terrace
    _, df = _polygons(raster, contact_model, tmp_path / "o.gpkg", separate=False, block_size=32)
    assert len(df) == 3  # two terraces and the detached house
    assert df.geometry.area.sum() == pytest.approx(sum(s.area for s in expected_world(shapes)))


def test_separate_without_a_contact_channel_is_refused(terrace, stub_model, tmp_path):
    raster, _ = terrace
    with pytest.raises(ConfigError, match="contact or boundary channel"):
        _polygons(raster, stub_model, tmp_path / "o.gpkg", separate=True)
    assert not (tmp_path / "o.gpkg").exists()


def test_one_channel_model_runs_as_before(terrace, stub_model, tmp_path):
    raster, _ = terrace
    summary, df = _polygons(raster, stub_model, tmp_path / "o.gpkg", block_size=32)
    assert len(df) == 3 and summary["rasters"][0]["separation"] is None


def test_windows_two_blocks_share_are_predicted_once(terrace, contact_model, tmp_path, monkeypatch):
    """Each block's area reaches a ring of windows into its neighbours; in one process every
    window runs once (78 runs for the 28 windows on 32 px blocks of 24 px cores before)."""
    monkeypatch.setattr(predictor, "_takes_any_size", lambda model: False)
    ran = []
    raw = predictor.Predictor.raw
    monkeypatch.setattr(
        predictor.Predictor, "raw", lambda self, w: ran.append(len(w)) or raw(self, w)
    )
    raster, shapes = terrace
    summary, df = _polygons(raster, contact_model, tmp_path / "o.gpkg", block_size=32, overlap=20)
    assert canonical(df.geometry) == canonical(expected_world(shapes))
    core = 64 - 2 * 20
    height, width = terrace_scene()[0].shape[1:]
    assert sum(ran) == -(-height // core) * -(-width // core)
