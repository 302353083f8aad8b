"""``mapseg export``: a mapseg ``.keras`` model as an ONNX file Deepness runs as is.

One file serves two engines:

* **Deepness** (the QGIS plugin, ``../shared/specs/deepness-onnx.md``) feeds
  channels-first tiles ``[batch, bands, S, S]`` of uint8 pixels divided by 255
  and reads sigmoid probabilities ``[batch, 1, S, S]``, one output per head:
  ``probability`` (building), then, for models with contact/boundary channels,
  ``separators`` (``[batch, k, S, S]``, mapseg's separation). The exported graph
  therefore starts with a transpose and the map from 0..1 back to the model's
  own input range (0..255 for mapseg models: EfficientNet rescales inside), and
  ends with the sigmoid and a transpose. Deepness' settings are written as
  JSON-encoded ``metadata_props`` (:func:`deepness_metadata`).
* **mapseg** itself (``tile-infer``, ``evaluate``, QGIS' light engine) reads
  the Keras file's ``mapseg.json`` under the ``mapseg`` key, with ``output``
  set to ``"probabilities"`` and an ``onnx`` section saying how the engine's
  band-last, model-range windows map onto the graph's input
  (:mod:`mapseg_core.inference.onnx_runtime`).

The tile size is fixed (the model's ``input_size``), the batch is dynamic:
Deepness takes its tile size from the graph's input shape.

Conversion runs on TensorFlow with tf2onnx (the ``export`` extra). Keras'
own ``model.export(format="onnx")`` uses the same converter but leaves the
EfficientNet ``Normalization`` layer's mean and variance (eager tensors the
graph captures, not variables) as two extra graph inputs, which Deepness and
any other consumer would have to feed; :func:`_freeze_captures` turns them
back into constants.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from mapseg_core.atomic import atomic_path, check_output
from mapseg_core.errors import ConfigError, MapsegError, ModelError, OutputError
from mapseg_core.models.artifact import file_sha256, read_metadata
from mapseg_core.progress import Reporter, null_reporter
from mapseg_core.vectorize.pipeline import DEFAULT_POLISH

#: ONNX opset written by default: onnxruntime >= 1.14 and Deepness' (>= 1.16) run it.
DEFAULT_OPSET = 17

#: Name of the graph's input and output.
INPUT_NAME = "image"
OUTPUT_NAME = "probability"
#: Second output of models with contact/boundary channels: ``[batch, k, S, S]`` sigmoid.
SEPARATORS_NAME = "separators"


class ExporterMissing(MapsegError, ImportError):
    """tf2onnx or onnx is not installed."""

    exit_code = 2


def deepness_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Deepness' settings for a model with mapseg metadata ``meta`` (values not yet encoded).

    ``tiles_overlap`` covers the unreliable margin on both sides of a tile seam:
    Deepness pastes the centre of each tile, dropping half the overlap on every
    side, so an overlap of ``2 * receptive_margin`` pixels drops exactly the
    margin mapseg itself crops. ``seg_small_segment`` is the model's minimum
    building area in pixels at its GSD.
    """
    size = [int(v) for v in meta["input_size"]]
    if size[0] != size[1]:
        raise ConfigError(
            f"Deepness needs square tiles, the model takes {size[0]}x{size[1]}; "
            "train or export a model with a square input size"
        )
    tile = size[0]
    gsd = float(meta["gsd"])
    margin = int(meta.get("receptive_margin", 0))
    polish = {**DEFAULT_POLISH, **dict(meta.get("polish") or {})}
    min_area_px = float(polish["min_area_m2"]) / (gsd * gsd) if gsd > 0 else 0.0
    bands = int(meta["bands"])
    names = list(meta.get("class_names") or ["building"])
    class_names: Any = {str(k): name for k, name in enumerate(names)}
    extra = [c for c in (meta.get("channels") or ["building"])[1:]]
    if extra:
        # One sigmoid head per output (Deepness: a list of dicts, one per head): the
        # building head first, then the channels mapseg separates touching buildings with.
        class_names = [class_names, *({"0": name} for name in extra)]
    return {
        "model_type": "Segmentor",
        "class_names": class_names,
        "resolution": round(gsd * 100.0, 4),
        "tile_size": tile,
        "tiles_size": tile,
        "tiles_overlap": min(50, round(200.0 * margin / tile)),
        "seg_thresh": float(meta.get("threshold", 0.5)),
        "seg_small_segment": int(round(min_area_px)),
        # The graph takes Deepness' x/255 as it is: identity standardization, written
        # so the file says so (Deepness applies it only when both keys exist).
        "standardization_mean": [0.0] * bands,
        "standardization_std": [1.0] * bands,
    }


def input_range(meta: dict[str, Any]) -> tuple[float, float]:
    """The model's input range (``normalization`` of kind ``range``) as ``(min, max)``."""
    norm = dict(meta.get("normalization") or {})
    if norm.get("kind", "range") != "range":
        raise ModelError(
            f"the model's normalization is {norm.get('kind')!r}; only 'range' models can be "
            "exported (Deepness feeds pixels divided by 255)"
        )
    low, high = float(norm.get("min", 0.0)), float(norm.get("max", 255.0))
    if not high > low:
        raise ModelError(f"the model's input range {low}..{high} is empty; fix its metadata")
    return low, high


def onnx_metadata(meta: dict[str, Any], source: Path, opset: int) -> dict[str, Any]:
    """The mapseg metadata stored in the ONNX file: the Keras file's, for the ONNX graph."""
    low, high = input_range(meta)
    return {
        **meta,
        "output": "probabilities",
        "onnx": {
            "layout": "NCHW",
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            # The graph takes (x - input_min) / (input_max - input_min) for model-range x:
            # Deepness' uint8 / 255 when the model takes 0..255.
            "input_min": low,
            "input_max": high,
            "opset": opset,
            "source": source.name,
            "source_sha256": file_sha256(source),
        },
    }


def export_onnx(
    model_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
    report: Reporter = null_reporter,
) -> dict[str, Any]:
    """Write ``model_path`` (a mapseg ``.keras`` file) as an ONNX model, atomically.

    Args:
        model_path: a model written by ``mapseg train`` (or a run's checkpoint).
        output: target ``.onnx`` file.
        overwrite: replace an existing output.
        opset: ONNX opset version.
        report: receives ``{"event": "start", ...}`` once the inputs are checked,
            before the slow conversion, and ``{"event": "done", "summary": ...}``.

    Returns:
        A summary: ``output``, ``bytes``, ``seconds``, ``tile_size``, ``opset``
        and the ``deepness`` settings written.

    Raises:
        ModelError: not a mapseg model, or one that cannot be exported.
        OutputError, OutputExistsError: bad target.
        ExporterMissing: tf2onnx/onnx not installed.
    """
    started = time.perf_counter()
    model_path = Path(model_path)
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise OutputError(f"ONNX files end in .onnx, got {output.name}; rename the output")
    check_output(output, overwrite)
    if model_path.suffix.lower() == ".onnx":
        raise ModelError(f"{model_path} is already an ONNX model; pass the .keras file")
    if not 13 <= opset <= 23:
        raise ConfigError(f"--opset {opset} is out of range; use 13..23 (default {DEFAULT_OPSET})")
    meta = read_metadata(model_path)
    deepness = deepness_metadata(meta)
    props = {"mapseg": onnx_metadata(meta, model_path, opset), **deepness}
    _check_converters()
    report({"event": "start", "model": str(model_path), "output": str(output)})

    from mapseg_core.models.artifact import load_artifact

    model, _ = load_artifact(model_path)
    tf2onnx, onnx = _converters()
    proto = _convert(model, meta, tf2onnx, onnx, opset)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = json.dumps(value)
    proto.producer_name = "mapseg"
    proto.doc_string = (
        f"mapseg building segmentation ({meta.get('preset')}, {deepness['resolution']} cm/px); "
        "input uint8 RGB / 255, channels first; output building probability"
    )
    with atomic_path(output, suffix=".onnx") as tmp:
        onnx.save(proto, str(tmp))
    summary = {
        "output": str(output),
        "bytes": output.stat().st_size,
        "seconds": round(time.perf_counter() - started, 1),
        "tile_size": deepness["tile_size"],
        "opset": opset,
        "deepness": deepness,
    }
    report({"event": "done", "summary": summary})
    return summary


def _check_converters() -> None:
    """A one-line error naming the extra when tf2onnx or onnx is missing (before any import)."""
    import importlib.util

    for name in ("tf2onnx", "onnx"):
        if importlib.util.find_spec(name) is None:
            raise ExporterMissing(
                f"mapseg export needs {name}, which is not installed; install it: "
                "pip install 'mapseg[tensorflow,export]'"
            )


def _converters() -> tuple[Any, Any]:
    """tf2onnx and onnx, imported with TensorFlow's notices muted like Keras' (backend.py)."""
    from mapseg_core.backend import notices_wanted, quiet_stderr

    if notices_wanted():
        import onnx
        import tf2onnx
    else:
        with quiet_stderr():
            import onnx
            import tf2onnx
    return tf2onnx, onnx


def _convert(model: Any, meta: dict[str, Any], tf2onnx: Any, onnx: Any, opset: int) -> Any:
    """The ONNX graph of NCHW 0..1 in -> sigmoid NCHW out around ``model``."""
    from mapseg_core.backend import keras

    if keras.backend.backend() != "tensorflow":
        raise ModelError(
            f"mapseg export runs on the TensorFlow backend, not {keras.backend.backend()}; "
            "unset KERAS_BACKEND or set it to tensorflow"
        )
    import tensorflow as tf

    size = [int(v) for v in meta["input_size"]]
    bands = int(meta["bands"])
    low, high = input_range(meta)
    logits = str(meta.get("output", "logits")) == "logits"
    channels = len(meta.get("channels") or ["building"])
    spec = (tf.TensorSpec([None, bands, size[0], size[1]], tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=spec)
    def serve(image: Any) -> Any:
        x = tf.transpose(image, [0, 2, 3, 1]) * (high - low) + low
        y = model(x, training=False)
        y = tf.transpose(tf.sigmoid(y) if logits else y, [0, 3, 1, 2])
        if channels == 1:
            return {OUTPUT_NAME: y}
        # Deepness reads [B, 1, S, S] sigmoid heads: building first, contact/boundary apart.
        return {OUTPUT_NAME: y[:, :1], SEPARATORS_NAME: y[:, 1:]}

    constants = {
        inner.name: outer.numpy()
        for outer, inner in serve.get_concrete_function().graph.captures
        if outer.dtype != tf.resource
    }
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises many types for unsupported ops
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"tf2onnx cannot convert this model: {first[:200]}") from None
    _freeze_captures(proto, constants, onnx)
    order = [OUTPUT_NAME, SEPARATORS_NAME]
    outputs = sorted(proto.graph.output, key=lambda o: order.index(o.name))
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    return proto


def _freeze_captures(proto: Any, constants: dict[str, Any], onnx: Any) -> None:
    """Turn graph inputs that are captured constants into initializers; name the batch axis.

    Initializers no node reads any more (tf2onnx folded them) are dropped, so
    ONNX Runtime does not warn about them on every load.
    """
    import numpy as np
    from onnx import numpy_helper

    graph = proto.graph
    keep = [i for i in graph.input if i.name not in constants]
    for entry in graph.input:
        if entry.name in constants:
            value = np.asarray(constants[entry.name])
            graph.initializer.append(numpy_helper.from_array(value, entry.name))
    del graph.input[:]
    graph.input.extend(keep)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    if len(graph.input) != 1:
        raise ModelError(
            f"the exported graph has {len(graph.input)} inputs "
            f"({', '.join(i.name for i in graph.input)}); Deepness needs one"
        )
    onnx.checker.check_model(proto)


__all__ = ["DEFAULT_OPSET", "ExporterMissing", "deepness_metadata", "export_onnx"]
