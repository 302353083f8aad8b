"""``mapseg info``: which engine this is, its backend, GPUs and default model."""

from __future__ import annotations

import json
import sys

import click

from mapseg_cli.options import json_output, verbosity

_HELP = """Report the engine: version, Python, Keras backend (or ONNX Runtime), GPUs, default model.

\b
$ mapseg info
$ mapseg info --json
"""


#: ONNX Runtime execution providers that run on a GPU.
GPU_PROVIDERS = (
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)


@click.command("info", help=_HELP)
@json_output
@verbosity
def info(as_json: bool) -> None:
    from mapseg_core import __version__
    from mapseg_core.errors import ModelError
    from mapseg_core.models.artifact import bundled_model_path, read_metadata

    report: dict[str, object] = {
        "mapseg_version": __version__,
        "python": sys.executable,
        **_runtime(),
    }
    try:
        path = bundled_model_path()
        meta = read_metadata(path)
        report["default_model"] = {
            "path": str(path),
            "preset": meta.get("preset"),
            "gsd": meta.get("gsd"),
        }
    except ModelError as exc:
        report["default_model"] = None
        report["default_model_problem"] = str(exc)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        click.echo(f"{key}: {value}")


def _runtime() -> dict[str, object]:
    """The Keras backend and its GPUs; ONNX Runtime on a light engine without Keras.

    Raises:
        BackendError: neither is installed (the message names the extras).
    """
    from mapseg_core.models.artifact import installed

    if not installed("keras") and installed("onnxruntime"):
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        return {
            "keras_version": None,
            "backend": "onnxruntime",
            "backend_version": onnxruntime.__version__,
            "gpus": [p for p in providers if p in GPU_PROVIDERS],
        }
    from mapseg_core.backend import keras

    backend = keras.backend.backend()
    return {
        "keras_version": keras.__version__,
        "backend": backend,
        "backend_version": _version_of(backend),
        "gpus": _gpus(backend),
    }


def _version_of(backend: str) -> str | None:
    import importlib.metadata

    name = {"tensorflow": "tensorflow-cpu"}.get(backend, backend)
    for dist in (name, backend):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gpus(backend: str) -> list[str]:
    """Names of the GPUs the active Keras backend can see."""
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver must not break the report
        return []
    return []
