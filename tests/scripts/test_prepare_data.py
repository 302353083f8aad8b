"""The bundled-model data script's pure logic: XYZ georeference, zoom parents, spatial splits."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bundled_model" / "prepare_data.py"
_spec = importlib.util.spec_from_file_location("prepare_data", SCRIPT)
assert _spec and _spec.loader
prep = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = prep  # dataclasses look their module up there
_spec.loader.exec_module(prep)


def test_tile_name_parses_x_y_z():
    assert prep.parse_tile_name("OAM-1277168-1083840-21.png") == (21, 1277168, 1083840)
    assert prep.parse_tile_name("dir/OAM-386690-220241-19.tif") == (19, 386690, 220241)
    with pytest.raises(ValueError, match="tile name"):
        prep.parse_tile_name("barnarp_0_0.jpg")


def test_tile_bounds_match_chips_csv_rows():
    """Two rows of ../shared/data/hotosm-oam/chips.csv, copied (EPSG:3857, 3 decimals)."""
    rows = [
        ((21, 1277168, 1083840), (4368223.292, -673887.951, 4368242.402, -673868.841)),
        ((21, 1277168, 1083843), (4368223.292, -673945.278, 4368242.402, -673926.169)),
    ]
    for zxy, expected in rows:
        assert prep.tile_bounds_3857(*zxy) == pytest.approx(expected, abs=1e-3)


def test_tile_bounds_lonlat_and_ground_gsd():
    # The fAIr Banepa sidecar of OAM-386690-220241-19 puts its origin at 85.5189514, 27.6342655.
    west, south, east, north = prep.tile_bounds_lonlat(19, 386690, 220241)
    assert (west, north) == pytest.approx((85.5189514, 27.6342655), abs=1e-7)
    assert east > west and north > south
    # z19 is 0.30 m at the equator; at Banepa (27.6 N) the ground pixel is cos(lat) smaller.
    assert prep.tile_ground_gsd(19, 2**18) == pytest.approx(0.2986, abs=1e-4)
    assert prep.tile_ground_gsd(19, 220241) == pytest.approx(
        0.2986 * math.cos(math.radians(27.634)), abs=2e-4
    )
    assert prep.tile_ground_gsd(20, 2 * 220241, pixels=512) == pytest.approx(
        prep.tile_ground_gsd(19, 220241) / 4, rel=1e-4
    )


def test_xyz_chip_becomes_a_georeferenced_geotiff(tmp_path):
    png = tmp_path / "OAM-386690-220241-19.png"
    Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(png)
    tif = prep.xyz_geotiff(png, tmp_path / "chip.tif")
    with rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 4326 and (ds.width, ds.height) == (256, 256)
        assert (ds.bounds.left, ds.bounds.top) == pytest.approx((85.5189514, 27.6342655), abs=1e-7)
        assert ds.read(2)[100, 100] == 90
    assert prep._raster_gsd(tif) == pytest.approx(prep.tile_ground_gsd(19, 220241), rel=2e-3)


def test_every_zoom_maps_to_its_z19_parent():
    assert prep.parent_tile(19, 319292, 270960) == (319292, 270960)
    # One z19 tile = 16 z21 tiles: all of them have the same parent.
    kids = {
        prep.parent_tile(21, 4 * 319292 + i, 4 * 270960 + j) for i in range(4) for j in range(4)
    }
    assert kids == {(319292, 270960)}
    assert prep.parent_tile(21, 4 * 319292 + 4, 4 * 270960) == (319293, 270960)
    with pytest.raises(ValueError):
        prep.parent_tile(18, 1, 1)


def test_column_split_keeps_zoom_levels_of_one_place_together():
    cuts = (319297, 319298)
    assert [prep.column_split(x, cuts) for x in (319292, 319297, 319298, 319299)] == [
        "train",
        "valid",
        "heldout",
        "heldout",
    ]
    for z in (19, 20, 21):
        shift = z - 19
        x = (319298 << shift) + (2**shift - 1)
        assert prep.column_split(prep.parent_tile(z, x, 270960 << shift)[0], cuts) == "heldout"


def test_banepa_sets_share_one_rule():
    """fAIr Banepa (x 386690..386695) and hotosm-oam 3_banepa_np (x >= 386697): no train tile
    lies east of a held-out one, so the two adjoining sets cannot leak into each other."""
    fair = [prep.column_split(x, prep.BANEPA_CUTS) for x in range(386690, 386696)]
    assert fair == ["train", "train", "train", "valid", "heldout", "heldout"]
    assert prep.HOTOSM_AREAS["3_banepa_np"] == prep.BANEPA_CUTS
    assert prep.column_split(386697, prep.HOTOSM_AREAS["3_banepa_np"]) == "heldout"


def test_rio_split_by_tile_number():
    assert [prep.rio_split(n) for n in (50, 59, 60, 61, 62, 64)] == [
        "train",
        "train",
        "valid",
        "valid",
        "heldout",
        "heldout",
    ]


def test_licences_decide_training():
    trained = {s.name for s in prep.SOURCES.values() if s.use == "train"}
    assert {"massachusetts", "jonkoping-barnarp", "new-brunswick"}.isdisjoint(trained)
    assert {"crowdai-sample", "hotosm-oam", "hotosm-fair-banepa", "inria-austin"} <= trained
    assert "evaluation only" in prep.credits_markdown()


def test_resampled_size_and_building_stats():
    assert prep.resampled_size(512, 512, 0.25, 0.3) == (427, 427)
    assert prep.resampled_size(256, 256, 0.075, 0.3) == (64, 64)
    stats = prep.building_stats([9.0, 100.0, 100.0, 400.0])
    assert stats["buildings"] == 4 and stats["side_p50_m"] == pytest.approx(10.0)
    assert stats["side_p50_px_0.3m"] == pytest.approx(10.0 / 0.3)
    assert prep.building_stats([]) == {"buildings": 0}


@pytest.mark.realdata
def test_chips_csv_bounds_agree_with_tile_names(shared_data):
    with open(shared_data / "hotosm-oam" / "chips.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows[::50]:
        z, x, y = prep.parse_tile_name(row["file"])
        assert (z, x, y) == (int(row["z"]), int(row["x"]), int(row["y"]))
        expected = [float(row[k]) for k in ("minx_3857", "miny_3857", "maxx_3857", "maxy_3857")]
        assert prep.tile_bounds_3857(z, x, y) == pytest.approx(expected, abs=2e-3)
