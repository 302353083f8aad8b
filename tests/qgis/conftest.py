"""Fixtures of the QGIS tests: real QGIS (offscreen), the packaged plugin, the project's engine.

These tests run under the Python that has PyQGIS (Debian's ``/usr/bin/python3``,
see scripts/test.sh), never under the project's environment: TensorFlow and
QGIS cannot share a process. The project's pytest skips this folder (below).
The plugin under test is the zip that ``qgis-plugin-ci package`` builds,
unpacked into a temporary QGIS profile as "Install from ZIP" does; the engine
is ``<repo>/.venv/bin/mapseg``; inputs are written by ``make_data.py`` with the
project's Python.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from support import plugin_version, set_engine

try:
    import qgis.core  # noqa: F401
except ImportError:  # the project's environment: these tests belong to QGIS's Python
    collect_ignore_glob = ["test_*.py"]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / ("Scripts" if sys.platform == "win32" else "bin")
#: The engine the tests drive: the project's own ``mapseg``.
ENGINE = VENV_BIN / "mapseg"
#: Debian's home of QGIS's bundled Python plugins (``processing``).
QGIS_PYTHON_PLUGINS = Path("/usr/share/qgis/python/plugins")


@pytest.fixture(scope="session")
def engine() -> Path:
    """``<repo>/.venv/bin/mapseg`` (scripts/setup.sh makes it)."""
    if not ENGINE.is_file():
        pytest.fail(f"{ENGINE} not found: run scripts/setup.sh first")
    return ENGINE


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory, engine: Path) -> dict[str, Any]:
    """Stub model, synthetic rasters, a COCO set and bad inputs (see make_data.py)."""
    out = tmp_path_factory.mktemp("data")
    proc = subprocess.run(
        [str(VENV_BIN / "python"), str(Path(__file__).with_name("make_data.py")), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests"), "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: (v if k == "buildings" else Path(v)) for k, v in written.items()}


@pytest.fixture(scope="session")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin as users get it: ``qgis-plugin-ci package VERSION`` (see plugin_zip.py)."""
    from plugin_zip import package

    return package(plugin_version(), tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QGIS profiles folder (``QGIS_CUSTOM_CONFIG_PATH``) with an empty default profile."""
    root = tmp_path_factory.mktemp("qgis-profiles")
    (root / "profiles" / "default" / "python" / "plugins").mkdir(parents=True)
    return root


@pytest.fixture(scope="session")
def qgis_app(profiles: Path, plugin_zip: Path, engine: Path):
    """QGIS with Processing and the mapseg plugin installed from its zip; yields the profile.

    QGIS segfaults at exit while layers are still referenced, so the teardown
    clears the project and collects garbage before ``exitQgis()``.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    profile = profiles / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    with zipfile.ZipFile(plugin_zip) as zf:  # what "Install from ZIP" does
        zf.extractall(plugins)

    from qgis.core import QgsApplication, QgsProject, QgsSettings
    from qgis.PyQt.QtCore import QCoreApplication, QSettings

    # What QGIS's main() does, so settings land in the profile where qgis_process reads them.
    QCoreApplication.setOrganizationName("QGIS")
    QCoreApplication.setOrganizationDomain("qgis.org")
    QCoreApplication.setApplicationName("QGIS3")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(profile))
    app = QgsApplication([], True, str(profile))
    app.initQgis()
    QgsSettings().setValue("PythonPlugins/mapseg", True)  # "Install from ZIP" enables it
    # What QGIS's own Python start-up does: bundled plugins, then the profile's.
    import qgis.utils

    for folder in (str(QGIS_PYTHON_PLUGINS), str(plugins)):
        if folder not in sys.path:
            sys.path.append(folder)
        qgis.utils.plugin_paths.append(folder)
    from processing.core.Processing import Processing

    Processing.initialize()
    assert qgis.utils.loadPlugin("mapseg"), "the mapseg plugin did not import"
    assert qgis.utils.startProcessingPlugin("mapseg"), "the mapseg plugin did not start"
    set_engine(str(engine))
    yield profile
    qgis.utils.unloadPlugin("mapseg")
    QgsProject.instance().clear()
    gc.collect()
    app.exitQgis()


@pytest.fixture
def use_engine(qgis_app, engine: Path):
    """Restore the engine setting after a test that changes it."""
    yield set_engine
    set_engine(str(engine))


@pytest.fixture
def feedback(qgis_app):
    """A ``QgsProcessingFeedback`` that records what the algorithm reported."""
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.infos: list[str] = []
            self.errors: list[str] = []
            self.commands: list[str] = []
            self.progress_values: list[float] = []
            self.progressChanged.connect(self.progress_values.append)

        def pushInfo(self, info: str) -> None:  # noqa: N802
            self.infos.append(info)

        def pushCommandInfo(self, info: str) -> None:  # noqa: N802
            self.commands.append(info)

        def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
            self.errors.append(error)

    return Recorder()
