"""Evaluate a mapseg model file on COCO images: the seed's report table."""

from __future__ import annotations

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
    report: Reporter = null_reporter,
) -> dict[str, dict[str, float]]:
    """Loss, binary accuracy, Dice, spatial TPR and IoU per split.

    Args:
        model_path: a mapseg ``.keras`` model file.
        annotations, images_dir: the COCO export to score on.
        split_file: a run's ``splits.json``; without it every annotated image
            is scored as one column ``all``.
        splits: which splits of ``split_file`` to score.
        polygons: also score buildings as instances (connected components of
            the thresholded prediction, see :mod:`mapseg_core.evaluation.model`):
            COCO ``AP``, ``AP50``, ``AP75``, ``AR`` and ``F1@0.5``,
            ``precision@0.5``, ``recall@0.5`` (SpaceNet rule) join each split's dict.

    Raises:
        ModelError, DatasetError: unusable model or data; a split file whose
            ids are not in the annotations.
    """
    from mapseg_core.data.coco import load_coco
    from mapseg_core.data.splits import load_splits
    from mapseg_core.models.artifact import load_artifact, read_metadata

    # Model file, data and splits are checked before Keras is imported (slow, noisy).
    meta = read_metadata(model_path)
    train_cfg: dict[str, Any] = meta.get("config", {}).get("train", {})
    categories = train_cfg.get("category_ids")
    dataset = load_coco(annotations, images_dir, categories)
    if split_file is None:
        groups = {"all": dataset.image_ids}
    else:
        loaded = load_splits(split_file)
        groups = {name: loaded.ids(name) for name in splits}  # type: ignore[arg-type]
        known = set(dataset.image_ids)
        for name, ids in groups.items():
            missing = [i for i in ids if i not in known]
            if missing:
                raise DatasetError(
                    f"{len(missing)} image id(s) of split {name!r} in {split_file} are not in "
                    f"{annotations} (e.g. {missing[:3]}); pass the annotations the run used"
                )
    from mapseg_core.data.pipeline import CocoSequence
    from mapseg_core.models.losses import ComboLoss, make_metrics

    model, meta = load_artifact(model_path)
    # A model with contact/boundary channels is scored on targets for all its channels
    # (the loss it was trained with); the metrics read the building channel.
    channels = tuple(meta.get("channels") or ("building",))
    weights = train_cfg.get("channel_weights") or [
        1.0 if c == "building" else 0.5 for c in channels
    ]
    model.compile(
        loss=ComboLoss(
            float(train_cfg.get("ce_weight", 0.05)),
            channel_weights=weights if len(channels) > 1 else None,
        ),
        metrics=make_metrics(len(channels)),
    )
    size = tuple(meta["input_size"])
    resize_mode = train_cfg.get("resize_mode", "resize")
    report({"event": "start", "total": len(groups), "unit": "split"})
    results: dict[str, dict[str, float]] = {}
    for done, (name, ids) in enumerate(groups.items(), start=1):
        if not ids:
            continue
        seq = CocoSequence(
            dataset,
            ids,
            batch_size,
            size,  # type: ignore[arg-type]
            resize_mode=resize_mode,
            workers=workers,
            channels=channels,
            contact_width=int(train_cfg.get("contact_width", 2)),
            boundary_width=int(train_cfg.get("boundary_width", 2)),
        )
        scores = model.evaluate(seq, verbose=0, return_dict=True)
        results[name] = {k: float(v) for k, v in scores.items()}
        if polygons:
            from mapseg_core.evaluation.model import (
                ground_truth,
                polygon_scores,
                predict_instances,
            )

            predictions = predict_instances(
                model,
                dataset,
                ids,
                size,  # type: ignore[arg-type]
                resize_mode=resize_mode,
                output=str(meta.get("output", "logits")),
                threshold=float(meta.get("threshold", 0.5)),
                batch_size=batch_size,
            )
            figures, _ = polygon_scores(ground_truth(dataset, ids), predictions)
            results[name].update(figures)
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
