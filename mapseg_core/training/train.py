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

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mapseg_core import __version__
from mapseg_core.atomic import write_json
from mapseg_core.config import RunConfig, TrainConfig
from mapseg_core.errors import ConfigError, Interrupted, OutputExistsError, RunDirError
from mapseg_core.progress import Reporter, null_reporter
from mapseg_core.training.devices import (
    enable_gpu_memory_growth,
    precision,
    strategy_scope,
)
from mapseg_core.training.outputs import MODEL_FILE, write_outputs
from mapseg_core.training.report import read_json

log = logging.getLogger("mapseg")

RUN_FORMAT = "mapseg-run"


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
    if config.model.init_model is not None:
        state["init_model"] = _source_record(config.model.init_model)
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
    from mapseg_core.data.pipeline import make_sequences
    from mapseg_core.models import losses  # noqa: F401  (registers the loss last.keras names)

    tcfg = config.train
    initial_epoch = int(state.get("epochs_done", 0))
    if initial_epoch >= tcfg.epochs and (run_dir / MODEL_FILE).is_file():
        raise RunDirError(
            f"{run_dir} already finished {initial_epoch} epochs; "
            f"pass --epochs N with N > {initial_epoch} to train longer"
        )
    enable_gpu_memory_growth()
    sequences = make_sequences(
        dataset, splits, config.model.input_size, tcfg, channels=config.model.channels
    )
    steps = len(sequences["train"])

    model, initial_epoch = _starting_model(run_dir, config, initial_epoch, model)
    callbacks, checkpoint = _callbacks(run_dir, tcfg, state, initial_epoch, steps, report)
    state["status"] = "running"
    write_json(run_dir / "run.json", state)
    # Replay the uninterrupted run's sample order and augmentation on resume.
    sequences["train"].set_epoch(initial_epoch)
    _fit(model, sequences, tcfg, initial_epoch, callbacks, checkpoint, state, run_dir)

    # Report with the best weights, like the seed's load_weights before testing.
    if (run_dir / "best.keras").is_file():
        model.load_weights(run_dir / "best.keras")
    results = _split_results(model, config, dataset, splits, sequences)
    model_path = write_outputs(
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


def _callbacks(
    run_dir: Path,
    tcfg: TrainConfig,
    state: dict[str, Any],
    initial_epoch: int,
    steps: int,
    report: Reporter,
) -> tuple[list[Any], Any]:
    """The run's Keras callbacks, and its checkpoint (which keeps ``run.json`` up to date)."""
    from mapseg_core.training.callbacks import (
        ProgressReporter,
        RunCheckpoint,
        run_callbacks,
        truncate_history,
    )

    def update_state(epochs_done: int, best: float) -> None:
        state.update(epochs_done=epochs_done, best_val_loss=best if math.isfinite(best) else None)
        write_json(run_dir / "run.json", state)

    best = state.get("best_val_loss")
    if initial_epoch > 0:
        truncate_history(run_dir / "history.csv", initial_epoch)
    callbacks = run_callbacks(run_dir, tcfg, initial_epoch, resume=initial_epoch > 0)
    checkpoint = RunCheckpoint(
        run_dir,
        update_state,
        best=math.inf if best is None else float(best),
        interval=tcfg.checkpoint_interval,
    )
    callbacks += [checkpoint, ProgressReporter(report, initial_epoch, tcfg.epochs, steps)]
    return callbacks, checkpoint


def _fit(
    model: Any,
    sequences: dict[str, Any],
    tcfg: TrainConfig,
    initial_epoch: int,
    callbacks: list[Any],
    checkpoint: Any,
    state: dict[str, Any],
    run_dir: Path,
) -> None:
    """``model.fit`` from ``initial_epoch``; Ctrl-C saves a resumable state and names --resume."""
    from mapseg_core.training.callbacks import validation_epochs

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


def _starting_model(
    run_dir: Path, config: RunConfig, initial_epoch: int, model: Any
) -> tuple[Any, int]:
    """The model to fit and its first epoch: ``last.keras`` of a resumed run, else a new one."""
    from mapseg_core.backend import keras

    last = run_dir / "last.keras"
    if initial_epoch > 0 and last.is_file():
        from mapseg_core.models import losses  # noqa: F401  (registers ComboLoss for the load)

        with strategy_scope(config.train.strategy):
            loaded = keras.saving.load_model(last, compile=True)
        log.info("resuming %s from epoch %d", run_dir, initial_epoch)
        return loaded, initial_epoch
    return (model if model is not None else _new_model(config)), 0


def _split_results(
    model: Any, config: RunConfig, dataset: Any, splits: Any, sequences: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """The seed's table: the model evaluated on train (without augmentation), valid, test."""
    from mapseg_core.data.pipeline import CocoSequence

    tcfg = config.train
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
    return {
        name: {k: float(v) for k, v in model.evaluate(seq, verbose=0, return_dict=True).items()}
        for name, seq in eval_sequences.items()
    }


def _new_model(config: RunConfig) -> Any:
    """Build and compile the U-Net under the configured precision and strategy."""
    from mapseg_core.backend import keras
    from mapseg_core.models.losses import ComboLoss, make_metrics
    from mapseg_core.models.unet import build_unet
    from mapseg_core.training.schedules import make_learning_rate

    channels = config.model.channels
    # One channel: the seed's loss exactly; more: a combo loss per channel, weighted.
    weights = config.train.weights_for(channels) if len(channels) > 1 else None
    with precision(config.train.mixed_precision), strategy_scope(config.train.strategy):
        model = build_unet(config.model)
        if config.model.init_model is not None:
            _start_from(model, config.model.init_model)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=make_learning_rate(config.train)),
            loss=ComboLoss(config.train.ce_weight, channel_weights=weights),
            metrics=make_metrics(len(channels)),
        )
    return model


def _start_from(model: Any, spec: str) -> None:
    """Copy the weights of the trained model ``spec`` names into ``model`` (same U-Net).

    The U-Net's layers do not depend on its input size (multiples of 32), so a
    model run in 512 px windows fine-tunes on 256 px chips with the same weights.

    Raises:
        ConfigError: the weights do not fit (another architecture or input size fix).
    """
    from mapseg_core.models.artifact import init_model_path, load_artifact
    from mapseg_core.models.unet import copy_weights

    source, _ = load_artifact(init_model_path(spec))
    theirs, mine = source.get_weights(), model.get_weights()
    misfit = next(
        (i for i, (a, b) in enumerate(zip(theirs, mine, strict=False)) if a.shape != b.shape),
        None,
    )
    if len(theirs) != len(mine) or misfit is not None:
        raise ConfigError(
            f"--init-model {spec}: its weights do not fit this U-Net ({len(theirs)} arrays "
            f"vs {len(mine)}); use an --input-size that is a multiple of 32"
        )
    copy_weights(model, source)


def _source_record(spec: str) -> dict[str, str]:
    """What started a fine-tuning run: the model's file name (or bundled) and SHA-256."""
    from mapseg_core.models.artifact import file_sha256, init_model_path

    path = init_model_path(spec)
    return {"model": spec if spec == "bundled" else path.name, "sha256": file_sha256(path)}
