"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# albumentations asks PyPI for updates at import; tests run offline and must not wait on it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from helpers import CocoFixture, make_coco  # noqa: E402

# mapseg_core binds GDAL's SQLite (with R*Tree) before any test module imports Keras
# or TensorFlow (see mapseg_core/__init__.py), whatever order the tests are collected in.
import mapseg_core  # noqa: E402, F401

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real imagery); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            "../shared/data not found: real-data tests need the shared folder beside the repo"
        )
    return SHARED_DATA


@pytest.fixture
def coco_set(tmp_path: Path) -> CocoFixture:
    """A tiny generated COCO set (see :func:`helpers.make_coco`)."""
    return make_coco(tmp_path)


@pytest.fixture(scope="session")
def stub_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The roof-colour 1x1-conv stub as a mapseg model file (see :mod:`rasters`)."""
    from rasters import make_stub_model

    return make_stub_model(tmp_path_factory.mktemp("stub") / "stub.keras")


@pytest.fixture
def scene_raster(tmp_path: Path) -> tuple[Path, list]:
    """A 160x200 synthetic RGB GeoTIFF (EPSG:32633, 0.5 m) and its buildings in pixels."""
    from rasters import scene, write_raster

    img, shapes = scene()
    return write_raster(tmp_path / "scene.tif", img), shapes


@pytest.fixture(scope="session")
def stub_onnx(stub_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stub model exported with ``mapseg export`` (64x64 tiles, NCHW, sigmoid)."""
    from mapseg_core.models.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("stub-onnx") / "stub.onnx"
    export_onnx(stub_model, out)
    return out
