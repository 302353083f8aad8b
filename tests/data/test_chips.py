"""Raster + labels -> COCO chips: exact pixels, reprojection, filters, skipping, errors."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import shapely.geometry
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from rasterio.features import rasterize
from rasters import CRS, ROOF, expected_world, scene, transform, write_raster
from shapely.geometry import Polygon, box

from mapseg_core.data.chips import ChipConfig, chip_offsets, make_chips
from mapseg_core.data.coco import load_coco
from mapseg_core.data.instances import (
    encode_instance,
    mask_instances,
    nodata_fraction,
    polygon_instances,
)
from mapseg_core.errors import InputError, InputFileNotFound, OutputExistsError, RasterError


def _decode(instance: dict, shape: tuple[int, int]) -> np.ndarray:
    seg = instance["segmentation"]
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, *shape))
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode()}
    return mask_utils.decode(rle).astype(bool)


def _drawn_back(out: Path, shape: tuple[int, int]) -> np.ndarray:
    """Union of every annotation pasted back at its chip's window."""
    coco = COCO(str(out / "annotation.json"))
    canvas = np.zeros(shape, dtype=np.uint8)
    for img in coco.dataset["images"]:
        col, row, w, h = img["window"]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            canvas[row : row + h, col : col + w] |= coco.annToMask(ann)
    return canvas


@pytest.fixture
def scene_set(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """Scene raster, its footprints in EPSG:4326 with a land-cover attribute, and the roof mask."""
    img, shapes = scene()
    raster = write_raster(tmp_path / "scene.tif", img)
    world = expected_world(shapes)
    roads = [box(500001, 4999990, 500003, 4999930)]  # a "road" that must be filtered out
    frame = gpd.GeoDataFrame(
        {"Niveau_2": ["Building"] * len(world) + ["Road"]},
        geometry=[*world, *roads],
        crs=CRS,
    ).to_crs("EPSG:4326")
    labels = tmp_path / "labels.gpkg"
    frame.to_file(labels, driver="GPKG")
    roof = np.all(img.transpose(1, 2, 0) == ROOF, axis=2)
    return raster, labels, roof


def test_chip_offsets_cover_the_axis_with_full_chips():
    assert chip_offsets(100, 32, 32) == [0, 32, 64, 68]
    assert chip_offsets(96, 32, 32) == [0, 32, 64]
    assert chip_offsets(20, 32, 32) == [0]
    assert chip_offsets(100, 40, 30) == [0, 30, 60]


def test_pixel_polygons_are_exact_and_holes_become_rle():
    mask = np.zeros((12, 12), dtype=bool)
    mask[1:4, 1:4] = True
    mask[4, 4] = True  # diagonal neighbour: another 4-connected building
    mask[6:11, 6:11] = True
    mask[8, 8] = False  # a courtyard
    instances = mask_instances(mask)
    assert len(instances) == 3
    kinds = sorted(type(i["segmentation"]).__name__ for i in instances)
    assert kinds == ["dict", "list", "list"]
    union = np.zeros_like(mask)
    for inst in instances:
        drawn = _decode(inst, mask.shape)
        assert drawn.sum() == inst["area"]
        union |= drawn
    assert (union == mask).all()


def test_encode_instance_bbox_and_rle_mode():
    pixels = np.zeros((5, 6), dtype=bool)
    pixels[1:3, 2:5] = True
    inst = encode_instance(pixels, (10, 20), (40, 40), "rle")
    assert inst is not None and isinstance(inst["segmentation"], dict)
    assert inst["bbox"] == [22.0, 11.0, 3.0, 2.0] and inst["area"] == 6.0
    assert _decode(inst, (40, 40))[11:13, 22:25].all()
    assert encode_instance(pixels, (0, 0), (40, 40), min_pixels=7) is None


def test_polygon_instances_follow_the_pixel_centre_rule():
    tilted = shapely.affinity.rotate(box(5.2, 5.3, 17.7, 12.1), 23, origin="center")
    clipped_off = box(-5, 2, 3.4, 8)  # partly outside the chip
    shape = (20, 20)
    instances = polygon_instances([tilted, clipped_off], shape)
    for inst, poly in zip(instances, [tilted, clipped_off], strict=True):
        expected = rasterize([(poly, 1)], out_shape=shape, dtype="uint8").astype(bool)
        assert (_decode(inst, shape) == expected).all()
    # Each instance also keeps the drawn footprint, clipped to the chip, for the
    # polygon-quality metrics: 4 corners, not the pixel staircase of its segmentation.
    drawn = [shapely.geometry.shape(inst["footprint"]) for inst in instances]
    assert [len(g.geoms[0].exterior.coords) - 1 for g in drawn] == [4, 4]
    assert len(instances[0]["segmentation"][0]) // 2 > 10  # the staircase
    assert drawn[0].symmetric_difference(tilted).area < 0.02  # 1/1000 px rounding
    assert drawn[1].equals(box(0, 2, 3.4, 8))


def test_nodata_fraction_ignores_labelled_pixels():
    invalid = np.zeros((4, 4), dtype=bool)
    invalid[:2] = True
    covered = np.zeros((4, 4), dtype=bool)
    covered[0] = True
    assert nodata_fraction(invalid, None) == 0.5
    assert nodata_fraction(invalid, covered) == 0.25


def test_vector_labels_in_another_crs_draw_back_exactly(tmp_path, scene_set):
    raster, labels, roof = scene_set
    out = tmp_path / "chips"
    summary = make_chips(raster, labels, out, ChipConfig(size=64, where="Niveau_2 == 'Building'"))
    assert summary.chips == 12  # rows 0, 64, 96; cols 0, 64, 128, 136
    assert summary.buildings == 8
    assert (_drawn_back(out, roof.shape).astype(bool) == roof).all()
    data = json.loads((out / "annotation.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "building", "supercategory": "building"}]
    first = data["images"][0]
    assert first["file_name"] == "scene_r000000_c000000.png"
    assert first["geotransform"] == [500000.0, 0.5, 0.0, 5000000.0, 0.0, -0.5]
    assert rasterio.crs.CRS.from_wkt(first["crs"]).to_epsg() == 32633
    holed = [a for a in data["annotations"] if isinstance(a["segmentation"], dict)]
    assert holed, "the courtyard building must be written as RLE"
    # The chips are a COCO set mapseg train reads as it is.
    dataset = load_coco(out / "annotation.json", out / "images")
    image, mask = dataset.load_sample(dataset.image_ids[0])
    assert image.shape == (64, 64, 3) and mask.shape == (64, 64)


def test_where_filter_drops_other_classes(tmp_path, scene_set):
    raster, labels, roof = scene_set
    out = tmp_path / "all"
    make_chips(raster, labels, out, ChipConfig(size=64))
    assert _drawn_back(out, roof.shape).sum() > roof.sum()  # the road is in


def test_mask_labels_and_skip_empty(tmp_path, scene_set):
    raster, _, roof = scene_set
    mask_path = write_raster(tmp_path / "mask.tif", (roof[None] * 255).astype(np.uint8))
    out = tmp_path / "chips"
    summary = make_chips(
        raster, mask_path, out, ChipConfig(size=32, skip_empty=True, segmentation="rle")
    )
    assert summary.skipped_empty > 0
    assert (_drawn_back(out, roof.shape).astype(bool) == roof).all()


def test_white_roofs_equal_to_nodata_keep_their_chip(tmp_path):
    img = np.zeros((3, 64, 64), dtype=np.uint8)
    img[:] = 255  # everything equals the declared nodata...
    img[:, 40:, :] = np.array(ROOF, dtype=np.uint8)[:, None, None]
    raster = write_raster(tmp_path / "white.tif", img, nodata=255)
    t = transform()
    white_roof = Polygon([t @ (0, 0), t @ (32, 0), t @ (32, 32), t @ (0, 32)])
    labels = tmp_path / "roof.gpkg"
    gpd.GeoDataFrame(geometry=[white_roof], crs=CRS).to_file(labels)
    config = ChipConfig(size=32, skip_nodata=0.5)
    summary = make_chips(raster, labels, tmp_path / "out", config)
    # Chip (0, 0) is all white but all labelled: kept. Chip (0, 32) is white, unlabelled: dropped.
    data = json.loads((tmp_path / "out/annotation.json").read_text())
    names = {i["file_name"] for i in data["images"]}
    assert "white_r000000_c000000.png" in names
    assert "white_r000000_c000032.png" not in names
    assert summary.skipped_nodata == 1 and summary.chips == 3


def test_gsd_resampling_halves_the_grid(tmp_path, scene_set):
    raster, labels, _ = scene_set
    summary = make_chips(raster, labels, tmp_path / "out", ChipConfig(size=64, gsd=1.0))
    assert (summary.width, summary.height) == (100, 80) and summary.gsd_m == 1.0
    data = json.loads((tmp_path / "out/annotation.json").read_text())
    assert data["images"][0]["geotransform"][1] == pytest.approx(1.0)


def test_errors_name_the_fix(tmp_path, scene_set):
    raster, labels, _ = scene_set
    with pytest.raises(InputFileNotFound, match="labels"):
        make_chips(raster, tmp_path / "nope.gpkg", tmp_path / "o1")
    with pytest.raises(InputError, match="matches --where"):
        make_chips(raster, labels, tmp_path / "o2", ChipConfig(where="Niveau_2 = 'Castle'"))
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 10, 10)], crs=CRS).to_file(far)
    with pytest.raises(InputError, match="do not overlap"):
        make_chips(raster, far, tmp_path / "o3")
    no_crs = write_raster(tmp_path / "nocrs.tif", np.zeros((3, 16, 16), np.uint8), crs=None)
    with pytest.raises(RasterError, match="no CRS"):
        make_chips(no_crs, labels, tmp_path / "o4")
    make_chips(raster, labels, tmp_path / "o5", ChipConfig(size=64))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        make_chips(raster, labels, tmp_path / "o5", ChipConfig(size=64))
    summary = make_chips(raster, labels, tmp_path / "o5", ChipConfig(size=100), overwrite=True)
    assert summary.chips == len(list((tmp_path / "o5/images").iterdir()))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.realdata
def test_massachusetts_chips_match_the_footprints(tmp_path, shared_data):
    folder = shared_data / "massachusetts"
    out = tmp_path / "mass"
    summary = make_chips(folder / "22978945_15.tif", folder / "22978945_15.gpkg", out)
    with rasterio.open(folder / "22978945_15.tif") as src:
        shape, tfm = (src.height, src.width), src.transform
    footprints = gpd.read_file(folder / "22978945_15.gpkg").geometry
    expected = rasterize(
        ((g, 1) for g in footprints), out_shape=shape, transform=tfm, dtype="uint8"
    )
    drawn = _drawn_back(out, shape)
    iou = (drawn & expected).sum() / (drawn | expected).sum()
    assert iou >= 0.99, iou
    assert summary.chips == 16 and summary.buildings == 405


def test_float_raster_with_nan_corner_gives_the_uint8_chips(tmp_path, scene_set):
    raster, labels, _ = scene_set
    with rasterio.open(raster) as src:
        data = src.read().astype(np.float32)
        profile = src.profile | {"dtype": "float32"}
    data[:, :40, 136:] = np.nan  # a NaN corner, no nodata declared
    data[0, 150, 100] = np.inf
    floats = tmp_path / "scene_f32.tif"
    with rasterio.open(floats, "w", **profile) as dst:
        dst.write(data)
    config = ChipConfig(size=64, where="Niveau_2 == 'Building'", skip_nodata=0.5)
    want = make_chips(raster, labels, tmp_path / "u8", config)
    got = make_chips(floats, labels, tmp_path / "f32", config)
    assert sum("NaN" in n for n in got.warnings) == 1
    a = json.loads((tmp_path / "u8/annotation.json").read_text())
    b = json.loads((tmp_path / "f32/annotation.json").read_text())
    assert [x["segmentation"] for x in b["annotations"]] == [
        x["segmentation"] for x in a["annotations"]
    ]
    assert got.chips == want.chips and got.skipped_nodata == want.skipped_nodata
    # NaN pixels are black (nodata), the stretch is finite, roofs stay roof-coloured
    from PIL import Image

    corner = np.asarray(Image.open(tmp_path / "f32/images/scene_f32_r000000_c000136.png"))
    assert (corner[:40] == 0).all() and corner[40:].any()
