"""Atomic file writes: a temporary file in the target's folder, then a rename.

``os.replace`` within one file system is atomic: readers see the old file or
the new one, never half of one, and a crash leaves at most a hidden
``.name.*`` temporary beside the target. Every mapseg output that is not a
GeoPackage (see :mod:`mapseg_core.vectorize.gpkg`) goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
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
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
