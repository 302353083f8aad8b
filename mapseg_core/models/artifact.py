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
``threshold_search``  validation pixel F1 per candidate threshold (how ``threshold`` was chosen)
``flexible_input``    the model takes any input size (multiples of 32): tile-infer predicts spans
``training_data``     summary: annotation file, image count, splits, categories
``metrics``           evaluation results by split
``created``           ISO timestamp
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

from mapseg_core import __version__
from mapseg_core.atomic import atomic_path
from mapseg_core.errors import ModelError, OutputError

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


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a mapseg model file, without loading Keras.

    Raises:
        ModelError: the file is missing, not a zip, or not a mapseg model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} not found; pass --model PATH to a mapseg .keras file")
    try:
        with zipfile.ZipFile(path) as zf:
            raw = zf.read(METADATA_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError):
        raise ModelError(
            f"{path} is not a mapseg model file (expected a .keras file written by mapseg train)"
        ) from None
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


def load_artifact(
    path: str | os.PathLike[str], compile: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Load a mapseg model file: ``(keras_model, metadata)``.

    Raises:
        ModelError: missing file, not a mapseg model, or Keras cannot rebuild it.
    """
    meta = read_metadata(path)
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


def bundled_model_path() -> Path:
    """Path of the model shipped with mapseg, used when no ``--model`` is given.

    Raises:
        ModelError: this installation has no bundled model (e.g. a source
            checkout without the file); the message says to pass ``--model``.
    """
    path = Path(__file__).resolve().parent / "bundled" / BUNDLED_MODEL
    if not path.is_file():
        raise ModelError(
            f"no bundled model in this installation ({path} is missing); "
            "pass --model PATH to a mapseg .keras file"
        )
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
