"""COCO exports carry no resolution: ``--image-gsd`` (or a record's ``gsd``) resamples samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import make_learnable_coco
from PIL import Image
from rasters import GSD, make_stub_model

from mapseg_core.data.coco import load_coco
from mapseg_core.errors import DatasetError


def _upsampled_copy(annotations, images_dir, root, factor=2, gsd_field=None):
    """The same COCO set with every image and polygon ``factor`` times larger."""
    data = json.loads(annotations.read_text())
    out_dir = root / "images"
    out_dir.mkdir(parents=True)
    for info in data["images"]:
        image = Image.open(images_dir / info["file_name"])
        big = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
        big.save(out_dir / info["file_name"])
        info["width"], info["height"] = big.width, big.height
        if gsd_field is not None:
            info["gsd"] = gsd_field
    for ann in data["annotations"]:
        ann["segmentation"] = [[v * factor for v in poly] for poly in ann["segmentation"]]
        ann["bbox"] = [v * factor for v in ann["bbox"]]
        ann["area"] *= factor * factor
    path = root / "annotation.json"
    path.write_text(json.dumps(data))
    return path, out_dir


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagegsd")
    small = make_learnable_coco(root / "small", n_images=4)
    big = _upsampled_copy(*small, root / "big")
    tagged = _upsampled_copy(*small, root / "tagged", gsd_field=0.15)
    return small, big, tagged


def test_at_gsd_delivers_the_samples_at_the_model_resolution(sets):
    small, big, tagged = sets
    reference = load_coco(*small)
    image_id = reference.image_ids[0]
    for dataset in (
        load_coco(*big).at_gsd(0.3, 0.15),  # --image-gsd
        load_coco(*tagged).at_gsd(0.3),  # the record's gsd field
        load_coco(*tagged).at_gsd(0.3, 0.15),
    ):
        assert dataset.sample_shape(image_id) == (64, 64)
        np.testing.assert_array_equal(dataset.load_image(image_id), reference.load_image(image_id))
        np.testing.assert_array_equal(dataset.load_mask(image_id), reference.load_mask(image_id))
        assert dataset.load_instances(image_id).max() == reference.load_instances(image_id).max()
    # An explicit --image-gsd wins over the record; no GSD at all leaves the images as stored.
    assert load_coco(*tagged).at_gsd(0.3, 0.3).load_image(image_id).shape == (128, 128, 3)
    assert load_coco(*big).at_gsd(0.3).load_image(image_id).shape == (128, 128, 3)
    assert load_coco(*big).at_gsd(0.6, 0.15).load_mask(image_id).shape == (32, 32)
    with pytest.raises(DatasetError, match="image_gsd must be positive"):
        load_coco(*big).at_gsd(0.3, -1.0)


def test_evaluate_with_image_gsd_scores_as_on_the_native_images(tmp_path, sets):
    """2x upsampled images with --image-gsd: same pixel table, same buildings, on the big grid."""
    from mapseg_core.training.evaluate import evaluate_model

    small, big, _ = sets
    model = make_stub_model(tmp_path / "stub.keras", input_size=(64, 64))
    native = evaluate_model(model, *small, workers=1)["all"]
    scaled = evaluate_model(model, *big, workers=1, image_gsd=GSD / 2)["all"]
    for key in ("dice_coef", "iou_coef", "binary_accuracy"):
        assert scaled[key] == pytest.approx(native[key], abs=1e-6), key
    assert scaled["buildings_predicted"] == native["buildings_predicted"] > 0
    assert scaled["F1@0.5"] == pytest.approx(native["F1@0.5"]) and native["F1@0.5"] > 0.5


def test_train_records_and_checks_image_gsd():
    from mapseg_core.config import make_config
    from mapseg_core.errors import ConfigError

    config = make_config("tiny", gsd=0.3, image_gsd=0.15)
    assert config.to_dict()["train"]["image_gsd"] == 0.15
    with pytest.raises(ConfigError, match="--image-gsd"):
        make_config("tiny", image_gsd=0.0)
