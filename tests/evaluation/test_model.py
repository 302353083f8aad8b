"""``evaluate_model`` polygon metrics equal pycocotools run by hand on the same predictions."""

from __future__ import annotations

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
from affine import Affine
from helpers import BACKGROUND_RGB, BUILDING, BUILDING_RGB, make_learnable_coco, rect_polygon
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from rasters import make_stub_model
from scipy import ndimage

from mapseg_core.training.evaluate import evaluate_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalpoly")
    annotations, images = make_learnable_coco(root, n_images=6)
    # 48 px input on 64 px images: predictions are resized both ways, so they are not perfect.
    # Pixel outlines and no minimum area: tile-infer's polygons are then exactly the
    # connected components, so pycocotools by hand on components must agree.
    model = make_stub_model(
        root / "stub.keras",
        input_size=(48, 48),
        polish={"outline": "pixel", "simplify_px": 1.5, "min_area_m2": 0.0},
    )
    return model, annotations, images


def _by_hand(model_path, annotations, images_dir):
    import keras

    from mapseg_core.models.artifact import load_artifact

    model, _ = load_artifact(model_path)
    data = json.loads(annotations.read_text())
    results = []
    for info in data["images"]:
        image = np.asarray(Image.open(images_dir / info["file_name"]).convert("RGB"))
        x = cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
        logits = np.asarray(model.predict_on_batch(x[None]))[0, ..., 0]
        prob = 1 / (1 + np.exp(-logits))
        prob = cv2.resize(prob, (info["width"], info["height"]), interpolation=cv2.INTER_LINEAR)
        labels, n = ndimage.label(prob >= 0.5)
        for k in range(1, n + 1):
            m = labels == k
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            results.append(
                {
                    "image_id": info["id"],
                    "category_id": 100,
                    "segmentation": rle,
                    "score": float(prob[m].mean()),
                }
            )
    del keras
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        ev = COCOeval(gt, gt.loadRes(results), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, len(results)


def test_polygon_ap_equals_pycocotools_by_hand(setup):
    model, annotations, images = setup
    results = evaluate_model(model, annotations, images, workers=1)
    stats, n_pred = _by_hand(model, annotations, images)
    scores = results["all"]
    assert scores["AP"] == pytest.approx(stats[0], abs=1e-9)
    assert scores["AP50"] == pytest.approx(stats[1], abs=1e-9)
    assert scores["AP75"] == pytest.approx(stats[2], abs=1e-9)
    assert scores["AR"] == pytest.approx(stats[8], abs=1e-9)
    assert scores["buildings_predicted"] == n_pred
    assert 0 < scores["AP"] < 1 and scores["F1@0.5"] > 0.5
    assert "iou_coef" in scores  # the pixel table is still there
    for key in ("mask_IoU", "boundary_IoU", "C-IoU", "matched_C-IoU", "N-ratio", "PoLiS_px"):
        assert 0 <= scores[key] < 100, key
    assert 0 < scores["mask_IoU"] <= 1 and scores["C-IoU"] <= scores["mask_IoU"]


def test_evaluate_scores_the_polygons_tile_infer_writes(tmp_path, setup):
    """With the default (clean) outlines, the instances are polygons_from_probability's."""
    from mapseg_core.data.coco import load_coco
    from mapseg_core.evaluation.model import image_polish_options, predict_instances
    from mapseg_core.models.artifact import load_artifact
    from mapseg_core.vectorize.pipeline import polygons_from_probability

    _, annotations, images = setup
    path = make_stub_model(tmp_path / "clean.keras", input_size=(48, 48))  # no polish: defaults
    model, meta = load_artifact(path)
    dataset = load_coco(annotations, images)
    ids = dataset.image_ids[:2]
    found = predict_instances(model, dataset, ids, (48, 48), metadata=meta)
    options = image_polish_options(meta)
    assert options.regularize and options.simplify == pytest.approx(1.5 * meta["gsd"])
    for image_id in ids:
        image = dataset.load_image(image_id)
        x = cv2.resize(image, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
        logits = np.asarray(model.predict_on_batch(x[None]))[0, ..., 0]
        prob = cv2.resize(1 / (1 + np.exp(-logits)), image.shape[1::-1])
        expected = polygons_from_probability(prob, Affine.identity(), options, 0.5)
        got = [r["geometry"] for r in found if r["image_id"] == image_id]
        assert len(got) == len(expected) > 0
        for g, e in zip(got, expected, strict=True):
            assert g.equals_exact(e.geometry, 1e-6)
    results = evaluate_model(path, annotations, images, workers=1)["all"]
    pixel = evaluate_model(setup[0], annotations, images, workers=1)["all"]
    assert results["N-ratio"] < pixel["N-ratio"]  # clean outlines have fewer vertices


def test_no_polygons_keeps_the_pixel_table_only(setup):
    model, annotations, images = setup
    results = evaluate_model(model, annotations, images, workers=1, polygons=False)
    assert "AP" not in results["all"] and "dice_coef" in results["all"]


def test_reference_outlines_are_the_drawn_footprints_when_chips_kept_them():
    """N-ratio and C-IoU compare with the drawn footprint, not its pixel staircase."""
    import shapely

    from mapseg_core.data.instances import polygon_instances
    from mapseg_core.evaluation.model import _annotation_polygon

    tilted = shapely.affinity.rotate(shapely.box(5.2, 5.3, 17.7, 12.1), 23, origin="center")
    (inst,) = polygon_instances([tilted], (20, 20))
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, **inst}
    index = COCO()
    index.dataset = {
        "images": [{"id": 1, "width": 20, "height": 20, "file_name": "a.png"}],
        "annotations": [ann],
        "categories": [{"id": 1}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        index.createIndex()
    drawn = _annotation_polygon(ann, index, mask_utils)
    assert len(drawn.exterior.coords) - 1 == 4
    assert drawn.symmetric_difference(tilted).area < 0.02  # 1/1000 px rounding
    # Without it (a COCO export from elsewhere), the segmentation polygon is the reference.
    plain = {k: v for k, v in ann.items() if k != "footprint"}
    staircase = _annotation_polygon(plain, index, mask_utils)
    assert len(staircase.exterior.coords) - 1 == len(inst["segmentation"][0]) // 2 > 10


def test_a_crop_model_is_scored_on_the_whole_image_as_tile_infer_sees_it(tmp_path):
    """A model trained at its ground resolution ("crop") was scored on the centre crop of its
    input size (48 px of these 96 px images): the buildings outside it were missed."""
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    rects = [(4, 6, 20, 30), (70, 3, 92, 15), (60, 62, 90, 92), (40, 40, 56, 52), (2, 70, 30, 90)]
    canvas = np.empty((96, 96, 3), np.uint8)
    canvas[:] = BACKGROUND_RGB
    annotations = []
    for k, (x0, y0, x1, y1) in enumerate(rects, start=1):
        canvas[y0:y1, x0:x1] = BUILDING_RGB
        annotations.append(
            {
                "id": k,
                "image_id": 1,
                "category_id": BUILDING,
                "segmentation": [rect_polygon(x0, y0, x1, y1)],
                "iscrowd": 0,
                "area": float((x1 - x0) * (y1 - y0)),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
            }
        )
    Image.fromarray(canvas).save(images_dir / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 96, "width": 96}],
        "annotations": annotations,
        "categories": [{"id": BUILDING, "name": "building"}],
    }
    (tmp_path / "annotation.json").write_text(json.dumps(coco))
    model = make_stub_model(
        tmp_path / "stub.keras",
        input_size=(48, 48),
        polish={"outline": "pixel", "simplify_px": 1.5, "min_area_m2": 0.0},
        config={"train": {"resize_mode": "crop"}},
    )
    scores = evaluate_model(model, tmp_path / "annotation.json", images_dir, workers=1)["all"]
    assert scores["F1@0.5"] == 1.0 and scores["buildings_predicted"] == len(rects)
    assert scores["dice_coef"] > 0.99 and scores["binary_accuracy"] == 1.0
