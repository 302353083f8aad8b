"""Pure building-level metrics: one-to-one matching at an IoU threshold, and COCO AP.

Matching rule (SpaceNet). Candidate pairs (prediction, reference) are taken
in order of decreasing IoU; a pair is a match (true positive) when its IoU is
at least the threshold and neither building is matched yet. Every unmatched
prediction is a false positive, every unmatched reference a false negative.
Greedy by IoU is what the SpaceNet evaluator does; it differs from an optimal
assignment only when one building overlaps two others by >= 0.5 each, which
cannot happen at IoU >= 0.5 for non-overlapping buildings.

Empty sets: with no prediction and no reference, precision, recall and F1 are
1 (nothing to find, nothing invented); with one of them empty they are 0.

COCO AP is pycocotools' ``COCOeval(iouType="segm")`` untouched (AP over IoU
0.50:0.95, AP50, AP75, AR at ``max_detections``), so a number here is the
number anyone gets from pycocotools on the same files.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray


@dataclass(frozen=True)
class MatchResult:
    """Buildings matched one-to-one at an IoU threshold."""

    # Matched pairs (true positives).
    tp: int
    # Predictions without a match.
    fp: int
    # References without a match.
    fn: int
    # tp / predictions.
    precision: float
    # tp / references.
    recall: float
    # Harmonic mean of precision and recall.
    f1: float
    # IoU of each matched pair, in matching order (all >= the threshold).
    ious: tuple[float, ...]
    # Per reference building: its best IoU with any prediction (0 when none overlaps).
    ref_ious: tuple[float, ...] = ()
    # (prediction index, reference index) of each match.
    pairs: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (pairs and per-building IoUs left out)."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mean_matched_iou": float(np.mean(self.ious)) if self.ious else 0.0,
        }


def scores(tp: int, n_pred: int, n_ref: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (empty-set rule in the module docstring)."""
    if n_pred == 0 and n_ref == 0:
        return 1.0, 1.0, 1.0
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def greedy_match(
    pred_idx: NDArray[np.int64],
    ref_idx: NDArray[np.int64],
    ious: NDArray[np.float64],
    n_pred: int,
    n_ref: int,
    iou: float = 0.5,
) -> MatchResult:
    """One-to-one matching of candidate pairs by decreasing IoU (the SpaceNet rule).

    Args:
        pred_idx, ref_idx, ious: candidate pairs and their IoU (pairs that do not
            overlap may be left out).
        n_pred, n_ref: number of predictions and references.
        iou: threshold a pair's IoU must reach.
    """
    pred_idx = np.asarray(pred_idx, dtype=np.int64)
    ref_idx = np.asarray(ref_idx, dtype=np.int64)
    ious = np.asarray(ious, dtype=np.float64)
    best = np.zeros(n_ref, dtype=np.float64)
    if len(ious):
        np.maximum.at(best, ref_idx, ious)
    # Stable order: ties broken by prediction then reference index, so results are reproducible.
    order = np.lexsort((ref_idx, pred_idx, -ious))
    used_pred: set[int] = set()
    used_ref: set[int] = set()
    pairs: list[tuple[int, int]] = []
    matched: list[float] = []
    for k in order:
        if ious[k] < iou:
            break
        p, r = int(pred_idx[k]), int(ref_idx[k])
        if p in used_pred or r in used_ref:
            continue
        used_pred.add(p)
        used_ref.add(r)
        pairs.append((p, r))
        matched.append(float(ious[k]))
    tp = len(pairs)
    precision, recall, f1 = scores(tp, n_pred, n_ref)
    return MatchResult(
        tp=tp,
        fp=n_pred - tp,
        fn=n_ref - tp,
        precision=precision,
        recall=recall,
        f1=f1,
        ious=tuple(matched),
        ref_ious=tuple(float(v) for v in best),
        pairs=tuple(pairs),
    )


def pair_ious(
    pred_geoms: Sequence[Any], ref_geoms: Sequence[Any]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """IoU of every overlapping (prediction, reference) pair of polygons, via an STRtree."""
    preds = np.asarray(list(pred_geoms), dtype=object)
    refs = np.asarray(list(ref_geoms), dtype=object)
    if len(preds) == 0 or len(refs) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    tree = shapely.STRtree(refs)
    p_idx, r_idx = tree.query(preds, predicate="intersects")
    inter = shapely.area(shapely.intersection(preds[p_idx], refs[r_idx]))
    union = shapely.area(preds[p_idx]) + shapely.area(refs[r_idx]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        ious = np.where(union > 0, inter / union, 0.0)
    return p_idx.astype(np.int64), r_idx.astype(np.int64), ious.astype(np.float64)


def match_buildings(
    pred_geoms: Sequence[Any], ref_geoms: Sequence[Any], iou: float = 0.5
) -> MatchResult:
    """Building-level precision / recall / F1 of predicted polygons against reference ones.

    Both sets must be in the same CRS (IoU is a ratio of areas, so any unit
    works, degrees included). Invalid polygons should be repaired first
    (``shapely.make_valid``).
    """
    p_idx, r_idx, ious = pair_ious(pred_geoms, ref_geoms)
    return greedy_match(p_idx, r_idx, ious, len(pred_geoms), len(ref_geoms), iou)


def match_masks(
    pred_rles: Sequence[dict[str, Any]], ref_rles: Sequence[dict[str, Any]], iou: float = 0.5
) -> MatchResult:
    """:func:`match_buildings` for COCO RLE masks of one image (pixel IoU, exact)."""
    from pycocotools import mask as mask_utils

    n_pred, n_ref = len(pred_rles), len(ref_rles)
    if n_pred == 0 or n_ref == 0:
        empty = np.empty(0, dtype=np.int64)
        return greedy_match(empty, empty, np.empty(0), n_pred, n_ref, iou)
    matrix = np.asarray(
        mask_utils.iou(list(pred_rles), list(ref_rles), [0] * n_ref), dtype=np.float64
    ).reshape(n_pred, n_ref)
    p_idx, r_idx = np.nonzero(matrix > 0)
    return greedy_match(p_idx, r_idx, matrix[p_idx, r_idx], n_pred, n_ref, iou)


def union_iou(pred_geoms: Sequence[Any], ref_geoms: Sequence[Any]) -> float:
    """IoU of the union of all predictions with the union of all references (area-based)."""
    pred = shapely.union_all(list(pred_geoms)) if len(pred_geoms) else shapely.Polygon()
    ref = shapely.union_all(list(ref_geoms)) if len(ref_geoms) else shapely.Polygon()
    union = shapely.area(shapely.union(pred, ref))
    if union == 0:
        return 1.0
    return float(shapely.area(shapely.intersection(pred, ref)) / union)


def add_matches(results: Sequence[MatchResult]) -> MatchResult:
    """Pool per-image results: counts are summed, then precision / recall / F1 recomputed."""
    tp = sum(r.tp for r in results)
    fp = sum(r.fp for r in results)
    fn = sum(r.fn for r in results)
    precision, recall, f1 = scores(tp, tp + fp, tp + fn)
    return MatchResult(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        ious=tuple(v for r in results for v in r.ious),
        ref_ious=tuple(v for r in results for v in r.ref_ious),
    )


def coco_ap(
    ground_truth: dict[str, Any],
    predictions: Sequence[dict[str, Any]],
    max_detections: int = 100,
) -> dict[str, float]:
    """COCO mask AP / AP50 / AP75 / AR of predictions, by pycocotools' ``COCOeval``.

    Args:
        ground_truth: a COCO dataset dict (``images``, ``annotations``,
            ``categories``); annotations need ``segmentation`` and ``area``.
        predictions: COCO results: ``image_id``, ``category_id``,
            ``segmentation`` (RLE) and ``score``.
        max_detections: detections per image kept (COCO's 100; dense building
            chips may need more).

    Returns:
        ``{"AP", "AP50", "AP75", "AR"}``; AR is recall averaged over IoU
        0.50:0.95 at ``max_detections``. With no prediction at all every
        figure is 0 (pycocotools refuses an empty result list).
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not predictions:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0}
    sink = io.StringIO()  # pycocotools prints its progress; the engine never prints
    with contextlib.redirect_stdout(sink):
        gt = COCO()
        gt.dataset = {
            "images": ground_truth["images"],
            "annotations": [dict(a) for a in ground_truth["annotations"]],
            "categories": ground_truth["categories"],
        }
        gt.createIndex()
        for ann in gt.dataset["annotations"]:  # COCOeval needs both; some exports omit them
            ann.setdefault("iscrowd", 0)
            if "area" not in ann:
                ann["area"] = float(mask_utils.area(gt.annToRLE(ann)))
        dt = gt.loadRes([dict(p) for p in predictions])
        evaluator = COCOeval(gt, dt, iouType="segm")
        evaluator.params.maxDets = [1, 10, int(max_detections)]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(0.0, float(v)) for v in evaluator.stats]  # -1 means "no such ground truth"
    return {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR": stats[8]}
