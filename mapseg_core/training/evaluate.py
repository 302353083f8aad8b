"""Evaluate a mapseg model file on COCO images: the seed's report table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mapseg_core.errors import DatasetError
from mapseg_core.progress import Reporter, null_reporter

SPLIT_NAMES = ("train", "valid", "test")


def evaluate_model(
    model_path: str | Path,
    annotations: str | Path,
    images_dir: str | Path,
    *,
    split_file: str | Path | None = None,
    splits: tuple[str, ...] = SPLIT_NAMES,
    batch_size: int = 8,
    workers: int = 2,
    polygons: bool = True,
    image_gsd: float | None = None,
    report: Reporter = null_reporter,
) -> dict[str, dict[str, float]]:
    """Loss, binary accuracy, Dice, spatial TPR and IoU per split.

    Args:
        model_path: a mapseg ``.keras`` model file, or an ``.onnx`` file from
            ``mapseg export`` (scored on ONNX Runtime without Keras; the pixel
            table then comes from :class:`~mapseg_core.evaluation.pixels.PixelScores`).
        annotations, images_dir: the COCO export to score on.
        split_file: a run's ``splits.json``; without it every annotated image
            is scored as one column ``all``.
        splits: which splits of ``split_file`` to score.
        polygons: also score buildings as instances (the polygons tile-infer
            would write, see :mod:`mapseg_core.evaluation.model`): COCO ``AP``,
            ``AP50``, ``AP75``, ``AR``, ``F1@0.5``, ``precision@0.5``,
            ``recall@0.5`` (SpaceNet rule) and the polygon-quality figures
            (``mask_IoU``, ``boundary_IoU``, ``C-IoU``, ``matched_C-IoU``,
            ``N-ratio``, ``PoLiS_px``, ``MTA``) join each split's dict.
        image_gsd: metres per pixel of the COCO images (default: each image
            record's ``gsd`` field, else the model's GSD). Images are resampled
            to the model's GSD; the pixel table is scored there, the polygons on
            the stored image grid (:meth:`CocoDataset.at_gsd`).

    Raises:
        ModelError, DatasetError: unusable model or data; a split file whose
            ids are not in the annotations.
    """
    from mapseg_core.data.coco import load_coco
    from mapseg_core.models.artifact import load_artifact, read_metadata

    # Model file, data and splits are checked before Keras is imported (slow, noisy).
    meta = read_metadata(model_path)
    train_cfg: dict[str, Any] = meta.get("config", {}).get("train", {})
    categories = train_cfg.get("category_ids")
    model_gsd = meta.get("gsd")
    dataset = load_coco(annotations, images_dir, categories).at_gsd(
        float(model_gsd) if model_gsd else None, image_gsd
    )
    groups = _split_groups(dataset, split_file, splits, annotations)
    from mapseg_core.inference.onnx_runtime import is_onnx

    model, meta = load_artifact(model_path)
    onnx = is_onnx(model_path)
    # A "crop" model is scored on what tile-infer predicts for each image (its windows,
    # the whole image), pixels and polygons alike; a "resize" model as it was trained.
    engine = train_cfg.get("resize_mode", "resize") == "crop"
    if not onnx and not engine:
        _compile_as_trained(model, meta, train_cfg)
    report({"event": "start", "total": len(groups), "unit": "split"})
    results: dict[str, dict[str, float]] = {}
    for done, (name, ids) in enumerate(groups.items(), start=1):
        if not ids:
            continue
        if engine:
            results[name] = _engine_tables(model, meta, dataset, ids, batch_size, polygons)
        else:
            results[name] = _pixel_table(model, meta, dataset, ids, workers, batch_size, onnx)
            if polygons:
                results[name].update(_polygon_table(model, meta, dataset, ids, batch_size))
        report(
            {
                "event": "progress",
                "done": done,
                "total": len(groups),
                "fraction": done / len(groups),
                "split": name,
            }
        )
    report({"event": "done", "summary": results})
    return results


def _compile_as_trained(model: Any, meta: dict[str, Any], train_cfg: dict[str, Any]) -> None:
    """Compile a Keras model with the loss it was trained with, and the pixel metrics.

    A model with contact/boundary channels is scored on targets for all its
    channels; the metrics read the building channel.
    """
    from mapseg_core.models.losses import ComboLoss, make_metrics

    channels = tuple(meta.get("channels") or ("building",))
    weights = train_cfg.get("channel_weights") or [
        1.0 if c == "building" else 0.5 for c in channels
    ]
    ce_weight = float(train_cfg.get("ce_weight", 0.05))
    model.compile(
        loss=ComboLoss(ce_weight, channel_weights=weights if len(channels) > 1 else None),
        metrics=make_metrics(len(channels)),
    )


def _split_groups(
    dataset: Any,
    split_file: str | Path | None,
    splits: tuple[str, ...],
    annotations: str | Path,
) -> dict[str, list[int]]:
    """Image ids per column: ``all``, or each split of a run's ``splits.json`` (checked)."""
    from mapseg_core.data.splits import load_splits

    if split_file is None:
        return {"all": list(dataset.image_ids)}
    loaded = load_splits(split_file)
    groups = {name: list(loaded.ids(name)) for name in splits}  # type: ignore[arg-type]
    known = set(dataset.image_ids)
    for name, ids in groups.items():
        missing = [i for i in ids if i not in known]
        if missing:
            raise DatasetError(
                f"{len(missing)} image id(s) of split {name!r} in {split_file} are not in "
                f"{annotations} (e.g. {missing[:3]}); pass the annotations the run used"
            )
    return groups


def _pixel_table(
    model: Any,
    meta: dict[str, Any],
    dataset: Any,
    ids: list[int],
    workers: int,
    batch_size: int,
    onnx: bool,
) -> dict[str, float]:
    """Loss and pixel metrics of one split: Keras' ``evaluate``, or numpy for ONNX models."""
    train_cfg: dict[str, Any] = meta.get("config", {}).get("train", {})
    ce_weight = float(train_cfg.get("ce_weight", 0.05))
    size = tuple(meta["input_size"])
    resize_mode = train_cfg.get("resize_mode", "resize")
    if onnx:  # ONNX Runtime: the same table in numpy, Keras is never imported
        scores = pixel_scores(model, meta, dataset, ids, size, resize_mode, batch_size, ce_weight)
    else:
        from mapseg_core.data.pipeline import CocoSequence

        seq = CocoSequence(
            dataset,
            ids,
            batch_size,
            size,  # type: ignore[arg-type]
            resize_mode=resize_mode,
            workers=workers,
            channels=tuple(meta.get("channels") or ("building",)),
            contact_width=int(train_cfg.get("contact_width", 2)),
            boundary_width=int(train_cfg.get("boundary_width", 2)),
        )
        scores = model.evaluate(seq, verbose=0, return_dict=True)
    return {k: float(v) for k, v in scores.items()}


def _polygon_table(
    model: Any,
    meta: dict[str, Any],
    dataset: Any,
    ids: list[int],
    batch_size: int,
    probabilities: Any = None,
) -> dict[str, float]:
    """Instance and polygon-quality figures of the polygons tile-infer would write."""
    from mapseg_core.evaluation.model import (
        ground_truth,
        instances_from_probabilities,
        model_probabilities,
        polygon_scores,
    )

    if probabilities is None:
        probabilities = model_probabilities(model, meta, dataset, ids, batch_size)
    threshold = float(meta.get("threshold", 0.5))
    predictions = instances_from_probabilities(probabilities, meta, threshold)
    figures, _ = polygon_scores(ground_truth(dataset, ids), predictions)
    return dict(figures)


def _engine_tables(
    model: Any,
    meta: dict[str, Any],
    dataset: Any,
    ids: list[int],
    batch_size: int,
    polygons: bool,
) -> dict[str, float]:
    """Pixel table and polygon figures from one prediction of each image as tile-infer makes it.

    The pixel figures (:class:`~mapseg_core.evaluation.pixels.PixelScores`,
    named as Keras' metrics) are computed over each whole image at the model's
    GSD, on the building channel; ``loss`` is its combo loss alone.
    """
    from mapseg_core.evaluation.model import model_probabilities
    from mapseg_core.evaluation.pixels import PixelScores

    train_cfg: dict[str, Any] = meta.get("config", {}).get("train", {})
    pixels = PixelScores(ce_weight=float(train_cfg.get("ce_weight", 0.05)))
    probabilities = model_probabilities(model, meta, dataset, ids, batch_size, pixels=pixels)
    table = pixels.result()
    if polygons:
        table.update(_polygon_table(model, meta, dataset, ids, batch_size, probabilities))
    return table


def pixel_scores(
    model: Any,
    meta: dict[str, Any],
    dataset: Any,
    ids: Sequence[int],
    size: tuple[int, ...],
    resize_mode: str,
    batch_size: int,
    ce_weight: float,
) -> dict[str, float]:
    """The pixel table of ``model`` (any ``predict_on_batch`` model) on ``ids``, in numpy.

    Samples are brought to ``size`` exactly as Keras' ``CocoSequence`` does
    (:func:`~mapseg_core.data.samples.prepare_sample`, no augmentation). The
    figures are those of the building channel (channel 0), as Keras' metrics
    are; for a model with contact/boundary channels ``loss`` is the building
    channel's combo loss alone (Keras' also weighs the other channels).
    """
    import numpy as np

    from mapseg_core.data.samples import prepare_sample
    from mapseg_core.evaluation.pixels import PixelScores
    from mapseg_core.inference.stitch import to_probability

    kind = "logits" if str(meta.get("output", "logits")) == "logits" else "probabilities"
    scores = PixelScores(ce_weight=ce_weight)
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), batch_size):
        images, masks = [], []
        for image_id in ids[start : start + batch_size]:
            image, mask = dataset.load_sample(image_id)
            x, y = prepare_sample(image, mask, (int(size[0]), int(size[1])), resize_mode)  # type: ignore[arg-type]
            images.append(x)
            masks.append(y)
        raw = np.asarray(model.predict_on_batch(np.stack(images)))
        building = raw[..., 0] if raw.ndim == 4 else raw  # (batch, h, w)
        prob = to_probability(building, kind)  # type: ignore[arg-type]
        scores.add(np.stack(masks)[..., 0], prob)
    return scores.result()
