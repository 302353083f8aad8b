"""``mapseg:checkengine``: which engine runs, its version, backend, GPU; what to fix."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputString,
)

from .. import engine as engine_client
from .algorithm import MapsegAlgorithm

#: Run by the engine's own Python: the Keras backend, its version and the visible GPUs.
#: (Used while the engine has no ``mapseg info --json`` command; see _describe().)
PROBE = """
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
info = {"backend": keras.backend.backend(), "keras": keras.__version__, "gpus": []}
if info["backend"] == "tensorflow":
    import tensorflow as tf
    info["backend_version"] = tf.__version__
    info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
elif info["backend"] == "torch":
    import torch
    info["backend_version"] = torch.__version__
    info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
elif info["backend"] == "jax":
    import jax
    info["backend_version"] = jax.__version__
    info["gpus"] = [str(d) for d in jax.devices() if d.platform == "gpu"]
print(json.dumps(info))
"""


class CheckEngineAlgorithm(MapsegAlgorithm):
    """Finds the engine, asks its version and backend; raises with the fix when broken."""

    NAME = "checkengine"
    DISPLAY_NAME = "Check mapseg engine"
    GROUP = "Engine"
    GROUP_ID = "engine"
    HELP = (
        "Reports which mapseg engine the algorithms use (and why: plugin setting, "
        "MAPSEG_ENGINE, private environment or PATH), its version, its deep-learning backend "
        "and whether it sees a GPU. Fails with what to do when the engine is missing or "
        "broken."
    )

    ENGINE = "ENGINE"
    SOURCE = "SOURCE"
    VERSION = "VERSION"
    BACKEND = "BACKEND"
    GPU = "GPU"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addOutput(QgsProcessingOutputString(self.ENGINE, self.tr("Engine executable")))
        self.addOutput(QgsProcessingOutputString(self.SOURCE, self.tr("Found by")))
        self.addOutput(QgsProcessingOutputString(self.VERSION, self.tr("Engine version")))
        self.addOutput(QgsProcessingOutputString(self.BACKEND, self.tr("Backend")))
        self.addOutput(QgsProcessingOutputBoolean(self.GPU, self.tr("GPU visible")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        feedback.setProgress(0)
        found = engine_client.find_engine()
        feedback.pushInfo(self.tr("engine: {exe} (found by {source})").format(
            exe=found.executable, source=found.source))
        version = self._version(found, feedback)
        feedback.setProgress(30)
        info = self._describe(found, feedback)
        backend = "{} {}".format(info.get("backend", "?"), info.get("backend_version", "")).strip()
        gpus = list(info.get("gpus") or [])
        feedback.pushInfo(self.tr("version: {v}").format(v=version))
        feedback.pushInfo(
            self.tr("backend: {b} (Keras {k})").format(b=backend, k=info.get("keras"))
        )
        if gpus:
            feedback.pushInfo(self.tr("GPU: {gpus}").format(gpus=", ".join(map(str, gpus))))
        else:
            feedback.pushInfo(
                self.tr("GPU: none visible; the engine runs on the CPU (fine for inference on "
                        "small areas; training the b0/seed-b4 presets wants a GPU: install the "
                        "engine with a GPU build of its backend, e.g. pip install "
                        "'tensorflow[and-cuda]', in the engine's environment)")
            )
        feedback.setProgress(100)
        return {
            self.ENGINE: found.executable,
            self.SOURCE: found.source,
            self.VERSION: version,
            self.BACKEND: backend,
            self.GPU: bool(gpus),
        }

    def _version(self, found: engine_client.Engine, feedback) -> str:
        """``mapseg --version`` (fast: the CLI imports no deep-learning code for it)."""
        try:
            proc = engine_client.run_quiet([found.executable, "--version"], feedback, timeout=60)
        except OSError as exc:
            raise QgsProcessingException(self._broken(found, str(exc))) from exc
        if proc.returncode != 0 or "mapseg" not in proc.stdout:
            raise QgsProcessingException(
                self._broken(found, (proc.stderr or proc.stdout).strip()[-500:])
            )
        return proc.stdout.strip().split()[-1]

    def _describe(self, found: engine_client.Engine, feedback) -> dict[str, Any]:
        """Backend and GPUs, from the engine's Python (imports the backend: seconds)."""
        python = engine_client.engine_python(found.executable)
        if python is None:
            feedback.reportError(
                self.tr("cannot tell which Python runs {exe}; backend and GPU unknown")
                .format(exe=found.executable), False)
            return {}
        try:
            proc = engine_client.run_quiet([python, "-c", PROBE], feedback, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise QgsProcessingException(self._broken(found, str(exc))) from exc
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise QgsProcessingException(
                self._broken(found, (proc.stderr or proc.stdout).strip()[-500:])
            )
        return dict(json.loads(lines[-1]))

    def _broken(self, found: engine_client.Engine, detail: str) -> str:
        return self.tr(
            "the mapseg engine {exe} does not work: {detail}. Reinstall it (run “Set up mapseg "
            "engine”, or pip install --force-reinstall 'mapseg[tensorflow]' in its environment) "
            "or point Processing options → Providers → mapseg to a working mapseg executable."
        ).format(exe=found.executable, detail=detail or self.tr("no message"))
