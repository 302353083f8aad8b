"""Polygon metrics of a model on COCO images: predictions per image, then COCO AP and F1@0.5.

Each image of a model trained at its ground resolution (``resize_mode``
"crop", the bundled model's) is predicted as tile-infer predicts a raster
holding exactly its pixels (:func:`mapseg_core.inference.image.predict_image`:
tile-infer's windows over the whole image, mirrored at its edges); a model
trained on stretched images ("resize") sees it stretched to its input, as in
training (:func:`mapseg_core.data.samples.prepare_sample`), and the
probabilities are stretched back. The buildings scored are **the polygons
tile-infer would write** for that probability map
(:func:`mapseg_core.vectorize.pipeline.polygons_from_probability` with the
model's outline defaults: min area, simplification, regularization; an image
pixel counts as the model's GSD, or as ``--image-gsd`` when the images are
resampled to the model's GSD and the probabilities back to the stored grid),
each polygon rasterised back on the image grid (pixel-centre rule) as an RLE
mask for pycocotools, with the building's mean probability as ``score``.
Ground truth is every annotation of the model's categories on the image,
merged into one category "building".

Polygon quality (:mod:`mapseg_core.evaluation.quality`) is computed per image
on the same polygons: mask and boundary IoU on the image grid, C-IoU, N-ratio
(reference vertices from each annotation's drawn ``footprint`` when ``mapseg
chips`` wrote one, else its COCO polygons; RLE annotations count their pixel
outline), PoLiS in pixels and MTA sampled every 2 px.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mapseg_core.data.coco import CocoDataset
from mapseg_core.evaluation.pixels import PixelScores
from mapseg_core.evaluation.polygons import MatchResult, add_matches, coco_ap, match_masks
from mapseg_core.evaluation.predictions import to_image_size
from mapseg_core.evaluation.quality import QUALITY_KEYS, QualitySums, image_quality, mask_ious

#: Contour sampling step of MTA on images, pixels (FFL's 2 px).
MTA_STEP_PX = 2.0

#: Keys the polygon metrics add to a split's results, in table order.
POLYGON_KEYS: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "AR",
    "F1@0.5",
    "precision@0.5",
    "recall@0.5",
    *(k if k != "PoLiS" else "PoLiS_px" for k in QUALITY_KEYS),
)


@dataclass(frozen=True)
class ImageProbabilities:
    """A model's probabilities for one COCO image, on the stored image's grid."""

    image_id: int
    # Building probability, (height, width) of the image record.
    building: np.ndarray
    # Contact/boundary probabilities (height, width, k), None for a one-channel model.
    separators: np.ndarray | None
    # Metres per stored pixel when the dataset resampled the image (--image-gsd), else None.
    pixel_gsd: float | None


def predict_probabilities(
    model: Any,
    dataset: CocoDataset,
    image_ids: Sequence[int],
    input_size: tuple[int, int],
    resize_mode: str = "resize",
    output: str = "logits",
    batch_size: int = 8,
    metadata: dict[str, Any] | None = None,
    pixels: PixelScores | None = None,
) -> list[ImageProbabilities]:
    """The model's probability maps of each image, back on the stored image grid.

    The expensive half of :func:`predict_instances`, kept apart so that post-
    processing settings can be compared on one prediction
    (:mod:`mapseg_core.training.tune`). A ``"crop"`` model (trained at its
    ground resolution, as tile-infer runs it) sees each image through
    tile-infer's own windows (:func:`~mapseg_core.inference.image.predict_image`:
    the whole image, mirrored at its edges); a ``"resize"`` model (trained on
    images stretched to its input) sees it stretched. ``pixels``: also add each
    image's building probabilities at the model's GSD to this pixel table
    (``"crop"`` models).
    """
    from mapseg_core.inference.plan import model_channels
    from mapseg_core.vectorize.separate import SEPARATING

    channels, _ = model_channels(metadata or {}, None)
    picked = [k for k, name in enumerate(channels) if name in SEPARATING]
    ids = [int(i) for i in image_ids]
    if resize_mode == "crop":
        from mapseg_core.inference.image import predict_image
        from mapseg_core.inference.predictor import Predictor
        from mapseg_core.models.artifact import default_margin

        predictor = Predictor(model, batch_size)
        meta = {**(metadata or {}), "input_size": list(input_size), "output": output}
        meta.setdefault("receptive_margin", default_margin(input_size))
        out = []
        for image_id in ids:
            prob = predict_image(predictor, dataset.load_image(image_id), meta)
            if pixels is not None:
                pixels.add(dataset.load_mask(image_id)[None], prob[None, ..., 0])
            out.append(_on_stored_grid(dataset, image_id, prob, picked))
        return out
    return _stretched_probabilities(model, dataset, ids, input_size, output, batch_size, picked)


def _stretched_probabilities(
    model: Any,
    dataset: CocoDataset,
    ids: list[int],
    input_size: tuple[int, int],
    output: str,
    batch_size: int,
    picked: list[int],
) -> list[ImageProbabilities]:
    """:func:`predict_probabilities` of a ``"resize"`` model: images stretched to its input."""
    from mapseg_core.data.samples import prepare_sample
    from mapseg_core.inference.stitch import to_probability

    out: list[ImageProbabilities] = []
    for start in range(0, len(ids), batch_size):
        batch_ids = ids[start : start + batch_size]
        images, shapes = [], []
        for image_id in batch_ids:
            image = dataset.load_image(image_id)
            shapes.append(image.shape[:2])
            empty = np.zeros(image.shape[:2], np.uint8)
            x, _ = prepare_sample(image, empty, input_size, "resize")
            images.append(x)
        raw = np.asarray(model.predict_on_batch(np.stack(images)))
        raw = raw if raw.ndim == 4 else raw[..., None]  # (batch, h, w, channels)
        prob = to_probability(raw, output)  # type: ignore[arg-type]
        for image_id, shape, p in zip(batch_ids, shapes, prob, strict=True):
            p = np.stack([to_image_size(p[..., k], shape) for k in range(p.shape[-1])], axis=-1)
            out.append(_on_stored_grid(dataset, image_id, p, picked))
    return out


def _on_stored_grid(
    dataset: CocoDataset, image_id: int, prob: np.ndarray, picked: list[int]
) -> ImageProbabilities:
    """An image's probabilities ``(h, w, channels)`` at the model's GSD, on the stored grid.

    The dataset resamples images to the model's GSD (``--image-gsd``); the
    polygons are scored on the stored image's grid (its annotations' frame),
    as tile-infer writes on the raster's.
    """
    info = dataset.image_info(image_id)
    stored = (int(info["height"]), int(info["width"]))

    def back(channel: np.ndarray) -> np.ndarray:
        return to_image_size(channel, stored)

    separators = np.stack([back(prob[..., k]) for k in picked], axis=-1) if picked else None
    pixel_gsd = dataset.source_gsd(image_id) if stored != prob.shape[:2] else None
    return ImageProbabilities(image_id, back(prob[..., 0]), separators, pixel_gsd)


def model_probabilities(
    model: Any,
    metadata: dict[str, Any],
    dataset: CocoDataset,
    image_ids: Sequence[int],
    batch_size: int = 8,
    pixels: PixelScores | None = None,
) -> list[ImageProbabilities]:
    """:func:`predict_probabilities` with the input size, resizing and output of the model file."""
    train_cfg: dict[str, Any] = metadata.get("config", {}).get("train", {})
    return predict_probabilities(
        model,
        dataset,
        image_ids,
        tuple(metadata["input_size"]),  # type: ignore[arg-type]
        resize_mode=train_cfg.get("resize_mode", "resize"),
        output=str(metadata.get("output", "logits")),
        batch_size=batch_size,
        metadata=metadata,
        pixels=pixels,
    )


def instances_from_probabilities(
    probabilities: Sequence[ImageProbabilities],
    metadata: dict[str, Any],
    threshold: float,
) -> list[dict[str, Any]]:
    """COCO results of the polygons tile-infer would write for these probability maps.

    ``metadata`` (the model file's, or a candidate's) gives the separation
    settings, the outline defaults and the GSD.
    """
    from mapseg_core.inference.plan import model_channels

    model_gsd = float(metadata.get("gsd", 0.3))
    # Touching buildings separated as tile-infer does (by default, when the model can).
    _, separation = model_channels(metadata, None)
    results: list[dict[str, Any]] = []
    for item in probabilities:
        options = image_polish_options(metadata, item.pixel_gsd or model_gsd)
        separators = item.separators if separation is not None else None
        for inst in polygon_instances(item.building, threshold, options, separators, separation):
            results.append({"image_id": item.image_id, "category_id": 1, **inst})
    return results


def predict_instances(
    model: Any,
    dataset: CocoDataset,
    image_ids: Sequence[int],
    input_size: tuple[int, int],
    resize_mode: str = "resize",
    output: str = "logits",
    threshold: float = 0.5,
    batch_size: int = 8,
    metadata: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """COCO results of the polygons tile-infer would write for each image.

    Each result has ``image_id``, ``category_id`` 1, RLE ``segmentation``,
    ``score``, ``area`` and ``geometry`` (the polygon in pixel coordinates;
    drop it before handing results to pycocotools). ``metadata`` (the model
    file's) gives the outline defaults and the GSD.
    """
    probabilities = predict_probabilities(
        model, dataset, image_ids, input_size, resize_mode, output, batch_size, metadata
    )
    return instances_from_probabilities(probabilities, metadata or {}, threshold)


def image_polish_options(metadata: dict[str, Any], pixel_gsd: float | None = None) -> Any:
    """The model's outline options for an image in pixel coordinates.

    One pixel is ``pixel_gsd`` metres (the stored image's GSD, ``--image-gsd``),
    by default the model's GSD.
    """
    from mapseg_core.config import TileConfig
    from mapseg_core.vectorize.pipeline import model_polish, polish_options

    gsd = float(pixel_gsd if pixel_gsd is not None else metadata.get("gsd", 0.3))
    config = model_polish(TileConfig(), metadata)
    return polish_options(
        {
            "outline": config.outline,
            "simplify": config.simplify,
            "simplify_px": config.simplify_px,
            "min_area": config.min_area,
        },
        (gsd, gsd),
        gsd,
    )


def polygon_instances(
    prob: np.ndarray,
    threshold: float,
    options: Any,
    separators: np.ndarray | None = None,
    separation: Any = None,
) -> list[dict[str, Any]]:
    """Tile-infer's polygons of one probability map as RLE instances (see the module docstring).

    ``separators`` (contact/boundary probabilities) and ``separation`` split
    touching buildings exactly as tile-infer does.
    """
    import rasterio.features
    from affine import Affine
    from pycocotools import mask as mask_utils

    from mapseg_core.vectorize.pipeline import polygons_from_probability

    out: list[dict[str, Any]] = []
    features = polygons_from_probability(
        prob, Affine.identity(), options, threshold, separators=separators, separation=separation
    )
    for feature in features:
        full = rasterio.features.rasterize([feature.geometry], out_shape=prob.shape, dtype="uint8")
        area = int(full.sum())
        if area == 0:
            continue
        rle = mask_utils.encode(np.asfortranarray(full))
        out.append(
            {
                "segmentation": {"size": list(prob.shape), "counts": rle["counts"].decode("ascii")},
                "score": feature.score,
                "area": float(area),
                "geometry": feature.geometry,
            }
        )
    return out


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
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    ap = coco_ap(
        truth,
        [{k: v for k, v in p.items() if k != "geometry"} for p in predictions],
        max_detections=max_detections,
    )
    index = COCO()
    index.dataset = truth
    with contextlib.redirect_stdout(io.StringIO()):
        index.createIndex()
    by_image: dict[int, list[dict[str, Any]]] = {}
    for p in predictions:
        by_image.setdefault(int(p["image_id"]), []).append(p)
    per_image = []
    quality = QualitySums()
    for info in truth["images"]:
        image_id = int(info["id"])
        anns = [
            a for a in index.loadAnns(index.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd", 0)
        ]
        refs = [index.annToRLE(a) for a in anns]
        preds = by_image.get(image_id, [])
        match = match_masks([p["segmentation"] for p in preds], refs, iou)
        per_image.append(match)
        shape = (int(info["height"]), int(info["width"]))
        pred_mask = _union_mask([p["segmentation"] for p in preds], shape, mask_utils)
        ref_mask = _union_mask(refs, shape, mask_utils)
        m_iou, b_iou = mask_ious(pred_mask, ref_mask)
        if all("geometry" in p for p in preds):
            quality = quality + image_quality(
                [p["geometry"] for p in preds],
                [_annotation_polygon(a, index, mask_utils) for a in anns],
                match.pairs,
                match.ious,
                mask_iou=m_iou,
                boundary_iou=b_iou,
                mta_step=MTA_STEP_PX,
            )
    pooled = add_matches(per_image)
    figures = {
        **ap,
        "F1@0.5": pooled.f1,
        "precision@0.5": pooled.precision,
        "recall@0.5": pooled.recall,
        "buildings_predicted": float(pooled.tp + pooled.fp),
        "buildings_reference": float(pooled.tp + pooled.fn),
    }
    if quality.images:
        figures.update(quality.figures("px"))
    return figures, pooled


def _union_mask(rles: Sequence[Any], shape: tuple[int, int], mask_utils: Any) -> np.ndarray:
    if not rles:
        return np.zeros(shape, dtype=bool)
    return np.asarray(mask_utils.decode(mask_utils.merge(list(rles), intersect=False)), dtype=bool)


def _annotation_polygon(ann: dict[str, Any], index: Any, mask_utils: Any) -> Any:
    """A reference annotation as a (multi)polygon, for the polygon-quality metrics.

    The drawn footprint (``footprint``, written by ``mapseg chips`` next to the
    pixel-outline ``segmentation``) when the annotation has one; else its COCO
    polygons, else the RLE's pixel outline.
    """
    import shapely
    import shapely.geometry

    if isinstance(ann.get("footprint"), dict):
        drawn = shapely.make_valid(shapely.geometry.shape(ann["footprint"]))
        kept = [g for g in shapely.get_parts(drawn) if g.geom_type == "Polygon"]
        if kept:
            return kept[0] if len(kept) == 1 else shapely.MultiPolygon(kept)
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg:
        rings = [np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in seg if len(r) >= 6]
        parts = [shapely.make_valid(shapely.Polygon(r)) for r in rings]
        polys = [g for p in parts for g in shapely.get_parts(p) if g.geom_type == "Polygon"]
        if polys:
            return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)
    import cv2

    from mapseg_core.vectorize.trace import polygonize

    mask = np.ascontiguousarray(mask_utils.decode(index.annToRLE(ann)), dtype=np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)
    _, geoms = polygonize(mask, np.asarray(labels, dtype=np.int32))
    if not geoms:
        return shapely.Polygon()
    return geoms[0] if len(geoms) == 1 else shapely.MultiPolygon(geoms)


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
