"""Learning-rate schedules of the seed: SGDR or a constant rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from mapseg_core.backend import keras
from mapseg_core.config import TrainConfig


def make_learning_rate(config: TrainConfig) -> Any:
    """The optimizer's learning rate: a ``CosineDecayRestarts`` schedule or a float.

    SGDR counts *optimizer steps* (batches), as Keras schedules do: with the
    seed's 50 first-decay steps, a cycle lasts 50 batches.
    """
    if config.lr_schedule == "constant":
        return float(config.lr_initial)
    return keras.optimizers.schedules.CosineDecayRestarts(
        config.lr_initial,
        config.lr_first_decay_steps,
        t_mul=config.lr_t_mul,
        m_mul=config.lr_m_mul,
        alpha=config.lr_alpha,
    )


def learning_rate_curve(config: TrainConfig, steps: int) -> np.ndarray:
    """Learning rate at each of ``steps`` optimizer steps, for the schedule plot."""
    lr = make_learning_rate(config)
    if isinstance(lr, float):
        return np.full(steps, lr, dtype="float32")
    return np.array(
        [float(keras.ops.convert_to_numpy(lr(step))) for step in range(steps)], dtype="float32"
    )
