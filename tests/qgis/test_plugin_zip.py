"""The zip from ``qgis-plugin-ci package``: one folder named mapseg, installable, loaded."""

from __future__ import annotations

import configparser
import zipfile
from pathlib import Path

from support import plugin_version


def test_zip_has_one_mapseg_folder_with_the_metadata(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
        metadata = zf.read("mapseg/metadata.txt").decode("utf-8")
    assert {n.split("/")[0] for n in names} == {"mapseg"}
    assert {"mapseg/__init__.py", "mapseg/processing/provider.py"} <= set(names)
    assert not [n for n in names if n.endswith((".pyc", ".gitignore", ".gitattributes"))]
    meta = configparser.ConfigParser()
    meta.read_string(metadata)
    assert meta["general"]["version"] == plugin_version()
    assert meta["general"]["hasProcessingProvider"] == "yes"
    assert meta["general"]["qgisMinimumVersion"] == "3.22"


def test_the_plugin_was_loaded_from_the_unpacked_zip(qgis_app):
    import sys

    from qgis.core import QgsApplication

    module = sys.modules["mapseg"]
    assert Path(module.__file__).resolve().is_relative_to(qgis_app.resolve())
    provider = QgsApplication.processingRegistry().providerById("mapseg")
    assert provider is not None
    assert {a.name() for a in provider.algorithms()} >= {
        "segmentbuildings",
        "trainmodel",
        "checkengine",
        "setupengine",
    }


def test_plugin_imports_nothing_but_pyqgis_and_the_standard_library():
    """The plugin must install into any QGIS: no numpy, keras, mapseg_core..."""
    import ast
    import sys

    allowed = set(sys.stdlib_module_names) | {"qgis", "processing"}
    root = Path(__file__).resolve().parents[2] / "qgis_plugin"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = [(node.module or "").split(".")[0]]
            else:
                continue
            assert set(tops) <= allowed, f"{path.name} imports {tops}"
