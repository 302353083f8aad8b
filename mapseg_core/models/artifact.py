"""The mapseg model file: one ``.keras`` file a user can hand to someone else.

It is a standard Keras 3 archive (architecture + weights, loadable with plain
``keras.saving.load_model`` once ``mapseg_core`` is imported, which registers
the custom losses and metrics) with one extra member, ``mapseg.json``, holding
what a tiling engine or a colleague needs to use the model correctly:

``format``            always ``"mapseg-model"``
``format_version``    integer, bumped on incompatible change
``mapseg_version``    version that wrote the file
``preset``, ``config`` the RunConfig it was trained with (``config`` is ``RunConfig.to_dict()``)
``input_size``        [height, width] the model was trained at
``bands``             number of input bands, in order (``band_names`` e.g. ["red","green","blue"])
``normalization``     how raw pixels map to model input: ``{"kind": "range", "min": 0, "max": 255}``
                      means the model takes values in 0..255 (EfficientNet rescales internally)
``threshold``         probability at or above which a pixel is a building (0.5 = logit 0)
``output``            ``"logits"`` (apply a sigmoid) or ``"probabilities"``
``class_names``       ["building"]
``gsd``               ground sampling distance of the training imagery, metres per pixel
``receptive_margin``  pixels cropped at each window edge by tile-infer: measured when the model is
                      saved (``margin`` holds the measure, see mapseg_core/models/margin.py)
``channels``          what each output channel predicts, "building" first (then "contact",
                      "boundary"); files without it have one building channel
``separation``        ``{"radius": px, "threshold": p}``: how tile-infer separates touching
                      buildings with the contact/boundary channels
``threshold_search``  validation pixel F1 per candidate threshold (where the search starts)
``postprocess_search`` validation building F1@0.5, AP, C-IoU, N-ratio of each candidate
                      ``threshold`` x separation ``threshold`` x ``polish.min_area_m2``; the
                      best one is the file's (see mapseg_core/training/tune.py)
``flexible_input``    the model takes any input size (multiples of 32): tile-infer predicts spans
``polish``            outline defaults the model was tuned with, used by tile-infer, evaluate and
                      QGIS when the user sets none: ``{"outline": "clean" | "simple" | "pixel",
                      "simplify_px": 1.5, "min_area_m2": 2.0}`` (tolerance in pixels of the
                      coarser of the raster's and the model's GSD); files without it get these
``training_data``     summary: annotation file name and SHA-256, image folder relative to it,
                      image count, splits, categories (never an absolute path)
``metrics``           evaluation results by split
``created``           ISO timestamp
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Literal

from mapseg_core import __version__
from mapseg_core.atomic import atomic_path
from mapseg_core.errors import ModelError, OutputError
from mapseg_core.vectorize.pipeline import DEFAULT_POLISH

FORMAT = "mapseg-model"
FORMAT_VERSION = 1
METADATA_MEMBER = "mapseg.json"

DEFAULT_METADATA: dict[str, Any] = {
    "input_size": [300, 300],
    "bands": 3,
    "band_names": ["red", "green", "blue"],
    "normalization": {"kind": "range", "min": 0.0, "max": 255.0},
    "threshold": 0.5,
    "output": "logits",
    "class_names": ["building"],
    "gsd": 0.3,
    "receptive_margin": 32,
    "polish": DEFAULT_POLISH,
    "channels": ["building"],
}


def save_artifact(model: Any, path: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
    """Save ``model`` with ``metadata`` as a mapseg model file, atomically.

    The file is written next to ``path`` under a temporary name and renamed,
    so a crash never leaves a truncated model where a good one was.

    Args:
        model: a Keras model (compiled or not; the optimizer state is dropped).
        path: target, must end in ``.keras``.
        metadata: fields documented in this module; missing ones take defaults.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise OutputError(f"model files end in .keras, got {path.name}; rename the output")
    meta = {**DEFAULT_METADATA, **metadata}
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        mapseg_version=__version__,
        created=meta.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(),
    )
    with atomic_path(path, suffix=".keras") as tmp:
        _strip_optimizer(model).save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(METADATA_MEMBER, json.dumps(meta, indent=2, default=str))
    return path


def update_metadata(
    path: str | os.PathLike[str], updates: dict[str, Any], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write a copy of the model file ``path`` whose metadata has ``updates`` merged in.

    The weights and architecture members are copied byte for byte, without
    loading Keras, so provenance (credits, held-out scores) can be added to a
    trained model after the fact. ``out`` defaults to ``path`` (replaced
    atomically); ``format``, ``format_version`` and ``created`` stay the model's own.

    Raises:
        ModelError: ``path`` is not a mapseg model file, or is a run's checkpoint.
        OutputError: ``out`` does not end in ``.keras``.
    """
    source = Path(path)
    meta = read_metadata(source)
    if meta.get("checkpoint"):
        raise ModelError(f"{source} is a checkpoint; update the run's model.keras instead")
    keep = {k: meta[k] for k in ("format", "format_version", "created")}
    merged = {**meta, **updates, **keep}
    target = Path(out) if out is not None else source
    if target.suffix != ".keras":
        raise OutputError(f"model files end in .keras, got {target.name}; rename the output")
    with atomic_path(target, suffix=".keras") as tmp:
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                if info.filename != METADATA_MEMBER:
                    dst.writestr(info, src.read(info.filename))
            dst.writestr(METADATA_MEMBER, json.dumps(merged, indent=2, default=str))
    return target


def _strip_optimizer(model: Any) -> Any:
    """An uncompiled copy of ``model`` (no optimizer state: a third of the size with Adam).

    ``keras.models.clone_model`` keeps the compile state in Keras 3.15, so the
    copy is rebuilt from the model's config instead.
    """
    if getattr(model, "optimizer", None) is None:
        return model
    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def portable_path(path: str | os.PathLike[str], base: str | os.PathLike[str]) -> str:
    """``path`` as written into a model file: relative to ``base`` when beneath it, else its name.

    A model file is handed to other people and machines: an absolute path
    would leak the trainer's folders (user name, mounts) and mean nothing
    elsewhere. ``Path.resolve`` is not used, so symlinked data keeps the
    names its user gave it. Always POSIX separators, so the metadata reads
    the same whatever system wrote it.
    """
    target, root = Path(os.path.abspath(path)), Path(os.path.abspath(base))
    try:
        return target.relative_to(root).as_posix() or "."
    except ValueError:
        return target.name


def portable_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """``RunConfig.to_dict()`` with a weights file named by its file name only.

    ``encoder_weights`` may be a path on the training machine (the ImageNet
    weights in ``../shared/weights``); the model file records which weights
    seeded it (``efficientnetb0_imagenet_notop.weights.h5``), not where they lay.
    So for ``init_model``, whose file's SHA-256 the run's metadata keeps too.
    """
    model = dict(config_dict.get("model", {}))
    weights = model.get("encoder_weights")
    if isinstance(weights, str) and weights != "imagenet":
        model["encoder_weights"] = Path(weights).name
    start = model.get("init_model")
    if isinstance(start, str) and start != "bundled":
        model["init_model"] = Path(start).name
    return {**config_dict, "model": model}


def default_margin(input_size: tuple[int, int] | list[int]) -> int:
    """Window margin of a model whose margin was not measured (or never converges).

    The rule of thumb ``max(16, input // 8)`` pixels cropped at each window side.
    """
    return max(16, int(input_size[0]) // 8)


def metadata_from_config(config: Any) -> dict[str, Any]:
    """The metadata fields a :class:`~mapseg_core.config.RunConfig` decides.

    Used for the final ``model.keras`` of a run and for its checkpoints
    (``best.keras``, ``last.keras``), which Keras writes without ``mapseg.json``.
    """
    return {
        "preset": config.preset,
        "config": portable_config(config.to_dict()),
        "input_size": list(config.model.input_size),
        "bands": config.model.bands,
        "gsd": config.train.gsd,
        "receptive_margin": default_margin(config.model.input_size),
        "channels": list(config.model.channels),
    }


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a mapseg model file, without loading Keras.

    A run's checkpoints (``best.keras``, ``last.keras``: plain Keras archives)
    take the metadata of the run they are in: its ``model.keras`` when training
    has finished, otherwise what its ``config.json`` decides; ``checkpoint``
    then names the file and ``metrics`` are dropped (they belong to other weights).

    An ``.onnx`` file written by ``mapseg export`` carries the same metadata
    (read with ONNX Runtime, see :mod:`mapseg_core.inference.onnx_runtime`).

    Raises:
        ModelError: the file is missing, not a zip, or not a mapseg model.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx" and path.is_file():
        from mapseg_core.inference.onnx_runtime import read_onnx_metadata

        return {**DEFAULT_METADATA, **read_onnx_metadata(path)}
    if not path.is_file():
        raise ModelError(
            f"model file {path} not found; pass --model PATH to a mapseg .keras or .onnx file"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            raw = zf.read(METADATA_MEMBER) if METADATA_MEMBER in names else None
    except (zipfile.BadZipFile, OSError):
        raise ModelError(
            f"{path} is not a mapseg model file (expected a .keras file written by mapseg train)"
        ) from None
    if raw is None:
        if "config.json" in names and (path.parent / "run.json").is_file():
            return _checkpoint_metadata(path)
        raise ModelError(
            f"{path} is not a mapseg model file (a Keras file without mapseg metadata); pass "
            "one written by mapseg train (RUN_DIR/model.keras, best.keras or last.keras)"
        )
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ModelError(f"{path} has corrupt mapseg metadata; re-export the model") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path} is not a mapseg model file (format {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{path} was written by a newer mapseg ({meta.get('mapseg_version')}); upgrade mapseg"
        )
    return {**DEFAULT_METADATA, **meta}


def _checkpoint_metadata(path: Path) -> dict[str, Any]:
    """Metadata for a Keras checkpoint inside a mapseg run directory."""
    final = path.parent / "model.keras"
    if final.is_file() and final.resolve() != path.resolve():
        meta = read_metadata(final)
    else:
        from mapseg_core.config import RunConfig

        try:
            config = RunConfig.from_dict(json.loads((path.parent / "config.json").read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelError(
                f"{path} is a checkpoint of a run whose config.json cannot be read ({exc}); "
                f"pass {path.parent / 'model.keras'} or finish the run with mapseg train --resume"
            ) from None
        meta = {**DEFAULT_METADATA, **metadata_from_config(config), "format": FORMAT}
    meta = {k: v for k, v in meta.items() if k != "metrics"}
    meta["checkpoint"] = path.name
    return meta


def load_artifact(
    path: str | os.PathLike[str], compile: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Load a mapseg model file: ``(keras_model, metadata)``.

    An ``.onnx`` file gives an :class:`~mapseg_core.inference.onnx_runtime.OnnxModel`
    instead (same ``predict_on_batch`` contract, ONNX Runtime, no Keras import).

    Raises:
        ModelError: missing file, not a mapseg model, or Keras cannot rebuild it.
    """
    meta = read_metadata(path)
    if Path(path).suffix.lower() == ".onnx":
        from mapseg_core.inference.onnx_runtime import load_onnx

        model, onnx_meta = load_onnx(path)
        return model, {**DEFAULT_METADATA, **onnx_meta}
    from mapseg_core.backend import keras
    from mapseg_core.models import losses  # noqa: F401  (registers custom objects)

    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as exc:  # Keras raises many types for a broken archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {path}: {first}; re-export it with mapseg") from None
    return model, meta


#: File name of the building model shipped inside the package (see docs/bundled-model.md).
BUNDLED_MODEL = "buildings-b0.keras"
#: The same model exported to ONNX (``mapseg export``), for engines without Keras.
BUNDLED_ONNX = "buildings-b0.onnx"


def installed(module: str) -> bool:
    """Whether ``module`` can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def bundled_model_path(kind: Literal["auto", "keras", "onnx"] = "auto") -> Path:
    """Path of the model shipped with mapseg, used when no ``--model`` is given.

    ``auto``: the ``.keras`` file where Keras is installed, else its ONNX export
    (the light ``mapseg[onnx]`` engine has no Keras); ``keras``/``onnx``: that file.

    Raises:
        ModelError: this installation has no bundled model (e.g. a source
            checkout without the file); the message says to pass ``--model``.
    """
    if kind == "auto":
        kind = "keras" if installed("keras") else "onnx"
    name = BUNDLED_MODEL if kind == "keras" else BUNDLED_ONNX
    path = Path(__file__).resolve().parent / "bundled" / name
    if not path.is_file():
        raise ModelError(
            f"no bundled model in this installation ({path} is missing); "
            "pass --model PATH to a mapseg .keras or .onnx file"
        )
    return path


def init_model_path(spec: str | os.PathLike[str]) -> Path:
    """The ``.keras`` file ``--init-model`` names: a path, or ``bundled``.

    Raises:
        ModelError: missing file, or not a ``.keras`` model.
    """
    path = bundled_model_path("keras") if str(spec) == "bundled" else Path(spec)
    if path.suffix.lower() != ".keras":
        raise ModelError(f"{spec} is not a .keras model; fine-tuning needs the Keras file")
    if not path.is_file():
        raise ModelError(f"model file {path} not found; pass a mapseg .keras file or bundled")
    return path


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """``model`` as a path, or the bundled model when ``model`` is None."""
    return bundled_model_path() if model is None else Path(model)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, for provenance records."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
