"""Atomic, durable writes: fsync before and after the rename, several outputs all or none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mapseg_core import atomic
from mapseg_core.atomic import commit_all, write_bytes
from mapseg_core.errors import OutputError


def _record_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Log every fsync (by what the descriptor is) and rename, in order."""
    log: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        log.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        log.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    return log


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell fds apart")
def test_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    log = _record_syncs(monkeypatch)
    write_bytes(tmp_path / "a.json", b"{}")
    assert log == ["fsync-file", "replace", "fsync-dir"]
    assert (tmp_path / "a.json").read_bytes() == b"{}"


def _staged(tmp_path: Path, names: list[str]) -> list[tuple[Path, Path]]:
    moves = []
    for name in names:
        tmp = tmp_path / f".{name}.tmp"
        tmp.write_text(f"new {name}")
        moves.append((tmp, tmp_path / name))
    return moves


def test_commit_all_places_every_file(tmp_path):
    moves = _staged(tmp_path, ["a.gpkg", "p.tif", "m.tif"])
    (tmp_path / "p.tif").write_text("old p")
    commit_all(moves)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gpkg", "m.tif", "p.tif"]
    assert (tmp_path / "p.tif").read_text() == "new p.tif"


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_failure_between_renames_leaves_none_and_restores_the_old(tmp_path, monkeypatch, fail_at):
    moves = _staged(tmp_path, ["a.gpkg", "p.tif", "m.tif"])
    (tmp_path / "m.tif").write_text("old m")  # an --overwrite target
    real = os.replace
    calls = {"new": 0}

    def flaky(src, dst) -> None:
        if Path(src).name.endswith(".tmp"):  # a staged file going into place
            calls["new"] += 1
            if calls["new"] == fail_at:
                raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OutputError, match="nothing was replaced"):
        commit_all(moves)
    assert not (tmp_path / "a.gpkg").exists() and not (tmp_path / "p.tif").exists()
    assert (tmp_path / "m.tif").read_text() == "old m"
    assert all(tmp.exists() for tmp, _ in moves)  # back to the staged names, for the caller
    assert not list(tmp_path.glob(".*.bak-*"))
