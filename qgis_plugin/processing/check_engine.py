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
        if info.get("keras_version"):
            feedback.pushInfo(
                self.tr("backend: {b} (Keras {k})").format(b=backend, k=info["keras_version"])
            )
        else:
            feedback.pushInfo(
                self.tr("backend: {b} (light engine: runs .onnx models; training and .keras "
                        "models need the Full engine)").format(b=backend)
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
        """Backend and GPUs: ``mapseg info --json`` (imports the backend: seconds)."""
        try:
            proc = engine_client.run_quiet(
                [found.executable, "info", "--json"], feedback, timeout=300
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise QgsProcessingException(self._broken(found, str(exc))) from exc
        try:
            info = json.loads(proc.stdout)
        except ValueError:
            info = None
        if proc.returncode != 0 or not isinstance(info, dict):
            raise QgsProcessingException(
                self._broken(found, (proc.stderr or proc.stdout).strip()[-500:])
            )
        return info

    def _broken(self, found: engine_client.Engine, detail: str) -> str:
        return self.tr(
            "the mapseg engine {exe} does not work: {detail}. Reinstall it (run “Set up mapseg "
            "engine”, or pip install --force-reinstall 'mapseg[tensorflow]' in its environment) "
            "or point Processing options → Providers → mapseg to a working mapseg executable."
        ).format(exe=found.executable, detail=detail or self.tr("no message"))
