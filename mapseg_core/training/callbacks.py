"""Callbacks that make a run resumable and visible.

``RunCheckpoint`` saves the whole model with its optimizer state after every
epoch (``last.keras``) and the best one by validation loss (``best.keras``),
each through a temporary file and a rename, and records the epoch in
``run.json``: a run killed at any moment can be resumed from its last
finished epoch. ``ProgressReporter`` turns Keras batch/epoch hooks into
:mod:`mapseg_core.progress` events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mapseg_core.atomic import atomic_path
from mapseg_core.backend import keras
from mapseg_core.progress import Reporter, progress_event


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """``model.save(path)`` through a temporary file in the same folder."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


class RunCheckpoint(keras.callbacks.Callback):
    """Save ``last.keras`` every epoch and ``best.keras`` on a new best ``val_loss``.

    Args:
        run_dir: the run directory.
        update_state: called with ``(epoch_done, best_val_loss)`` after the files are saved.
        best: best validation loss so far (carried over on resume).
    """

    def __init__(
        self,
        run_dir: Path,
        update_state: Callable[[int, float], None],
        best: float = math.inf,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.update_state = update_state
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        value = logs.get("val_loss", logs.get("loss"))
        if value is not None and math.isfinite(float(value)) and float(value) < self.best:
            self.best = float(value)
            save_model_atomic(self.model, self.run_dir / "best.keras")
        save_model_atomic(self.model, self.run_dir / "last.keras")
        self.update_state(epoch + 1, self.best)


class ProgressReporter(keras.callbacks.Callback):
    """Emit ``start`` / ``progress`` events in optimizer steps over the whole run."""

    def __init__(self, report: Reporter, initial_epoch: int, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.report = report
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.total = epochs * steps_per_epoch
        self.done = initial_epoch * steps_per_epoch
        self.epoch = initial_epoch

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.report(
            {
                "event": "start",
                "total": self.total,
                "unit": "step",
                "epochs": self.epochs,
                "steps_per_epoch": self.steps,
            }
        )
        self.report(progress_event(self.done, self.total, epoch=self.epoch + 1))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.done = self.epoch * self.steps + batch + 1
        extra: dict[str, float] = {"epoch": self.epoch + 1}
        if logs and "loss" in logs:
            extra["loss"] = float(logs["loss"])
        self.report(progress_event(self.done, self.total, **extra))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        self.report({"event": "epoch", "epoch": epoch + 1, "epochs": self.epochs, **metrics})
