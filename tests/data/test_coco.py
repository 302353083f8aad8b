from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers import BUILDING, BUILDING_RGB, SHED, CocoFixture
from pycocotools import mask as mask_utils

from mapseg_core.data.coco import CocoDataset, load_coco
from mapseg_core.errors import DatasetError, InputFileNotFound


def _write(fixture: CocoFixture, data: dict) -> Path:
    fixture.annotations.write_text(json.dumps(data))
    return fixture.annotations


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.fixture
def dataset(coco_set: CocoFixture) -> CocoDataset:
    return load_coco(coco_set.annotations, coco_set.images_dir)


# === Masks ===


@pytest.mark.parametrize("image_id", [1, 2, 5, 7, 9, 12])
def test_mask_is_union_of_all_categories_to_the_pixel(
    coco_set: CocoFixture, dataset: CocoDataset, image_id: int
) -> None:
    mask = dataset.load_mask(image_id)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, coco_set.expected_mask(image_id, (BUILDING, SHED)))


def test_default_categories_are_all_in_the_file(dataset: CocoDataset) -> None:
    assert dataset.category_ids == (BUILDING, SHED)
    # Image 11 has no annotation; image 12 only a shed.
    assert dataset.image_ids == (1, 2, 5, 7, 9, 12)


def test_category_filter_drops_other_categories_and_their_images(coco_set: CocoFixture) -> None:
    buildings = load_coco(coco_set.annotations, coco_set.images_dir, category_ids=[BUILDING])
    assert buildings.category_ids == (100,)
    assert buildings.image_ids == (1, 2, 5, 7, 9)
    np.testing.assert_array_equal(buildings.load_mask(2), coco_set.expected_mask(2, (BUILDING,)))
    sheds = load_coco(coco_set.annotations, coco_set.images_dir, category_ids=(SHED,))
    assert sheds.image_ids == (2, 12)
    np.testing.assert_array_equal(sheds.load_mask(2), coco_set.expected_mask(2, (SHED,)))


def test_crowd_rle_mask_matches_drawn_rectangle(coco_set: CocoFixture) -> None:
    buildings = load_coco(coco_set.annotations, coco_set.images_dir, category_ids=[BUILDING])
    mask = buildings.load_mask(2)
    assert mask[5:20, 5:15].all()
    assert mask.sum() == 15 * 10


def test_mask_ignores_wrong_bbox(dataset: CocoDataset) -> None:
    # Every generated bbox covers the whole 32x32 image, as the broken crowdAI ones do.
    assert dataset.load_mask(7).sum() == 12 * 8
    assert dataset.load_mask(7)[0, 0] == 0


def test_l_shaped_polygon_agrees_with_pycocotools_and_drawn_area(dataset: CocoDataset) -> None:
    l_shape = [14, 14, 24, 14, 24, 18, 18, 18, 18, 28, 14, 28]
    reference = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([l_shape], 32, 32)))
    mask = dataset.load_mask(1)
    np.testing.assert_array_equal(mask[12:30, 12:26], reference[12:30, 12:26])
    assert reference.sum() == 10 * 4 + 4 * 10


def test_mask_of_other_sized_image_has_its_size(coco_set: CocoFixture) -> None:
    dataset = load_coco(coco_set.annotations, coco_set.images_dir)
    image, mask = dataset.load_sample(5)
    assert image.shape == (40, 48, 3)
    assert mask.shape == (40, 48)
    np.testing.assert_array_equal(mask, coco_set.expected_mask(5, (BUILDING,)))


# === Images ===


def test_load_image_is_rgb_uint8_with_drawn_colours(dataset: CocoDataset) -> None:
    image = dataset.load_image(1)
    assert image.dtype == np.uint8
    assert image.shape == (32, 32, 3)
    assert tuple(image[5, 5]) == BUILDING_RGB


def test_grayscale_is_converted_with_one_warning(
    dataset: CocoDataset, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mapseg"):
        first = dataset.load_image(7)
        dataset.load_image(7)
    assert first.shape == (32, 32, 3)
    np.testing.assert_array_equal(first[..., 0], first[..., 2])
    messages = [r.getMessage() for r in caplog.records if "mode L" in r.getMessage()]
    assert len(messages) == 1


def test_rgba_alpha_is_dropped_with_a_warning(
    dataset: CocoDataset, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mapseg"):
        image = dataset.load_image(9)
    assert image.shape == (32, 32, 3)
    assert tuple(image[10, 2]) == BUILDING_RGB
    assert any("mode RGBA" in r.getMessage() for r in caplog.records)


def test_summary_is_json_and_counts(dataset: CocoDataset) -> None:
    summary = json.loads(json.dumps(dataset.summary()))
    assert summary["annotations"] == "annotation.json"
    assert summary["images_dir"] == "images"  # relative to the annotation file
    assert len(summary["annotations_sha256"]) == 64
    assert summary["images"] == 6
    assert summary["annotations_count"] == 8
    assert summary["categories"] == [
        {"id": 100, "name": "building"},
        {"id": 200, "name": "shed"},
    ]
    assert summary["annotations"].endswith("annotation.json")


def test_image_info_is_a_copy(dataset: CocoDataset) -> None:
    info = dataset.image_info(5)
    assert (info["height"], info["width"]) == (40, 48)
    info["height"] = 1
    assert dataset.image_info(5)["height"] == 40
    with pytest.raises(DatasetError, match="image id 999"):
        dataset.image_info(999)


def test_pycocotools_prints_nothing(
    coco_set: CocoFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    load_coco(coco_set.annotations, coco_set.images_dir)
    assert capsys.readouterr().out == ""


# === Bad input ===


def test_missing_annotation_file(coco_set: CocoFixture) -> None:
    with pytest.raises(InputFileNotFound) as exc:
        load_coco(coco_set.annotations.with_name("nope.json"), coco_set.images_dir)
    assert "pass the path to the COCO annotation" in _one_line(exc)


def test_annotation_file_not_json(coco_set: CocoFixture) -> None:
    coco_set.annotations.write_text("{not json")
    with pytest.raises(DatasetError) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir)
    assert "not valid JSON" in _one_line(exc)


def test_json_but_not_coco(coco_set: CocoFixture) -> None:
    _write(coco_set, {"type": "FeatureCollection", "features": []})
    with pytest.raises(DatasetError) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir)
    assert "export the labels as COCO" in _one_line(exc)


def test_image_record_without_file_name(coco_set: CocoFixture) -> None:
    data = coco_set.data()
    del data["images"][0]["file_name"]
    _write(coco_set, data)
    with pytest.raises(DatasetError) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir)
    assert "fix the annotation file" in _one_line(exc)


def test_unknown_category_lists_the_files_categories(coco_set: CocoFixture) -> None:
    with pytest.raises(DatasetError) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir, category_ids=[1])
    message = _one_line(exc)
    assert "100 (building)" in message and "200 (shed)" in message
    assert "--category-ids" in message


def test_no_annotated_images(coco_set: CocoFixture) -> None:
    data = coco_set.data()
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != SHED]
    _write(coco_set, data)
    with pytest.raises(DatasetError) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir, category_ids=[SHED])
    assert "check --category-ids" in _one_line(exc)


def test_annotation_without_segmentation(coco_set: CocoFixture) -> None:
    data = coco_set.data()
    del data["annotations"][0]["segmentation"]
    _write(coco_set, data)
    with pytest.raises(DatasetError) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir)
    assert "never bbox" in _one_line(exc)


def test_missing_images_dir(coco_set: CocoFixture) -> None:
    with pytest.raises(InputFileNotFound) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir / "missing")
    assert "pass the folder holding the images" in _one_line(exc)


def test_missing_image_files_are_counted_and_named(coco_set: CocoFixture) -> None:
    (coco_set.images_dir / coco_set.files[2]).unlink()
    (coco_set.images_dir / coco_set.files[9]).unlink()
    (coco_set.images_dir / coco_set.files[11]).unlink()  # not annotated: not checked
    with pytest.raises(DatasetError) as exc:
        load_coco(coco_set.annotations, coco_set.images_dir)
    message = _one_line(exc)
    assert "2 of 6 annotated images are missing" in message
    assert coco_set.files[2] in message and coco_set.files[9] in message
    assert "check the images folder" in message


def test_corrupt_image_is_named_at_load_time(coco_set: CocoFixture) -> None:
    path = coco_set.images_dir / coco_set.files[1]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    dataset = load_coco(coco_set.annotations, coco_set.images_dir)
    with pytest.raises(DatasetError) as exc:
        dataset.load_image(1)
    message = _one_line(exc)
    assert str(path) in message and "replace the corrupt file" in message


def test_truncated_image_is_named_at_load_time(coco_set: CocoFixture) -> None:
    path = coco_set.images_dir / coco_set.files[2]
    path.write_bytes(path.read_bytes()[:60])
    dataset = load_coco(coco_set.annotations, coco_set.images_dir)
    with pytest.raises(DatasetError, match="cannot read image"):
        dataset.load_image(2)


def test_image_of_other_size_than_declared(coco_set: CocoFixture) -> None:
    data = coco_set.data()
    next(i for i in data["images"] if i["id"] == 7)["width"] = 30
    _write(coco_set, data)
    dataset = load_coco(coco_set.annotations, coco_set.images_dir)
    with pytest.raises(DatasetError) as exc:
        dataset.load_image(7)
    assert "fix its height/width" in _one_line(exc)


def test_rle_of_wrong_size(coco_set: CocoFixture) -> None:
    data = coco_set.data()
    crowd = next(a for a in data["annotations"] if a["iscrowd"] == 1)
    crowd["segmentation"]["size"] = [16, 64]
    _write(coco_set, data)
    dataset = load_coco(coco_set.annotations, coco_set.images_dir)
    with pytest.raises(DatasetError) as exc:
        dataset.load_mask(crowd["image_id"])
    assert "fix the RLE size" in _one_line(exc)


# === Real data ===


@pytest.mark.realdata
def test_crowdai_sample(shared_data: Path) -> None:
    root = shared_data / "crowdai-sample" / "train"
    dataset = load_coco(root / "annotation.json", root / "images")
    summary = dataset.summary()
    assert dataset.category_ids == (100,)
    assert summary["images"] == 20
    assert summary["annotations_count"] == 188
    for image_id in dataset.image_ids:
        image, mask = dataset.load_sample(image_id)
        assert image.shape == (300, 300, 3)
        assert mask.shape == (300, 300)
        assert 0 < mask.sum() < mask.size


def test_images_without_buildings_are_kept_as_negatives_when_asked(coco_set, tmp_path):
    import json as _json

    data = _json.loads(coco_set.annotations.read_text())
    first = data["images"][0]
    data["images"].append({**first, "id": 999, "file_name": first["file_name"]})
    path = tmp_path / "with_negative.json"
    path.write_text(_json.dumps(data))
    plain = load_coco(path, coco_set.images_dir)
    kept = load_coco(path, coco_set.images_dir, include_negatives=True)
    assert 999 not in plain.image_ids and 999 in kept.image_ids
    assert kept.load_mask(999).sum() == 0 and kept.load_instances(999).sum() == 0
    some = plain.image_ids[0]
    ids = kept.load_instances(some)
    assert ((ids > 0) == (kept.load_mask(some) > 0)).all()
