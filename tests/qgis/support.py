"""Helpers of the QGIS tests (imported under QGIS's Python only)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: A real orthophoto tile (EPSG:26986, declares nodata=255), when ../shared is there.
MASSACHUSETTS = ROOT.parent / "shared" / "data" / "massachusetts" / "22978945_15.tif"


def plugin_version() -> str:
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    return meta["general"]["version"]


def set_engine(path: str) -> None:
    """Set Processing options → Providers → mapseg → engine executable."""
    from qgis.core import QgsSettings

    # Written where Processing keeps it (ProcessingConfig refuses paths that do not exist).
    settings = QgsSettings()
    settings.setValue("Processing/Configuration/MAPSEG_ENGINE", path)
    settings.sync()


def read_layer(path: Path | str, layer: str = "buildings") -> set[tuple[str, float, str]]:
    """A GeoPackage layer as a set of (normalized WKT, area_m2, source): comparable as sets."""
    from qgis.core import QgsVectorLayer

    vl = QgsVectorLayer(f"{path}|layername={layer}", "check", "ogr")
    assert vl.isValid(), f"cannot open {path}"
    rows = set()
    for feature in vl.getFeatures():
        geometry = feature.geometry()
        geometry.normalize()
        rows.add((geometry.asWkt(6), round(feature["area_m2"], 4), feature["source"]))
    del vl
    return rows


def cli_reference(engine: Path, raster: Path, model: Path, out: Path, *options: str) -> Path:
    """What ``mapseg tile-infer`` writes from a shell for the same input."""
    proc = subprocess.run(
        [
            str(engine),
            "tile-infer",
            str(raster),
            "-o",
            str(out),
            "--model",
            str(model),
            "-q",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out
