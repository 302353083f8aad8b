"""What a finished run writes: report, figures, and the model file with its tuned metadata.

The model file (``model.keras``) carries the validation-chosen threshold,
the measured window margin, the separation settings and the training data
summary, so tile-infer, evaluate and QGIS use what the run measured.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from mapseg_core.atomic import write_json
from mapseg_core.config import RunConfig, TrainConfig

MODEL_FILE = "model.keras"


def write_outputs(
    run_dir: Path,
    config: RunConfig,
    state: dict[str, Any],
    dataset: Any,
    splits: Any,
    model: Any,
    results: dict[str, dict[str, float]],
    test_sequence: Any,
    steps: int,
    valid_sequence: Any = None,
) -> Path:
    from mapseg_core.models.artifact import default_margin, metadata_from_config, save_artifact
    from mapseg_core.models.unet import flexible_copy
    from mapseg_core.training import report as rpt
    from mapseg_core.training.schedules import learning_rate_curve

    tcfg = config.train
    rpt.write_report_csv(results, run_dir / "report.csv")
    write_json(run_dir / "report.json", results)
    total_steps = max(1, steps * tcfg.epochs)
    rpt.plot_learning_rate(
        learning_rate_curve(tcfg, total_steps),
        steps,
        "SGDR" if tcfg.lr_schedule == "sgdr" else "constant",
        run_dir / "lr_schedule.png",
    )
    history = read_history(run_dir / "history.csv")
    if history:
        rpt.plot_history(history, run_dir / "training_curves.png")
    images, masks = _first_images(test_sequence, tcfg.preview_images)
    logits = model.predict(images, verbose=0) if len(images) else np.zeros_like(masks)
    rpt.plot_predictions(images, masks[..., :1], logits[..., :1], run_dir / "predictions.png")
    valid_sequence = valid_sequence if valid_sequence is not None else test_sequence
    threshold, threshold_scores = (
        choose_threshold(model, valid_sequence) if tcfg.tune_threshold else (0.5, {})
    )
    flexible = flexible_copy(model, config.model)
    margin = measure_run_margin(flexible, config, test_sequence)
    if flexible is not None and not margin["converged"]:
        # No margin makes crops agree with larger inputs: the network is not local (an
        # EfficientNet's squeeze-and-excitation blocks average over the whole input), so
        # spans of other sizes than training would change its predictions. Keep the
        # trained size (model-sized windows, each pixel from one window, exact across
        # blocks) and the rule-of-thumb margin.
        flexible = None
        margin["margin"] = default_margin(config.model.input_size)
    summary = dataset.summary()
    summary["splits"] = {
        "train": len(splits.train),
        "valid": len(splits.valid),
        "test": len(splits.test),
    }
    metadata = {
        **metadata_from_config(config),
        "class_names": [c["name"] for c in summary.get("categories", [])][:1] or ["building"],
        "receptive_margin": margin["margin"],
        "margin": margin,
        "threshold": threshold,
        "threshold_search": threshold_scores,
        "channels": list(config.model.channels),
        "separation": {"radius": separation_radius(tcfg), "threshold": 0.5},
        "flexible_input": flexible is not None,
        "training_data": summary,
        "metrics": results,
        "epochs_done": state["epochs_done"],
    }
    if state.get("init_model"):
        metadata["init_model"] = state["init_model"]
    if tcfg.tune_threshold and len(splits.valid):
        # The threshold, separation threshold and minimum area of the buildings a user gets,
        # chosen by building F1 on validation (the pixel threshold above is where it starts).
        from mapseg_core.training.tune import metadata_updates, tune_postprocessing

        best, scored = tune_postprocessing(
            model, metadata, dataset, splits.valid, batch_size=tcfg.batch_size
        )
        metadata.update(metadata_updates(metadata, best))
        metadata["postprocess_search"] = [c.row() for c in scored]
    return save_artifact(flexible or model, run_dir / MODEL_FILE, metadata)


def separation_radius(tcfg: TrainConfig) -> int:
    """Growth radius for separation: past the contact band and the boundary rim, with room.

    A marker must reach every pixel of its building that the contact or
    boundary channels took away: up to ``contact_width + boundary_width``
    pixels from the core, on both sides of a party wall.
    """
    return max(8, 2 * (tcfg.contact_width + tcfg.boundary_width))


def choose_threshold(model: Any, sequence: Any) -> tuple[float, dict[str, float]]:
    """The building-probability threshold with the best pixel F1 on ``sequence`` (validation).

    F1 over all pixels of the split (Dice of the hard mask), for thresholds
    0.10..0.70 in steps of 0.05; a tie keeps the one nearest 0.5. The model's
    metadata stores it, and tile-infer uses it unless ``--threshold`` is given.
    """
    grid = np.round(np.arange(0.10, 0.701, 0.05), 2)
    tp = np.zeros(len(grid))
    fp = np.zeros(len(grid))
    fn = np.zeros(len(grid))
    for i in range(len(sequence)):
        x, y = sequence[i]
        logits = np.asarray(model.predict_on_batch(x))[..., 0]
        with np.errstate(over="ignore"):
            prob = 1.0 / (1.0 + np.exp(-logits))
        truth = y[..., 0] > 0.5
        for k, t in enumerate(grid):
            hit = prob >= t
            tp[k] += np.sum(hit & truth)
            fp[k] += np.sum(hit & ~truth)
            fn[k] += np.sum(~hit & truth)
    f1 = 2 * tp / np.maximum(1.0, 2 * tp + fp + fn)
    best = max(range(len(grid)), key=lambda k: (round(float(f1[k]), 6), -abs(grid[k] - 0.5)))
    return float(grid[best]), {
        f"{t:.2f}": round(float(v), 4) for t, v in zip(grid, f1, strict=True)
    }


def measure_run_margin(flexible: Any, config: RunConfig, sequence: Any) -> dict[str, Any]:
    """The measured window margin (see :mod:`mapseg_core.models.margin`), as metadata.

    Fixed-size models cannot predict the larger reference input; they keep the
    old rule of thumb ``max(16, input // 8)``, marked as not measured.
    """
    from mapseg_core.models.artifact import default_margin
    from mapseg_core.models.margin import measure_margin, mosaic_samples, noise_samples

    tile = (int(config.model.input_size[0]), int(config.model.input_size[1]))
    if flexible is None:
        return {"margin": default_margin(tile), "measured": False}

    def predict(x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-np.asarray(flexible.predict_on_batch(x))))

    images, _ = _first_images(sequence, 9)
    samples = mosaic_samples(images, tile) + noise_samples(tile, config.model.bands, count=1)
    measure = measure_margin(predict, tile, samples)
    return {**measure.to_dict(), "measured": True}


def _first_images(sequence: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for i in range(len(sequence)):
        x, y = sequence[i]
        images.append(x)
        masks.append(y)
        if sum(len(b) for b in images) >= n:
            break
    if not images:
        return np.zeros((0, 1, 1, 3), "float32"), np.zeros((0, 1, 1, 1), "float32")
    return np.concatenate(images)[:n], np.concatenate(masks)[:n]


def read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None, "NA")}
            for row in csv.DictReader(fh)
        ]
