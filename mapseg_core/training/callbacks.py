"""Callbacks that make a run resumable and visible.

``RunCheckpoint`` saves the whole model with its optimizer state
(``last.keras``) and the best one by validation loss (``best.keras``), each
through a temporary file and a rename, at most every ``checkpoint_interval``
seconds, and records the saved epoch in ``run.json``: a run killed at any
moment can be resumed from its last saved epoch (Ctrl-C saves the last
finished one). ``ProgressReporter`` turns Keras batch/epoch hooks into
:mod:`mapseg_core.progress` events.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mapseg_core.atomic import atomic_path
from mapseg_core.backend import keras
from mapseg_core.config import TrainConfig
from mapseg_core.progress import Reporter, progress_event
from mapseg_core.training.devices import have_tensorflow

log = logging.getLogger("mapseg")


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """``model.save(path)`` through a temporary file in the same folder."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def validation_epochs(initial_epoch: int, epochs: int, freq: int) -> list[int]:
    """1-based epochs to validate on, for ``fit(validation_freq=...)``.

    Every ``freq``-th epoch, plus the first epoch this process runs (so the
    history and TensorBoard have validation columns from the start, and a
    resumed run checks its loaded weights at once) and the last one (so the
    final best model is chosen with the last weights considered).
    """
    chosen = {e for e in range(initial_epoch + 1, epochs + 1) if e % freq == 0}
    chosen |= {min(initial_epoch + 1, epochs), epochs}
    return sorted(chosen)


class OnValidatedEpochs:
    """Mixin: run a monitor callback only on epochs whose logs hold its metric.

    With ``validation_freq > 1`` most epochs have no ``val_loss``; Keras'
    EarlyStopping and ReduceLROnPlateau would warn on each of them (and count
    nothing). Patience is then counted in validations: pass
    ``ceil(patience / validation_freq)``.
    """

    monitor: str

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs and self.monitor in logs:
            super().on_epoch_end(epoch, logs)  # type: ignore[misc]


class ValidatedEarlyStopping(OnValidatedEpochs, keras.callbacks.EarlyStopping):
    """EarlyStopping that skips epochs without validation."""


class ValidatedReduceLROnPlateau(OnValidatedEpochs, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that skips epochs without validation."""


class RunCheckpoint(keras.callbacks.Callback):
    """Save ``last.keras`` and ``best.keras`` at most every ``interval`` seconds.

    Saving a B0 U-Net with its Adam state takes ~2 s on two CPU cores, as long
    as a whole epoch of a small dataset: saving after every epoch (and again on
    every new best) halved the training rate. So the files are written after
    the first epoch of the process, then when ``interval`` seconds have passed
    since the last save, after the last epoch and when training ends early.
    Between saves the callback keeps in memory what a save would need: the
    weights of the best epoch (``model.get_weights()``, ~25 MB for B0) and a
    snapshot of the last finished epoch (weights and optimizer variables), so
    that :meth:`save_interrupted` writes exactly the last finished epoch on
    Ctrl-C. ``run.json`` (via ``update_state``) is written after the files, so
    it never names an epoch whose files are not on disk: a ``kill -9`` loses
    at most ``interval`` seconds of training and the run resumes from the
    last saved epoch.

    Args:
        run_dir: the run directory.
        update_state: called with ``(epochs_done, best_val_loss)`` after the files are saved.
        best: best validation loss so far (carried over on resume).
        interval: seconds between saves; 0 saves after every epoch.
        monitor_loss: use ``loss`` when no ``val_loss`` is ever logged (no validation data).
        clock: seconds counter (tests pass a fake one).
    """

    def __init__(
        self,
        run_dir: Path,
        update_state: Callable[[int, float], None],
        best: float = math.inf,
        interval: float = 0.0,
        monitor_loss: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.update_state = update_state
        self.best = best
        self.interval = float(interval)
        self.monitor_loss = monitor_loss
        self.clock = clock
        self._saved_epochs: int | None = None
        self._last_save = -math.inf
        self._best: tuple[int, list[Any]] | None = None
        self._snapshot: tuple[int, list[Any], list[Any]] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        value = logs.get("val_loss", logs.get("loss") if self.monitor_loss else None)
        if value is not None and math.isfinite(float(value)) and float(value) < self.best:
            self.best = float(value)
            self._best = (epoch + 1, self.model.get_weights())
        done = epoch + 1
        last = done >= int(self.params.get("epochs", done))
        if self._saved_epochs is None or last or self.clock() - self._last_save >= self.interval:
            self._save(done)
            self._snapshot = None
        else:
            optimizer = getattr(self.model, "optimizer", None)
            variables = [v.numpy() for v in optimizer.variables] if optimizer else []
            self._snapshot = (done, self.model.get_weights(), variables)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Early stopping ends fit between saves: save the epoch it stopped after."""
        if self._snapshot is not None:
            self._save(self._snapshot[0])
            self._snapshot = None

    def save_interrupted(self) -> None:
        """On Ctrl-C: write the last finished epoch (not the half-trained current one)."""
        if self._snapshot is None:
            return
        done, weights, variables = self._snapshot
        self.model.set_weights(weights)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            for var, value in zip(optimizer.variables, variables, strict=True):
                var.assign(value)
        self._save(done)
        self._snapshot = None

    def _save(self, epochs_done: int) -> None:
        if self._best is not None:
            best_epoch, weights = self._best
            if best_epoch == epochs_done:  # the model holds the best weights now
                save_model_atomic(self.model, self.run_dir / "best.keras")
            else:
                current = self.model.get_weights()
                self.model.set_weights(weights)
                save_model_atomic(self.model, self.run_dir / "best.keras")
                self.model.set_weights(current)
            self._best = None
        save_model_atomic(self.model, self.run_dir / "last.keras")
        self.update_state(epochs_done, self.best)
        self._saved_epochs = epochs_done
        self._last_save = self.clock()


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


def run_callbacks(run_dir: Path, tcfg: TrainConfig, initial_epoch: int, resume: bool) -> list[Any]:
    """Stopping, LR-on-plateau, CSV history and (on TensorFlow) TensorBoard for a run."""
    # Patience is in epochs; with validation every N epochs the monitors see one value per N.
    per_validation = functools.partial(in_validations, freq=tcfg.validation_freq)
    callbacks: list[Any] = [
        keras.callbacks.TerminateOnNaN(),
        ValidatedEarlyStopping(monitor="val_loss", patience=per_validation(tcfg.early_stopping)),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume),
    ]
    if tcfg.reduce_lr_on_plateau:
        callbacks.append(ValidatedReduceLROnPlateau(patience=per_validation(tcfg.reduce_lr)))
    if have_tensorflow():
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=str(run_dir / "logs"),
                histogram_freq=tcfg.histogram_freq,
                write_graph=False,
                write_images=False,
            )
        )
    else:
        log.info("TensorBoard logs need the tensorflow and tensorboard packages; skipped")
    return callbacks


def in_validations(epochs: int, freq: int) -> int:
    """A patience of ``epochs`` counted in validations that run every ``freq`` epochs."""
    return max(1, math.ceil(epochs / freq))


def truncate_history(path: Path, initial_epoch: int) -> None:
    """Drop ``history.csv`` rows of epochs after the saved one, before a resume appends.

    Between checkpoints the CSV logger records epochs that a ``kill -9`` then
    loses; the resumed run trains them again and must not list them twice.
    """
    if not path.is_file():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < initial_epoch]
    if len(kept) == len(rows):
        return
    from mapseg_core.atomic import atomic_path

    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(kept)
