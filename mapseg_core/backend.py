"""Keras and its backend, imported once, quietly, with a clear error when absent.

Importing TensorFlow writes start-up notices straight to file descriptor 2 from
C++ ("All log messages before absl::InitializeLog() ...", "oneDNN custom
operations are on ...", CPU feature lines). ``TF_CPP_MIN_LOG_LEVEL`` does not
silence them: they are written before absl's logging is set up. A user who
mistyped a path must see one ``mapseg: error:`` line, so every module of
``mapseg_core`` that needs Keras imports it from here::

    from mapseg_core.backend import keras

The import runs with descriptor 2 pointed at a temporary file; what the backend
wrote there is dropped, unless the import fails (then it is part of the error)
or ``MAPSEG_BACKEND_NOTICES=1`` is set (the CLI's ``-v`` sets it), in which case
the notices go to stderr as they would have.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from mapseg_core.errors import MapsegError

#: Set to 1 to let the backend's start-up notices through (the CLI's ``-v``).
NOTICES_ENV = "MAPSEG_BACKEND_NOTICES"

#: Install hint for a missing backend, named after pyproject.toml's extras.
INSTALL_HINT = (
    "install one: pip install 'mapseg[tensorflow]' (the default backend), "
    "or pip install 'mapseg[train]' with jax or torch and set KERAS_BACKEND to it"
)


class BackendError(MapsegError, ImportError):
    """No usable Keras backend is installed."""

    exit_code = 2


def notices_wanted() -> bool:
    """True when the backend's start-up notices should reach stderr."""
    return os.environ.get(NOTICES_ENV, "") not in ("", "0")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[list[str]]:
    """Point file descriptor 2 at a temporary file for the ``with`` block.

    Yields a list that receives what was written there once the block ends.
    Python's own ``sys.stderr`` is flushed first so nothing of ours is lost.
    Without a real descriptor 2 (some embedded interpreters) it does nothing.
    """
    captured: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def _import_keras() -> Any:
    if "keras" in sys.modules or notices_wanted():
        import keras as module

        return module
    with quiet_stderr() as captured:
        try:
            import keras as module
        except ImportError as exc:
            error: ImportError | None = exc
        else:
            error = None
    if error is not None:
        missing = getattr(error, "name", None) or ""
        if missing.split(".")[0] in ("tensorflow", "jax", "jaxlib", "torch", "keras"):
            raise BackendError(f"no Keras backend could be imported ({error}); {INSTALL_HINT}")
        notes = "".join(captured).strip()
        raise BackendError(
            f"importing Keras failed: {error}"
            + (f" (backend said: {notes[-300:]})" if notes else "")
        ) from error
    return module


keras = _import_keras()

__all__ = ["BackendError", "keras", "notices_wanted", "quiet_stderr"]
