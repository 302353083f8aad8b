"""ONNX models (``mapseg export``) on ONNX Runtime: the engine without TensorFlow.

An exported file (see :mod:`mapseg_core.models.onnx_export`) is built for
Deepness first: channels-first input ``[batch, bands, S, S]`` in 0..1 (uint8
pixels divided by 255), sigmoid probabilities ``[batch, 1, S, S]`` out (and a
``separators`` head for models with contact/boundary channels). The
tiling engine instead feeds band-last windows in the model's own input range
(0..255 for mapseg models) and calls ``predict_on_batch``, like a Keras model.
:class:`OnnxModel` is that adapter: it transposes, applies the file's input
scale and transposes back, so the engine, the Dask workers and ``evaluate``
take an ONNX model wherever they take a Keras one, and nothing here imports
Keras or TensorFlow.

The file's mapseg metadata (``mapseg.json`` of the Keras file it came from,
with ``output`` set to ``"probabilities"`` and an ``onnx`` section) lives in
the ONNX ``metadata_props`` under :data:`METADATA_KEY`, next to Deepness' keys.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mapseg_core.errors import MapsegError, ModelError

#: metadata_props key holding mapseg's own metadata (JSON).
METADATA_KEY = "mapseg"

#: Install hint when ONNX Runtime is missing.
INSTALL_HINT = "install it: pip install 'mapseg[onnx]'"


class OnnxRuntimeMissing(MapsegError, ImportError):
    """An .onnx model was given but onnxruntime is not installed."""

    exit_code = 2


def is_onnx(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names an ONNX model (by its suffix, as Deepness does)."""
    return Path(path).suffix.lower() == ".onnx"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise OnnxRuntimeMissing(
            f"ONNX models need onnxruntime, which is not installed; {INSTALL_HINT}"
        ) from None
    return onnxruntime


@functools.lru_cache(maxsize=4)
def _session(path: str, stamp: tuple[int, int], threads: int | None) -> Any:
    """An inference session on ``path`` (cached per file version and thread count).

    ``stamp`` (mtime, size) is part of the key so a re-exported file is reloaded.
    ``read_metadata`` and the engine both need the session: the cache makes that
    one load (a 35 MB model takes ~0.3 s to load and optimise).
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no notices on the user's terminal
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(path, sess_options=options, providers=_providers(ort))
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot load ONNX model {path}: {first[:200]}; re-export it with mapseg export"
        ) from None


def _providers(ort: Any) -> list[str]:
    """CUDA when this onnxruntime build has it, then CPU (Deepness' order)."""
    available = set(ort.get_available_providers())
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """The (cached) ONNX Runtime session of ``path``.

    Raises:
        ModelError: the file is missing or not an ONNX model.
        OnnxRuntimeMissing: onnxruntime is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"model file {path} not found; pass --model PATH to a .keras or .onnx file"
        )
    stat = path.stat()
    return _session(str(path.resolve()), (stat.st_mtime_ns, stat.st_size), threads)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapseg metadata stored in an ONNX file by ``mapseg export``.

    Raises:
        ModelError: not an ONNX file, or one without mapseg metadata (an ONNX
            model from elsewhere: its tile size, GSD and input range are unknown).
    """
    props = dict(session(path).get_modelmeta().custom_metadata_map)
    raw = props.get(METADATA_KEY)
    if raw is None:
        raise ModelError(
            f"{path} is an ONNX model without mapseg metadata; export it with "
            "mapseg export MODEL.keras -o MODEL.onnx"
        )
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ModelError(f"{path} has corrupt mapseg metadata; re-export it") from None
    if not isinstance(meta, dict) or "onnx" not in meta:
        raise ModelError(f"{path} has mapseg metadata without its onnx section; re-export it")
    return meta


@dataclass(frozen=True)
class _InputSpec:
    """What the engine reads of a model's input: its band-last shape."""

    shape: tuple[int | None, ...]


class OnnxModel:
    """An ONNX Runtime session that looks like a Keras model to the engine.

    ``predict_on_batch`` takes ``(n, h, w, bands)`` float32 in the model's input
    range (what the engine's normalization produces) and returns ``(n, h, w, 1)``
    probabilities; ``inputs[0].shape`` is band-last with ``None`` for dynamic
    sizes, so the engine chooses windows or spans exactly as for Keras.
    """

    def __init__(self, session: Any, metadata: dict[str, Any]):
        self.session = session
        self.metadata = metadata
        onnx_meta = metadata["onnx"]
        # The graph takes (x - input_min) / (input_max - input_min): Deepness' x / 255.
        self.input_min = float(onnx_meta.get("input_min", 0.0))
        self.input_scale = 1.0 / (float(onnx_meta.get("input_max", 1.0)) - self.input_min)
        spec = session.get_inputs()[0]
        self.input_name = spec.name
        dims = [d if isinstance(d, int) else None for d in spec.shape]
        if len(dims) != 4:
            raise ModelError(
                f"ONNX model input has shape {spec.shape}, expected [batch, bands, height, width]; "
                "re-export it with mapseg export"
            )
        self.inputs = [_InputSpec((None, dims[2], dims[3], dims[1]))]

    def predict_on_batch(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        """Probabilities ``(n, h, w, channels)`` of band-last windows ``x`` (all output heads)."""
        nchw = np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float32), -1, 1))
        if self.input_min:
            nchw -= np.float32(self.input_min)
        if self.input_scale != 1.0:
            nchw *= np.float32(self.input_scale)
        heads = []
        for out in self.session.run(None, {self.input_name: nchw}):
            out = np.asarray(out, dtype=np.float32)
            heads.append(out[:, None] if out.ndim == 3 else out)  # [B, S, S]: no channel axis
        # Building head first, then the contact/boundary head of a separating model.
        out = heads[0] if len(heads) == 1 else np.concatenate(heads, axis=1)
        return np.moveaxis(out, 1, -1)

    def __call__(self, x: NDArray[np.floating]) -> NDArray[np.float32]:
        return self.predict_on_batch(x)


def load_onnx(
    path: str | os.PathLike[str], threads: int | None = None
) -> tuple[OnnxModel, dict[str, Any]]:
    """Load an exported ONNX model: ``(model, metadata)``, without Keras.

    Args:
        path: a file written by ``mapseg export``.
        threads: ONNX Runtime intra-op threads (None: one per core).
    """
    meta = read_onnx_metadata(path)
    return OnnxModel(session(path, threads), meta), meta


__all__ = [
    "METADATA_KEY",
    "OnnxModel",
    "OnnxRuntimeMissing",
    "is_onnx",
    "load_onnx",
    "read_onnx_metadata",
    "session",
]
