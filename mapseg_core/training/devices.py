"""Where and how a model trains: GPU memory growth, mixed precision, distribution strategy.

Each helper is a no-op on the default single-device set-up; see docs/cluster.md,
"Training at scale", for ``--strategy``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from mapseg_core.errors import ConfigError


def have_tensorflow() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("tensorflow", "tensorboard"))


def enable_gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as needed instead of all of it at start."""
    from mapseg_core.backend import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised: too late, harmless
            tf.config.experimental.set_memory_growth(gpu, True)


@contextlib.contextmanager
def precision(mixed: bool) -> Iterator[None]:
    from mapseg_core.backend import keras

    if not mixed:
        yield
        return
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def strategy_scope(strategy: str) -> Iterator[None]:
    """Build/load the model under ``--strategy`` (see docs/cluster.md, "Training at scale").

    TensorFlow: ``mirrored`` is ``tf.distribute.MirroredStrategy`` (the GPUs of this
    machine), ``multiworker`` is ``MultiWorkerMirroredStrategy`` (machines named in
    ``TF_CONFIG``). JAX: both are ``keras.distribution.DataParallel`` over every
    device (``multiworker`` first joins the processes named in the
    ``KERAS_DISTRIBUTION_*`` variables); JAX has no scope, so it is set once for the process.
    """
    from mapseg_core.backend import keras

    if strategy == "default":
        yield
        return
    backend = keras.backend.backend()
    if backend == "jax":
        _jax_data_parallel(strategy)
        yield
        return
    if backend != "tensorflow":
        raise ConfigError(
            f"--strategy {strategy} needs the TensorFlow or JAX backend "
            "(KERAS_BACKEND=tensorflow or jax)"
        )
    with _tf_strategy(strategy).scope():
        yield


@functools.cache
def _tf_strategy(strategy: str) -> Any:
    """One strategy object per process: MultiWorkerMirroredStrategy may be created only once."""
    import tensorflow as tf

    if strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def _jax_data_parallel(strategy: str) -> None:
    """Replicate the model on every JAX device and split each batch across them."""
    from mapseg_core.backend import keras

    if isinstance(keras.distribution.distribution(), keras.distribution.DataParallel):
        return
    if strategy == "multiworker":
        keras.distribution.initialize()  # reads KERAS_DISTRIBUTION_JOB_ADDRESSES etc.
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
