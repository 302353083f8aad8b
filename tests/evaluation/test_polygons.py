"""Building matching (SpaceNet rule) on hand-built cases, and COCO AP against pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from shapely.geometry import box

from mapseg_core.evaluation.polygons import (
    add_matches,
    coco_ap,
    match_buildings,
    match_masks,
    scores,
    union_iou,
)


def test_exact_partial_and_missing_buildings():
    refs = [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10)]
    preds = [
        box(0, 0, 10, 10),  # exact: IoU 1
        box(20, 0, 30, 6),  # IoU 0.6
        box(40, 0, 50, 4),  # IoU 0.4: below the threshold
        box(100, 100, 110, 110),  # nothing there
    ]
    result = match_buildings(preds, refs)
    assert (result.tp, result.fp, result.fn) == (2, 2, 1)
    assert result.precision == 0.5 and result.recall == pytest.approx(2 / 3)
    assert result.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert result.ious == pytest.approx((1.0, 0.6))
    assert result.ref_ious == pytest.approx((1.0, 0.6, 0.4))
    assert result.pairs == ((0, 0), (1, 1))


def test_one_to_one_takes_the_best_pair_first():
    refs = [box(0, 0, 10, 10)]
    preds = [box(0, 0, 10, 7), box(0, 0, 10, 9)]  # both >= 0.5; only the 0.9 one matches
    result = match_buildings(preds, refs)
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)
    assert result.pairs == ((1, 0),) and result.ious == pytest.approx((0.9,))


def test_one_prediction_covering_two_buildings_matches_at_most_one():
    refs = [box(0, 0, 10, 10), box(10, 0, 20, 10)]
    result = match_buildings([box(0, 0, 20, 10)], refs)
    assert (result.tp, result.fp, result.fn) == (1, 0, 1)  # IoU 0.5 each: one match


def test_empty_sets():
    assert scores(0, 0, 0) == (1.0, 1.0, 1.0)
    assert match_buildings([], [box(0, 0, 1, 1)]).recall == 0.0
    assert match_buildings([box(0, 0, 1, 1)], []).precision == 0.0


def test_union_iou_and_pooling():
    assert union_iou([box(0, 0, 2, 1)], [box(1, 0, 3, 1)]) == pytest.approx(1 / 3)
    a = match_buildings([box(0, 0, 1, 1)], [box(0, 0, 1, 1)])
    b = match_buildings([], [box(0, 0, 1, 1)])
    pooled = add_matches([a, b])
    assert (pooled.tp, pooled.fp, pooled.fn) == (1, 0, 1) and pooled.recall == 0.5


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def test_mask_matching_equals_polygon_matching_on_pixel_boxes():
    shape = (30, 60)
    ref_boxes = [(0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)]
    pred_boxes = [(0, 0, 10, 10), (20, 0, 30, 6), (40, 0, 50, 4)]

    def rles(boxes):
        out = []
        for x0, y0, x1, y1 in boxes:
            m = np.zeros(shape, bool)
            m[y0:y1, x0:x1] = True
            out.append(_rle(m))
        return out

    by_mask = match_masks(rles(pred_boxes), rles(ref_boxes))
    by_poly = match_buildings([box(*b) for b in pred_boxes], [box(*b) for b in ref_boxes])
    assert (by_mask.tp, by_mask.fp, by_mask.fn) == (by_poly.tp, by_poly.fp, by_poly.fn)
    assert by_mask.ious == pytest.approx(by_poly.ious)


def _random_set(seed: int = 0):
    rng = np.random.default_rng(seed)
    images, gts, dts = [], [], []
    for image_id in (1, 2, 3):
        images.append({"id": image_id, "width": 64, "height": 64, "file_name": f"{image_id}.png"})
        for _ in range(4):
            x, y = (int(v) for v in rng.integers(0, 48, 2))
            w, h = (int(v) for v in rng.integers(6, 16, 2))
            m = np.zeros((64, 64), bool)
            m[y : y + h, x : x + w] = True
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": _rle(m),
                    "area": float(m.sum()),
                    "iscrowd": 0,
                    "bbox": [x, y, w, h],
                }
            )
            d = np.roll(m, int(rng.integers(-4, 5)), axis=int(rng.integers(0, 2)))
            dts.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": _rle(d),
                    "score": float(rng.random()),
                }
            )
        noise = np.zeros((64, 64), bool)
        noise[:5, :5] = True
        dts.append(
            {"image_id": image_id, "category_id": 1, "segmentation": _rle(noise), "score": 0.9}
        )
    return {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "b"}]}, dts


def test_coco_ap_equals_pycocotools_by_hand():
    truth, predictions = _random_set()
    ours = coco_ap(truth, predictions)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        dt = gt.loadRes([dict(p) for p in predictions])
        ev = COCOeval(gt, dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours == {"AP": ev.stats[0], "AP50": ev.stats[1], "AP75": ev.stats[2], "AR": ev.stats[8]}
    assert 0 < ours["AP"] < ours["AP50"] <= 1


def test_coco_ap_of_nothing_is_zero():
    truth, _ = _random_set()
    assert coco_ap(truth, []) == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0}
