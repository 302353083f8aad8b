"""``mapseg:setupengine``: a private environment, pip install, the engine setting updated."""

from __future__ import annotations

import base64
import hashlib
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

VERSION = "9.9.9"


def _fake_engine_wheel(folder: Path) -> Path:
    """A wheel whose ``mapseg`` console script only answers ``--version`` (installs offline)."""
    files = {
        "fakemapseg/__init__.py": (
            "import sys\n\ndef main():\n"
            f"    print('mapseg, version {VERSION}') if '--version' in sys.argv else sys.exit(2)\n"
        ),
        f"mapseg-{VERSION}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: mapseg\nVersion: {VERSION}\n"
        ),
        f"mapseg-{VERSION}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"mapseg-{VERSION}.dist-info/entry_points.txt": (
            "[console_scripts]\nmapseg = fakemapseg:main\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"mapseg-{VERSION}.dist-info/RECORD,,")
    files[f"mapseg-{VERSION}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"mapseg-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


@pytest.mark.skipif(shutil.which("python3") is None, reason="needs a python3 with venv")
def test_creates_the_environment_and_sets_the_engine(qgis_app, use_engine, feedback, tmp_path):
    import processing
    from qgis.core import QgsSettings

    wheel = _fake_engine_wheel(tmp_path)
    folder = tmp_path / "engine-env"
    result = processing.run(
        "mapseg:setupengine",
        {
            "PYTHON": sys.executable,
            "PACKAGE": str(wheel),
            "PIP_ARGS": "--no-index",
            "FOLDER": str(folder),
        },
        feedback=feedback,
    )
    assert result["ENGINE"] == str(folder / "bin" / "mapseg")
    assert QgsSettings().value("Processing/Configuration/MAPSEG_ENGINE") == result["ENGINE"]
    assert feedback.progress_values[-1] == 100.0


def test_a_failed_install_leaves_no_environment(qgis_app, use_engine, feedback, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    folder = tmp_path / "engine-env"
    with pytest.raises(QgsProcessingException, match="pip could not install"):
        processing.run(
            "mapseg:setupengine",
            {
                "PYTHON": sys.executable,
                "PACKAGE": str(tmp_path / "missing.whl"),
                "PIP_ARGS": "--no-index",
                "FOLDER": str(folder),
            },
            feedback=feedback,
        )
    assert not folder.exists()


def test_the_engine_choice_offers_light_onnx_and_full_tensorflow(qgis_app):
    """The light engine (ONNX Runtime, no TensorFlow) and the TensorFlow one; Light is the
    default (the bundled model ships as .onnx too); a given wheel or folder wins."""
    import qgis.utils
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById("mapseg:setupengine")
    kind = algorithm.parameterDefinition("KIND")
    assert kind.defaultValue() == 0
    assert kind.options()[0].startswith("Light: ONNX Runtime")
    assert "TensorFlow" in kind.options()[1] and "trains" in kind.options()[1]
    assert algorithm.parameterDefinition("PACKAGE").flags() & kind.FlagOptional
    module = sys.modules[type(algorithm).__module__]
    assert module.package_to_install(0, "") == "mapseg[onnx]"
    assert module.package_to_install(1, " ") == "mapseg[tensorflow,onnx]"
    assert module.package_to_install(0, "dist/mapseg.whl") == "dist/mapseg.whl"
    assert qgis.utils.plugins["mapseg"] is not None
