"""The distribution: one version, the CLI installed under a non-generic name."""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
from pathlib import Path

import mapseg_core

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_the_same_in_metadata_txt_and_the_package():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    assert meta["general"]["version"] == mapseg_core.__version__


def test_cli_is_installed_as_mapseg_cli_not_cli():
    top_level = importlib.metadata.distribution("mapseg").read_text("top_level.txt") or ""
    assert sorted(top_level.split()) == ["mapseg_cli", "mapseg_core"]
    assert importlib.util.find_spec("mapseg_cli.main") is not None
    entry = importlib.metadata.distribution("mapseg").entry_points
    assert [e.value for e in entry if e.name == "mapseg"] == ["mapseg_cli.main:cli"]


def test_every_engine_package_is_listed_in_pyproject():
    """A package missing from pyproject's list would vanish from a wheel install."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "mapseg_core").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
