"""requirements/lock.txt: the tested versions, consistent with pyproject.toml.

The package's own dependencies stay ranges (pyproject.toml); the lock pins the
set CI tested and scripts/setup.sh installs. These tests fail when someone
edits one without refreshing the other (`bash scripts/lock.sh`).
"""

from __future__ import annotations

import platform
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
#: The extras scripts/setup.sh installs (and scripts/lock.sh resolves).
EXTRAS = ("tensorflow", "distributed", "dev")
#: The platform the lock is resolved for (scripts/lock.sh).
LOCK_ENV = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"lock line {line!r} is not NAME==VERSION"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _requirements() -> list[Requirement]:
    """The base dependencies and those of EXTRAS, ``mapseg[x]`` self-references expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(EXTRAS), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == "mapseg":
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


def test_every_dependency_is_pinned_within_its_range():
    pins = _pins()
    for req in _requirements():
        if req.marker is not None and not req.marker.evaluate(LOCK_ENV):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in the lock: run scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"lock pins {req.name}=={pins[name]} outside pyproject.toml's {req.specifier}: "
            "run scripts/lock.sh"
        )


def test_pyproject_keeps_ranges_not_pins():
    for req in _requirements():
        assert not any(s.operator in ("==", "===") for s in req.specifier), (
            f"{req} pins an exact version; a library states ranges, the lock pins"
        )


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11)
    or platform.system() != "Linux"
    or platform.machine() != "x86_64",
    reason="the lock is for CPython 3.11 on Linux x86_64; setup.sh resolves ranges elsewhere",
)
def test_the_environment_runs_the_locked_versions():
    """scripts/setup.sh installed exactly the lock (what CI tested)."""
    wrong = {}
    for name, version in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, None)
            continue
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, f"(locked, installed) differ; run scripts/setup.sh: {wrong}"
