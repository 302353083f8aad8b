"""``mapseg:setupengine``: create a private Python environment and pip-install mapseg into it.

The one-time path for users without an engine. The environment lives in the
QGIS profile (``<profile>/mapseg/engine``), is made by a Python other than
QGIS's own site-packages (``python -m venv``, no system site packages, and
QGIS's PYTHONPATH/PYTHONHOME removed), so TensorFlow and its numpy never meet
QGIS's. On success the new ``mapseg`` becomes the engine in Processing options.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from .. import engine as engine_client
from .algorithm import MapsegAlgorithm

#: Engine kinds offered, in the order of the choice. Installed sizes measured in a fresh
#: venv (docs/onnx.md): the light one is the tiling engine (GDAL, OpenCV) and ONNX
#: Runtime; the full one adds Keras, TensorFlow and the training packages.
ENGINE_KINDS = (
    ("mapseg[onnx]", "Light: ONNX Runtime, about 0.7 GB; runs the bundled model and .onnx files"),
    ("mapseg[tensorflow,onnx]", "Full: TensorFlow, about 2.3 GB; also trains, runs .keras"),
)
#: The kind chosen by default: Light, since the bundled model also ships as .onnx, so
#: "Segment buildings" with no model file runs on it.
DEFAULT_KIND = 0
#: What pip installs by default.
DEFAULT_PACKAGE = ENGINE_KINDS[DEFAULT_KIND][0]


def package_to_install(kind: int, package: str) -> str:
    """The pip requirement: ``package`` when given (a wheel, a folder), else the kind's."""
    if package.strip():
        return package.strip()
    return ENGINE_KINDS[min(max(kind, 0), len(ENGINE_KINDS) - 1)][0]
#: Checks a candidate interpreter: a Python >= 3.10 with venv.
_PYTHON_CHECK = "import sys, venv, ensurepip; print(sys.version_info >= (3, 10))"


class SetupEngineAlgorithm(MapsegAlgorithm):
    """``python -m venv <profile>/mapseg/engine`` + ``pip install mapseg[onnx]`` or TensorFlow."""

    NAME = "setupengine"
    DISPLAY_NAME = "Set up mapseg engine"
    GROUP = "Engine"
    GROUP_ID = "engine"
    HELP = (
        "One-time setup: creates a private Python environment in your QGIS profile "
        "(mapseg/engine) and installs the mapseg engine into it with pip "
        "(about 0.7 GB, 2.3 GB with TensorFlow; needs internet or a package index). QGIS's "
        "own Python "
        "is left untouched. The new engine becomes the one set in Processing options → "
        "Providers → mapseg. Run it again to upgrade.<br>"
        "<b>Python</b>: a Python 3.10 to 3.12 to build the environment with (empty: "
        "python3/python on PATH, then the Python that came with QGIS).<br>"
        "<b>Engine</b>: <i>Light</i> (the default) installs ONNX Runtime and runs the "
        "bundled model and .onnx models written by mapseg export; <i>Full</i> installs "
        "TensorFlow as well, needed to train and to run .keras models.<br>"
        "<b>Package</b>: empty for the engine chosen above, or a wheel file or a "
        "source folder to install instead.<br>"
        "<b>Extra pip arguments</b>: e.g. --index-url URL, or --no-index --find-links DIR "
        "for offline installs."
    )

    PYTHON = "PYTHON"
    KIND = "KIND"
    PACKAGE = "PACKAGE"
    PIP_ARGS = "PIP_ARGS"
    FOLDER = "FOLDER"
    ENGINE = "ENGINE"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFile(
                self.PYTHON,
                self.tr("Python to create the environment with (empty: find one)"),
                behavior=QgsProcessingParameterFile.File,
                optional=True,
                # QGIS's default "All files (*.*)" refuses names without a dot (python3).
                fileFilter=self.tr("All files (*)"),
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.KIND,
                self.tr("Engine"),
                options=[self.tr(label) for _, label in ENGINE_KINDS],
                defaultValue=DEFAULT_KIND,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.PACKAGE,
                self.tr("Package to install instead (empty: the engine above)"),
                optional=True,
            )
        )
        advanced = [
            QgsProcessingParameterString(
                self.PIP_ARGS, self.tr("Extra pip arguments"), optional=True
            ),
            QgsProcessingParameterString(
                self.FOLDER,
                self.tr("Environment folder (empty: mapseg/engine in the QGIS profile)"),
                optional=True,
            ),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addOutput(QgsProcessingOutputString(self.ENGINE, self.tr("Engine executable")))

    def flags(self):
        """Not in the modeller: it changes the installation, not data."""
        return super().flags() | self.FlagHideFromModeler

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        feedback.setProgress(0)
        python = self._python(parameters, context, feedback)
        folder_text = self.parameterAsString(parameters, self.FOLDER, context).strip()
        folder = Path(folder_text) if folder_text else engine_client.private_environment()
        package = package_to_install(
            self.parameterAsEnum(parameters, self.KIND, context),
            self.parameterAsString(parameters, self.PACKAGE, context),
        )
        pip_args = self.parameterAsString(parameters, self.PIP_ARGS, context).split()
        created = not folder.exists()
        try:
            return self._install(python, folder, package, pip_args, feedback)
        except QgsProcessingException:
            if created:
                shutil.rmtree(folder, ignore_errors=True)
            raise

    def _install(self, python: str, folder: Path, package: str, pip_args: list[str], feedback):
        env = _clean_env()
        venv_python = engine_client.environment_executable(folder, "python")
        if not venv_python.is_file():
            feedback.pushInfo(self.tr("creating the environment {path}").format(path=folder))
            folder.parent.mkdir(parents=True, exist_ok=True)
            self._run([python, "-m", "venv", str(folder)], feedback, env)
        feedback.setProgress(15)
        feedback.pushInfo(
            self.tr("installing {package} ({size}; it can take several minutes)").format(
                package=package,
                size=self.tr("about 2.3 GB" if "tensorflow" in package else "about 0.7 GB"),
            )
        )
        steps = {"n": 0}

        def on_pip_line(name: str, line: str) -> None:
            feedback.pushConsoleInfo(line)
            if line.startswith(("Collecting", "Processing ")):
                steps["n"] += 1
                feedback.setProgress(min(80.0, 15.0 + 1.5 * steps["n"]))
            elif line.startswith("Installing collected packages"):
                feedback.setProgress(85)

        cmd = [str(venv_python), "-m", "pip", "install", "--upgrade", "--progress-bar", "off",
               "--disable-pip-version-check", *pip_args, package]
        code = engine_client.stream(cmd, feedback, on_pip_line, env=env)
        if code != 0:
            raise QgsProcessingException(
                self.tr("pip could not install {package} (exit {code}); see the log above. "
                        "Offline? Pass a wheel file as the package, or --no-index --find-links "
                        "DIR as extra pip arguments").format(package=package, code=code)
            )
        feedback.setProgress(95)
        executable = engine_client.environment_executable(folder)
        check = engine_client.run_quiet([str(executable), "--version"], feedback, timeout=120)
        if check.returncode != 0:
            raise QgsProcessingException(
                self.tr("{package} installed but {exe} --version fails: {err}").format(
                    package=package, exe=executable, err=check.stderr.strip()[-300:])
            )
        engine_client.set_configured_engine(str(executable))
        feedback.pushInfo(self.tr("engine ready: {v} at {exe}; it is now set in Processing "
                                  "options → Providers → mapseg").format(
            v=check.stdout.strip(), exe=executable))
        feedback.setProgress(100)
        return {self.ENGINE: str(executable)}

    def _run(self, cmd: list[str], feedback, env: dict[str, str]) -> None:
        tail: list[str] = []

        def on_line(name: str, line: str) -> None:
            feedback.pushConsoleInfo(line)
            tail.append(line)

        if engine_client.stream(cmd, feedback, on_line, env=env) != 0:
            raise QgsProcessingException(
                self.tr("{cmd} failed: {err}. On Debian/Ubuntu install python3-venv; or choose "
                        "another Python").format(cmd=" ".join(cmd), err=" | ".join(tail[-3:]))
            )

    def _python(self, parameters, context, feedback) -> str:
        """The interpreter for ``-m venv``: the parameter, else the first that passes the check."""
        given = self.parameterAsFile(parameters, self.PYTHON, context)
        candidates = [given] if given else _candidates()
        for candidate in candidates:
            try:
                proc = engine_client.run_quiet([candidate, "-c", _PYTHON_CHECK], feedback, 60)
            except (OSError, QgsProcessingException):
                continue
            if proc.returncode == 0 and proc.stdout.strip() == "True":
                feedback.pushInfo(self.tr("using Python {python}").format(python=candidate))
                return candidate
        raise QgsProcessingException(
            self.tr("no usable Python found ({tried}): the engine needs Python 3.10 to 3.12 "
                    "with venv (Debian/Ubuntu: apt install python3-venv; Windows/macOS: "
                    "python.org). Give its path as the Python parameter.")
            .format(tried=", ".join(candidates) or self.tr("none on PATH"))
        )


def _candidates() -> list[str]:
    """python3/python on PATH, then the Python shipped with QGIS (Windows, macOS)."""
    found = []
    for name in ("python3", "python"):
        path = shutil.which(name)
        if path and path not in found:
            found.append(path)
    for base in (sys.exec_prefix, sys.base_prefix):
        for name in ("python.exe", "python3.exe", "bin/python3"):
            path = os.path.join(base, name)
            if os.path.isfile(path) and path not in found:
                found.append(path)
    return found


def _clean_env() -> dict[str, str]:
    """The engine environment without a virtualenv QGIS may have been started from."""
    env = engine_client.engine_environment()
    env.pop("VIRTUAL_ENV", None)
    env.pop("PIP_REQUIRE_VIRTUALENV", None)
    return env
