"""Checkpoints by wall time, validation every N epochs, history kept consistent on resume."""

from __future__ import annotations

import csv
from pathlib import Path

import keras
import numpy as np
import pytest

from mapseg_core.training.callbacks import (
    RunCheckpoint,
    in_validations,
    truncate_history,
    validation_epochs,
)
from mapseg_core.training.outputs import read_history


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Ticker(keras.callbacks.Callback):
    """Advances the fake clock by ``step`` seconds per epoch (before RunCheckpoint sees it)."""

    def __init__(self, clock: FakeClock, step: float):
        super().__init__()
        self.clock, self.step = clock, step

    def on_epoch_end(self, epoch, logs=None):
        self.clock.now += self.step


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def test_validation_epochs_include_first_and_last():
    assert validation_epochs(0, 10, 1) == list(range(1, 11))
    assert validation_epochs(0, 10, 4) == [1, 4, 8, 10]
    assert validation_epochs(5, 12, 5) == [6, 10, 12]  # a resume validates its first epoch
    assert validation_epochs(0, 1, 5) == [1]
    assert in_validations(10, 5) == 2 and in_validations(3, 5) == 1


def test_checkpoints_follow_the_interval_and_the_last_epoch(tmp_path):
    clock, saved = FakeClock(), []
    checkpoint = RunCheckpoint(
        tmp_path, lambda done, best: saved.append(done), interval=25.0, clock=clock
    )
    x, y = _data()
    _model().fit(
        x,
        y,
        validation_data=(x, y),
        epochs=7,
        verbose=0,
        callbacks=[Ticker(clock, 10.0), checkpoint],
    )
    # First epoch, then every >= 25 s (10 s per epoch), then the last one.
    assert saved == [1, 4, 7]
    assert (tmp_path / "last.keras").is_file() and (tmp_path / "best.keras").is_file()
    last = keras.saving.load_model(tmp_path / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 7  # one batch of 16 per epoch


def test_interval_zero_saves_every_epoch(tmp_path):
    saved = []
    x, y = _data()
    checkpoint = RunCheckpoint(tmp_path, lambda done, best: saved.append(done), interval=0)
    _model().fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[checkpoint])
    assert saved == [1, 2, 3]


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt


def test_ctrl_c_saves_the_last_finished_epoch_not_the_current_one(tmp_path):
    """Interrupted in epoch 3 (0-based) after a batch: last.keras holds epoch 3's end state."""
    clock, saved = FakeClock(), []
    x, y = _data()
    model = _model()
    checkpoint = RunCheckpoint(
        tmp_path, lambda done, best: saved.append(done), interval=1e9, clock=clock
    )
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            x,
            y,
            batch_size=8,
            validation_data=(x, y),
            epochs=10,
            verbose=0,
            callbacks=[checkpoint, Interrupt(epoch=3, batch=1)],
        )
    assert saved == [1]
    checkpoint.save_interrupted()
    assert saved == [1, 3]
    last = keras.saving.load_model(tmp_path / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 3 * 2  # 3 epochs of 2 batches, not 7
    np.testing.assert_allclose(model.get_weights()[0], last.get_weights()[0])


def test_best_weights_are_those_of_the_best_epoch(tmp_path):
    """best.keras written later from memory still holds the best epoch's weights."""
    clock = FakeClock()
    x, y = _data()
    model = _model()
    losses = iter([3.0, 1.0, 2.0, 2.5])
    weights_at = {}

    class FakeValLoss(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(losses)
            weights_at[epoch + 1] = [w.copy() for w in self.model.get_weights()]

    checkpoint = RunCheckpoint(tmp_path, lambda d, b: None, interval=1e9, clock=clock)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[FakeValLoss(), checkpoint])
    assert checkpoint.best == 1.0
    best = keras.saving.load_model(tmp_path / "best.keras")
    for got, want in zip(best.get_weights(), weights_at[2], strict=True):
        np.testing.assert_array_equal(got, want)


def test_truncated_history_drops_epochs_after_the_checkpoint(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,1.0,1.1\n1,0.9,NA\n2,0.8,NA\n3,0.7,0.75\n")
    truncate_history(path, 2)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["epoch", "loss", "val_loss"], ["0", "1.0", "1.1"], ["1", "0.9", "NA"]]
    assert read_history(path) == [
        {"epoch": 0.0, "loss": 1.0, "val_loss": 1.1},
        {"epoch": 1.0, "loss": 0.9},
    ]
    truncate_history(Path(tmp_path / "absent.csv"), 2)  # nothing to do, no error
