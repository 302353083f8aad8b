"""Post-processing chosen by building F1: fragments dropped, a terrace separated."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mapseg_core.data.coco import load_coco
from mapseg_core.training.tune import (
    Candidate,
    candidate_metadata,
    metadata_updates,
    tune_postprocessing,
)

SIZE = 64
# A terrace of three houses (columns 8..27, 28..47, 48..59), party-wall bands where the
# contact channel is 0.25, and a 6x6 px blob (9 m2 at 0.5 m) the model calls 0.65 building.
HOUSES = [(10, 31, 8, 28), (10, 31, 28, 48), (10, 31, 48, 60)]  # rows r0..r1, cols c0..c1
WALLS = [(10, 31, 26, 30), (10, 31, 46, 50)]
FRAGMENT = (45, 51, 40, 46)


class ColourModel:
    """Logits read off the image: red = building 0.9, blue = 0.65, green = contact 0.25."""

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        building = np.where(x[..., 0] > 127, 0.9, np.where(x[..., 2] > 127, 0.65, 0.02))
        contact = np.where(x[..., 1] > 127, 0.25, 0.01)
        prob = np.stack([building, contact], axis=-1)
        return np.log(prob / (1 - prob)).astype(np.float32)


@pytest.fixture
def scene(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for r0, r1, c0, c1 in HOUSES:
        image[r0:r1, c0:c1, 0] = 255
    for r0, r1, c0, c1 in WALLS:
        image[r0:r1, c0:c1, 1] = 255
    r0, r1, c0, c1 = FRAGMENT
    image[r0:r1, c0:c1, 2] = 255
    Image.fromarray(image).save(images / "a.png")
    anns = [
        {
            "id": k + 1,
            "image_id": 1,
            "category_id": 100,
            "segmentation": [[c0, r0, c1, r0, c1, r1, c0, r1]],
            "area": float((r1 - r0) * (c1 - c0)),
            "bbox": [c0, r0, c1 - c0, r1 - r0],
            "iscrowd": 0,
        }
        for k, (r0, r1, c0, c1) in enumerate(HOUSES)
    ]
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": SIZE, "height": SIZE}],
        "annotations": anns,
        "categories": [{"id": 100, "name": "building"}],
    }
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(coco))
    metadata = {
        "input_size": [SIZE, SIZE],
        "gsd": 0.5,
        "output": "logits",
        "threshold": 0.5,
        "channels": ["building", "contact"],
        "separation": {"radius": 8, "threshold": 0.5},
        "polish": {"outline": "pixel", "simplify_px": 1.5, "min_area_m2": 2.0},
        "config": {"train": {"resize_mode": "resize"}},
    }
    return load_coco(path, images), metadata


def _f1(scored, threshold, separation, area):
    (row,) = [
        c
        for c in scored
        if (c.threshold, c.separation_threshold, c.min_area_m2) == (threshold, separation, area)
    ]
    return row.figures["F1@0.5"]


def test_tuning_drops_the_fragment_and_separates_the_houses(scene):
    dataset, metadata = scene
    best, scored = tune_postprocessing(ColourModel(), metadata, dataset, dataset.image_ids)
    assert best.figures["F1@0.5"] == pytest.approx(1.0)
    assert best.figures["buildings_predicted"] == 3
    # The wall (contact 0.25) only separates the houses below 0.25; the blob (0.65,
    # 9 m2) goes only with a threshold above 0.65 or a minimum area above 9 m2.
    assert best.separation_threshold is not None and best.separation_threshold < 0.25
    assert best.threshold > 0.65 or best.min_area_m2 > 9
    # The model's own settings merge the terrace into one polygon (IoU < 0.5 with each
    # house) and keep the blob: F1 0.
    assert _f1(scored, 0.5, 0.5, 2.0) == 0.0
    # Separated but with the blob: 3 of 4 predictions right, all 3 houses found.
    assert _f1(scored, 0.5, 0.2, 2.0) == pytest.approx(6 / 7)
    assert len(scored) == 5 * 4 * 3


def test_metadata_updates_change_only_the_tuned_settings(scene):
    _, metadata = scene
    before = json.dumps(metadata, sort_keys=True)
    candidate = Candidate(0.7, 0.2, 25.0, {})
    updates = metadata_updates(metadata, candidate)
    assert json.dumps(metadata, sort_keys=True) == before  # the input is not changed
    assert updates == {
        "threshold": 0.7,
        "separation": {"radius": 8, "threshold": 0.2},
        "polish": {"outline": "pixel", "simplify_px": 1.5, "min_area_m2": 25.0},
    }
    one_channel = {k: v for k, v in metadata.items() if k not in ("separation", "channels")}
    assert "separation" not in candidate_metadata(one_channel, Candidate(0.6, None, 2.0, {}))


def test_no_image_is_refused(scene):
    dataset, metadata = scene
    with pytest.raises(ValueError, match="image ids"):
        tune_postprocessing(ColourModel(), metadata, dataset, [])
