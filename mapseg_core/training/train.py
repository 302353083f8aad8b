"""Training runs: ``train()`` a new run, ``resume()`` an interrupted one.

A run directory holds everything about one run::

    run.json            format marker, status, epochs done, best val_loss, data paths
    config.json         the RunConfig (preset + every field)
    splits.json         train / valid / test image ids (evaluation reuses them)
    last.keras          model + optimizer state after the last finished epoch
    best.keras          model with the best validation loss so far
    history.csv         per-epoch metrics (Keras CSVLogger, appended on resume)
    logs/               TensorBoard logs (TensorFlow backend)
    model.keras         the mapseg model file (best weights + metadata), when done
    report.csv/.json    the seed's table for train / valid / test
    lr_schedule.png, training_curves.png, predictions.png

Every file is written atomically, so a run killed at any moment is resumable
from its last finished epoch with the optimizer state it had.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mapseg_core import __version__
from mapseg_core.atomic import write_json
from mapseg_core.config import RunConfig, TrainConfig
from mapseg_core.errors import ConfigError, Interrupted, OutputExistsError, RunDirError
from mapseg_core.progress import Reporter, null_reporter
from mapseg_core.training.report import read_json

log = logging.getLogger("mapseg")

RUN_FORMAT = "mapseg-run"
MODEL_FILE = "model.keras"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    model_path: Path
    results: dict[str, dict[str, float]]
    epochs_done: int


def train(
    annotations: str | Path,
    images_dir: str | Path,
    run_dir: str | Path,
    config: RunConfig,
    *,
    overwrite: bool = False,
    report: Reporter = null_reporter,
) -> TrainResult:
    """Train a new U-Net on a COCO export into ``run_dir``.

    Raises:
        OutputExistsError: ``run_dir`` exists and is not empty, without ``overwrite``.
        DatasetError, WeightsError, ConfigError: bad data, weights or options.
        Interrupted: Ctrl-C; the run directory is resumable.
    """
    from mapseg_core.data.coco import load_coco
    from mapseg_core.data.splits import save_splits

    run_dir = Path(run_dir)
    _claim_run_dir(run_dir, overwrite, dry_run=True)
    dataset = load_coco(
        annotations,
        images_dir,
        config.train.category_ids,
        include_negatives=config.train.keep_negatives,
    ).at_gsd(config.train.gsd, config.train.image_gsd)
    dataset.check_images()
    splits = split_dataset(dataset, config.train)
    # Build before writing anything: bad weights or options must leave no run behind.
    model = _new_model(config)
    _claim_run_dir(run_dir, overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_splits(splits, run_dir / "splits.json")
    write_json(run_dir / "config.json", config.to_dict())
    state = {
        "format": RUN_FORMAT,
        "mapseg_version": __version__,
        "status": "running",
        "annotations": str(Path(annotations).resolve()),
        "images_dir": str(Path(images_dir).resolve()),
        "epochs_done": 0,
        "best_val_loss": None,
    }
    write_json(run_dir / "run.json", state)
    return _run(run_dir, config, state, dataset, splits, report, model)


def resume(
    run_dir: str | Path, *, epochs: int | None = None, report: Reporter = null_reporter
) -> TrainResult:
    """Continue a run from its last finished epoch, with its optimizer state.

    Args:
        run_dir: a directory written by :func:`train`.
        epochs: a new total number of epochs (default: the run's own).

    Raises:
        RunDirError: ``run_dir`` is not a mapseg run.
    """
    import dataclasses

    from mapseg_core.data.coco import load_coco
    from mapseg_core.data.splits import load_splits

    run_dir = Path(run_dir)
    state = read_run_state(run_dir)
    config = RunConfig.from_dict(read_json(run_dir / "config.json"))
    if epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))
        write_json(run_dir / "config.json", config.to_dict())
    dataset = load_coco(
        state["annotations"],
        state["images_dir"],
        config.train.category_ids,
        include_negatives=config.train.keep_negatives,
    ).at_gsd(config.train.gsd, config.train.image_gsd)
    splits = load_splits(run_dir / "splits.json")
    return _run(run_dir, config, state, dataset, splits, report)


def split_dataset(dataset: Any, tcfg: TrainConfig) -> Any:
    """Train/valid/test splits: by image at random, or by group with ``split_by``.

    See :func:`mapseg_core.data.splits.make_group_splits` for why chips of one
    raster should stay in one split (docs/bundled-model.md, "Splits").
    """
    from mapseg_core.data.splits import group_of, make_group_splits, make_splits

    if tcfg.split_by is None:
        return make_splits(dataset.image_ids, tcfg.train_size, tcfg.valid_size, tcfg.seed)
    groups = [group_of(dataset.image_info(i), tcfg.split_by) for i in dataset.image_ids]
    return make_group_splits(dataset.image_ids, groups, tcfg.train_size, tcfg.valid_size, tcfg.seed)


def read_run_state(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run directory, or :class:`RunDirError` saying what to do."""
    marker = run_dir / "run.json"
    if not run_dir.is_dir() or not marker.is_file():
        raise RunDirError(
            f"{run_dir} is not a mapseg run directory (no run.json); "
            "start a new run with mapseg train ANNOTATIONS IMAGES -o DIR"
        )
    try:
        state = read_json(marker)
    except ValueError:
        raise RunDirError(f"{marker} is corrupt; start a new run with --overwrite") from None
    if state.get("format") != RUN_FORMAT:
        raise RunDirError(f"{run_dir} is not a mapseg run directory; start a new run")
    for name in ("config.json", "splits.json"):
        if not (run_dir / name).is_file():
            raise RunDirError(f"{run_dir} lacks {name}; it cannot be resumed, start a new run")
    return state


def _claim_run_dir(run_dir: Path, overwrite: bool, dry_run: bool = False) -> None:
    """Refuse an occupied ``run_dir`` unless ``overwrite``; then empty it (not on ``dry_run``)."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise OutputExistsError(f"{run_dir} exists and is a file; choose another -o")
    if not any(run_dir.iterdir()):
        return
    if not overwrite:
        if (run_dir / "run.json").is_file():
            raise OutputExistsError(
                f"{run_dir} holds a mapseg run; continue it with mapseg train --resume {run_dir}, "
                "or pass --overwrite to start again"
            )
        raise OutputExistsError(
            f"{run_dir} exists and is not empty; choose another -o or pass --overwrite"
        )
    if not dry_run:
        shutil.rmtree(run_dir)


def _run(
    run_dir: Path,
    config: RunConfig,
    state: dict[str, Any],
    dataset: Any,
    splits: Any,
    report: Reporter,
    model: Any = None,
) -> TrainResult:
    from mapseg_core.backend import keras
    from mapseg_core.data.pipeline import CocoSequence, make_sequences
    from mapseg_core.models import losses  # noqa: F401  (registers the loss last.keras names)
    from mapseg_core.training.callbacks import ProgressReporter, RunCheckpoint, validation_epochs

    tcfg = config.train
    initial_epoch = int(state.get("epochs_done", 0))
    if initial_epoch >= tcfg.epochs and (run_dir / MODEL_FILE).is_file():
        raise RunDirError(
            f"{run_dir} already finished {initial_epoch} epochs; "
            f"pass --epochs N with N > {initial_epoch} to train longer"
        )
    _enable_gpu_memory_growth()
    sequences = make_sequences(
        dataset, splits, config.model.input_size, tcfg, channels=config.model.channels
    )
    steps = len(sequences["train"])

    last = run_dir / "last.keras"
    if initial_epoch > 0 and last.is_file():
        from mapseg_core.models import losses  # noqa: F401  (registers ComboLoss for the load)

        with _strategy_scope(tcfg.strategy):
            model = keras.saving.load_model(last, compile=True)
        log.info("resuming %s from epoch %d", run_dir, initial_epoch)
    else:
        initial_epoch = 0
        model = model if model is not None else _new_model(config)

    def update_state(epochs_done: int, best: float) -> None:
        state.update(epochs_done=epochs_done, best_val_loss=best if math.isfinite(best) else None)
        write_json(run_dir / "run.json", state)

    best = state.get("best_val_loss")
    if initial_epoch > 0:
        _truncate_history(run_dir / "history.csv", initial_epoch)
    callbacks = _callbacks(run_dir, tcfg, initial_epoch, resume=initial_epoch > 0)
    checkpoint = RunCheckpoint(
        run_dir,
        update_state,
        best=math.inf if best is None else float(best),
        interval=tcfg.checkpoint_interval,
    )
    callbacks += [checkpoint, ProgressReporter(report, initial_epoch, tcfg.epochs, steps)]
    state["status"] = "running"
    write_json(run_dir / "run.json", state)
    # Replay the uninterrupted run's sample order and augmentation on resume.
    sequences["train"].set_epoch(initial_epoch)
    try:
        model.fit(
            sequences["train"],
            validation_data=sequences["valid"],
            epochs=tcfg.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # the sequence shuffles itself, reproducibly from the seed
            verbose=0,
            validation_freq=validation_epochs(initial_epoch, tcfg.epochs, tcfg.validation_freq),
        )
    except KeyboardInterrupt:
        checkpoint.save_interrupted()
        state["status"] = "interrupted"
        write_json(run_dir / "run.json", state)
        raise Interrupted(
            f"training stopped after {state['epochs_done']} finished epoch(s); "
            f"continue with: mapseg train --resume {run_dir}"
        ) from None

    # Report with the best weights, like the seed's load_weights before testing.
    if (run_dir / "best.keras").is_file():
        model.load_weights(run_dir / "best.keras")
    eval_sequences = {
        "train": CocoSequence(
            dataset,
            splits.train,
            tcfg.batch_size,
            config.model.input_size,
            resize_mode=tcfg.resize_mode,
            workers=tcfg.workers,
            channels=config.model.channels,
            contact_width=tcfg.contact_width,
            boundary_width=tcfg.boundary_width,
        ),
        "valid": sequences["valid"],
        "test": sequences["test"],
    }
    results = {
        name: {k: float(v) for k, v in model.evaluate(seq, verbose=0, return_dict=True).items()}
        for name, seq in eval_sequences.items()
    }
    model_path = _write_outputs(
        run_dir,
        config,
        state,
        dataset,
        splits,
        model,
        results,
        sequences["test"],
        steps,
        sequences["valid"],
    )
    state["status"] = "finished"
    write_json(run_dir / "run.json", state)
    report(
        {
            "event": "done",
            "summary": {
                "model": str(model_path),
                "results": results,
                "epochs_done": state["epochs_done"],
            },
        }
    )
    return TrainResult(run_dir, model_path, results, int(state["epochs_done"]))


def _new_model(config: RunConfig) -> Any:
    """Build and compile the U-Net under the configured precision and strategy."""
    from mapseg_core.backend import keras
    from mapseg_core.models.losses import ComboLoss, make_metrics
    from mapseg_core.models.unet import build_unet
    from mapseg_core.training.schedules import make_learning_rate

    channels = config.model.channels
    # One channel: the seed's loss exactly; more: a combo loss per channel, weighted.
    weights = config.train.weights_for(channels) if len(channels) > 1 else None
    with _precision(config.train.mixed_precision), _strategy_scope(config.train.strategy):
        model = build_unet(config.model)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=make_learning_rate(config.train)),
            loss=ComboLoss(config.train.ce_weight, channel_weights=weights),
            metrics=make_metrics(len(channels)),
        )
    return model


def _callbacks(run_dir: Path, tcfg: TrainConfig, initial_epoch: int, resume: bool) -> list[Any]:
    from mapseg_core.backend import keras
    from mapseg_core.training.callbacks import ValidatedEarlyStopping, ValidatedReduceLROnPlateau

    # Patience is in epochs; with validation every N epochs the monitors see one value per N.
    per_validation = functools.partial(_in_validations, freq=tcfg.validation_freq)
    callbacks: list[Any] = [
        keras.callbacks.TerminateOnNaN(),
        ValidatedEarlyStopping(monitor="val_loss", patience=per_validation(tcfg.early_stopping)),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume),
    ]
    if tcfg.reduce_lr_on_plateau:
        callbacks.append(ValidatedReduceLROnPlateau(patience=per_validation(tcfg.reduce_lr)))
    if _have_tensorflow():
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


def _in_validations(epochs: int, freq: int) -> int:
    """A patience of ``epochs`` counted in validations that run every ``freq`` epochs."""
    return max(1, math.ceil(epochs / freq))


def _truncate_history(path: Path, initial_epoch: int) -> None:
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


def _write_outputs(
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
    history = _read_history(run_dir / "history.csv")
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
    margin = _measure_margin(flexible, config, test_sequence)
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


def _measure_margin(flexible: Any, config: RunConfig, sequence: Any) -> dict[str, Any]:
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


def _read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None, "NA")}
            for row in csv.DictReader(fh)
        ]


def _have_tensorflow() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) for name in ("tensorflow", "tensorboard"))


def _enable_gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as needed instead of all of it at start."""
    from mapseg_core.backend import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised: too late, harmless
            tf.config.experimental.set_memory_growth(gpu, True)


@contextlib.contextmanager
def _precision(mixed: bool) -> Iterator[None]:
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
def _strategy_scope(strategy: str) -> Iterator[None]:
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
