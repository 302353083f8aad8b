"""Polygon metrics of a model on COCO images: predictions per image, then COCO AP and F1@0.5.

Each image goes through the training pipeline's own resizing
(:func:`mapseg_core.data.pipeline.prepare_sample`), the model, and back to the
image size (:func:`mapseg_core.evaluation.predictions.to_image_size`);
buildings are the connected components of the thresholded probabilities with
their mean probability as ``score``. Ground truth is every annotation of the
model's categories on the image, merged into one category "building".
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from mapseg_core.data.coco import CocoDataset
from mapseg_core.evaluation.polygons import MatchResult, add_matches, coco_ap, match_masks
from mapseg_core.evaluation.predictions import instances, to_image_size

#: Keys the polygon metrics add to a split's results, in table order.
POLYGON_KEYS: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "AR",
    "F1@0.5",
    "precision@0.5",
    "recall@0.5",
)


def predict_instances(
    model: Any,
    dataset: CocoDataset,
    image_ids: Sequence[int],
    input_size: tuple[int, int],
    resize_mode: str = "resize",
    output: str = "logits",
    threshold: float = 0.5,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """COCO results (``image_id``, ``category_id`` 1, RLE ``segmentation``, ``score``)."""
    from mapseg_core.data.pipeline import prepare_sample
    from mapseg_core.inference.stitch import to_probability

    results: list[dict[str, Any]] = []
    ids = [int(i) for i in image_ids]
    for start in range(0, len(ids), batch_size):
        batch_ids = ids[start : start + batch_size]
        images, shapes = [], []
        for image_id in batch_ids:
            image = dataset.load_image(image_id)
            shapes.append(image.shape[:2])
            empty = np.zeros(image.shape[:2], np.uint8)
            x, _ = prepare_sample(image, empty, input_size, resize_mode)  # type: ignore[arg-type]
            images.append(x)
        raw = np.asarray(model.predict_on_batch(np.stack(images)))
        raw = raw[..., 0] if raw.ndim == 4 else raw  # the building channel of any model
        prob = to_probability(raw, output)  # type: ignore[arg-type]
        for image_id, shape, p in zip(batch_ids, shapes, prob, strict=True):
            full = to_image_size(p, shape, resize_mode)
            for inst in instances(full, threshold):
                results.append({"image_id": image_id, "category_id": 1, **inst})
    return results


def ground_truth(dataset: CocoDataset, image_ids: Sequence[int]) -> dict[str, Any]:
    """The images' annotations of the dataset's categories as one-category COCO data."""
    # The dataset's pycocotools index, read only: re-reading a large file would double its cost.
    coco = dataset._coco
    images = [dataset.image_info(i) for i in image_ids]
    ann_ids = coco.getAnnIds(imgIds=[int(i) for i in image_ids], catIds=list(dataset.category_ids))
    annotations = []
    for ann in coco.loadAnns(ann_ids):
        record = dict(ann)
        record["category_id"] = 1
        annotations.append(record)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "building"}],
    }


def polygon_scores(
    truth: dict[str, Any],
    predictions: Sequence[dict[str, Any]],
    iou: float = 0.5,
    max_detections: int = 100,
) -> tuple[dict[str, float], MatchResult]:
    """COCO AP / AP50 / AP75 / AR and pooled building F1, precision, recall at ``iou``.

    F1 pools the per-image one-to-one matches (counts summed over images).
    ``iscrowd`` ground-truth regions are not buildings to find and are left
    out of the F1 references (COCOeval ignores them likewise).
    """
    from pycocotools.coco import COCO

    ap = coco_ap(truth, predictions, max_detections=max_detections)
    index = COCO()
    index.dataset = truth
    with contextlib.redirect_stdout(io.StringIO()):
        index.createIndex()
    by_image: dict[int, list[dict[str, Any]]] = {}
    for p in predictions:
        by_image.setdefault(int(p["image_id"]), []).append(p["segmentation"])
    per_image = []
    for info in truth["images"]:
        image_id = int(info["id"])
        refs = [
            index.annToRLE(a)
            for a in index.loadAnns(index.getAnnIds(imgIds=[image_id]))
            if not a.get("iscrowd", 0)
        ]
        per_image.append(match_masks(by_image.get(image_id, []), refs, iou))
    pooled = add_matches(per_image)
    figures = {
        **ap,
        "F1@0.5": pooled.f1,
        "precision@0.5": pooled.precision,
        "recall@0.5": pooled.recall,
        "buildings_predicted": float(pooled.tp + pooled.fp),
        "buildings_reference": float(pooled.tp + pooled.fn),
    }
    return figures, pooled


def format_polygon_table(results: dict[str, dict[str, float]]) -> str:
    """The polygon metrics of each split as an aligned text table (empty when none)."""
    splits = [s for s in results if any(k in results[s] for k in POLYGON_KEYS)]
    if not splits:
        return ""
    header = ["polygons", *splits]
    body = [
        [key, *(f"{results[s][key]:.4f}" if key in results[s] else "" for s in splits)]
        for key in (*POLYGON_KEYS, "buildings_predicted", "buildings_reference")
        if any(key in results[s] for s in splits)
    ]
    for row in body:
        if row[0].startswith("buildings_"):
            row[1:] = [v.split(".")[0] for v in row[1:]]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
