"""Atomic, durable file writes: a temporary file in the target's folder, then a rename.

``os.replace`` within one file system is atomic: readers see the old file or
the new one, never half of one, and a crash leaves at most a hidden
``.name.*`` temporary beside the target. A rename is only *durable* when the
file's data reached the disk before it (``fsync`` the file: otherwise a power
cut can leave a complete-looking name over empty blocks) and the folder entry
after it (``fsync`` the folder). Every mapseg output goes through
:func:`replace_durably` (one file) or :func:`commit_all` (several outputs of
one run: all or none).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mapseg_core.errors import OutputError, OutputExistsError


def check_output(path: str | os.PathLike[str], overwrite: bool, option: str = "-o") -> Path:
    """Refuse an output that exists (without ``overwrite``) or cannot be written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the folder is missing or not writable, or ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; pass a file name to {option}")
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output {path} exists; pass --overwrite or choose another {option}"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or change {option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {parent} is not writable; choose another {option}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Args:
        path: the final file.
        suffix: suffix of the temporary name (some writers choose the format by it,
            e.g. Keras needs ``.keras``).

    Raises:
        OutputError: the folder cannot be written.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise OutputError(
            f"cannot write {target} ({exc.strerror or type(exc).__name__}); "
            "check that the folder exists and is writable"
        ) from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); outputs get the usual umask rights.
        os.chmod(tmp, 0o666 & ~_umask())
        replace_durably(Path(tmp), target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a closed file's data to the disk (before renaming it into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (after a rename in it); a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows: folders cannot be opened, renames are journalled by NTFS
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and /proc-like mounts) refuse fsync on folders
        pass
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """``fsync`` ``tmp``, rename it onto ``target``, ``fsync`` the folder."""
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_dir(Path(target).parent)


def commit_all(moves: Sequence[tuple[Path, Path]]) -> None:
    """Rename staged files onto their targets: all of them, or on an error none.

    A run that writes several outputs (a GeoPackage and its probability and
    mask GeoTIFFs) stages each completely first (written, closed, overviews
    built), then commits them here, so a failure never leaves a new layer
    beside an old or missing mask. Existing targets (``--overwrite``) are moved
    aside first and put back if any rename fails; the new files are removed.
    A crash of the whole machine inside this loop (a few renames) can still
    leave a part: the moved-aside originals are then the hidden ``.name.bak-*``
    files beside the targets.

    Raises:
        OutputError: a rename failed (everything is as it was before the call;
            the staged files are the caller's to delete).
    """
    for tmp, _ in moves:
        fsync_file(tmp)
    backups: list[tuple[Path, Path]] = []
    placed: list[tuple[Path, Path]] = []
    try:
        for _, target in moves:
            if target.exists():
                tag = f"{os.getpid()}-{secrets.token_hex(4)}"
                backup = target.with_name(f".{target.name}.bak-{tag}")
                os.replace(target, backup)
                backups.append((target, backup))
        for tmp, target in moves:
            os.replace(tmp, target)
            placed.append((tmp, target))
        for folder in {target.parent for _, target in moves}:
            fsync_dir(folder)
    except OSError as exc:
        for tmp, target in reversed(placed):
            with contextlib.suppress(OSError):
                os.replace(target, tmp)  # back to its staged name: the caller's abort deletes it
        for target, backup in reversed(backups):
            with contextlib.suppress(OSError):
                os.replace(backup, target)
        raise OutputError(
            f"cannot move the results into place ({exc.strerror or type(exc).__name__}); "
            "nothing was replaced, check the output folder and rerun"
        ) from None
    for _, backup in backups:
        with contextlib.suppress(OSError):
            os.unlink(backup)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically."""
    return write_bytes(path, json.dumps(data, indent=indent, default=str).encode())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
