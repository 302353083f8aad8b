"""Report tables and figures of a training run.

Pure functions of arrays and dicts; the ones that write PNG or CSV take the
target path and write it atomically, so an interrupted run never leaves a
half-written picture.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mapseg_core.atomic import write_bytes

#: Report row labels, in the order of ``model.evaluate(return_dict=True)`` keys
#: (the names of ``mapseg_core.models.losses.make_metrics``; kept here so that
#: reading a report never imports Keras).
METRIC_LABELS: dict[str, str] = {
    "loss": "Loss",
    "binary_accuracy": "Binary Accuracy",
    "dice_coef": "Dice Coefficient",
    "spatial_true_positive_rate": "Spatial True Positive Rate",
    "iou_coef": "IoU",
}


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _figure().close(fig)
    return write_bytes(path, buf.getvalue())


def report_rows(results: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """One row per metric, one column per split: the seed's report table."""
    splits = list(results)
    keys = [k for k in METRIC_LABELS if any(k in results[s] for s in splits)]
    rows = []
    for key in keys:
        row: dict[str, Any] = {"metric": METRIC_LABELS[key]}
        for split in splits:
            value = results[split].get(key)
            row[split] = None if value is None else round(float(value), 4)
        rows.append(row)
    return rows


def format_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """The report as an aligned text table."""
    rows = report_rows(results)
    splits = list(results)
    header = ["", *splits]
    body = [[r["metric"], *("" if r[s] is None else f"{r[s]:.4f}" for s in splits)] for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report_csv(
    results: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str]
) -> Path:
    buf = io.StringIO()
    rows = report_rows(results)
    writer = csv.DictWriter(buf, fieldnames=["metric", *results])
    writer.writeheader()
    writer.writerows(rows)
    return write_bytes(path, buf.getvalue().encode())


def plot_learning_rate(
    lr: np.ndarray, steps_per_epoch: int, label: str, path: str | os.PathLike[str]
) -> Path:
    """The learning rate over optimizer steps, with epoch boundaries on a second axis."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(np.arange(len(lr)), lr, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate over training")
    if steps_per_epoch > 0 and len(lr) > steps_per_epoch:
        sec = ax.secondary_xaxis(
            "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
        )
        sec.set_xlabel("epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def plot_history(history: Sequence[Mapping[str, float]], path: str | os.PathLike[str]) -> Path:
    """Training and validation curves (loss, Dice, IoU) per epoch."""
    plt = _figure()
    panels = [
        k
        for k in ("loss", "dice_coef", "iou_coef", "binary_accuracy")
        if history and k in history[0]
    ]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4 * max(1, len(panels)), 3.5))
    axes = np.atleast_1d(axes)
    epochs = [int(row.get("epoch", i)) + 1 for i, row in enumerate(history)]
    for ax, key in zip(axes, panels, strict=False):
        ax.plot(epochs, [row[key] for row in history], marker="o", label="train")
        val = f"val_{key}"
        validated = [(e, r[val]) for e, r in zip(epochs, history, strict=True) if val in r]
        if validated:  # with --validation-freq N only some epochs have validation values
            ax.plot(*zip(*validated, strict=True), marker="o", label="valid")
        ax.set_title(METRIC_LABELS.get(key, key))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves")
    return _save_figure(fig, path)


def plot_predictions(
    images: np.ndarray, masks: np.ndarray, logits: np.ndarray, path: str | os.PathLike[str]
) -> Path:
    """The seed's grid: image / ground truth / prediction (logit > 0) per row."""
    plt = _figure()
    n = len(images)
    fig, axes = plt.subplots(max(n, 1), 3, figsize=(7.5, 2.5 * max(n, 1)), squeeze=False)
    titles = ("image", "ground truth", "prediction")
    for i in range(n):
        panels = (
            np.clip(images[i], 0, 255).astype("uint8")[..., :3],
            masks[i, ..., 0],
            (logits[i, ..., 0] > 0).astype("float32"),
        )
        for j, panel in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(panel, cmap=None if j == 0 else "gray", vmin=0, vmax=None if j == 0 else 1)
            ax.set_xticks([])  # keep the frame: an all-building prediction is all white
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j])
    fig.tight_layout()
    return _save_figure(fig, path)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse a JSON file (``ValueError`` if it is not JSON)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
