"""One error tree for the whole engine.

Every error raised on purpose by ``mapseg_core`` is a :class:`MapsegError`
whose message names the problem *and* the fix, in one line. Subclasses also
inherit the closest builtin so that callers who catch ``OSError`` or
``ValueError`` keep working. The doors (CLI, QGIS plugin) translate these into
a one-line message and a non-zero exit / ``QgsProcessingException``.
"""

from __future__ import annotations


class MapsegError(Exception):
    """Base of every error mapseg raises on purpose."""

    #: Process exit code the CLI uses for this kind of error.
    exit_code: int = 1


class InputError(MapsegError, ValueError):
    """The user's input (file content, option value) is not usable."""

    exit_code = 2


class InputFileNotFound(MapsegError, FileNotFoundError):
    """A file or folder the user named does not exist."""

    exit_code = 2


class DatasetError(InputError):
    """A COCO annotation file or its images are not usable."""


class ModelError(InputError):
    """A model file is missing, corrupt, or not a mapseg model."""


class WeightsError(InputError):
    """Encoder weights cannot be loaded (offline, wrong file, wrong encoder)."""


class ConfigError(InputError):
    """Options that contradict each other or are out of range."""


class OutputExistsError(MapsegError, FileExistsError):
    """An output exists and ``overwrite`` was not asked for."""

    exit_code = 3


class OutputError(MapsegError, OSError):
    """An output cannot be written (read-only folder, disk full)."""

    exit_code = 3


class RunDirError(InputError):
    """A training run directory is not a (resumable) mapseg run."""


class RasterError(InputError):
    """A raster is unreadable, lacks a CRS, or has bands the model cannot use."""


class Interrupted(MapsegError):
    """Work was stopped by the user; the message says how to resume."""

    exit_code = 130
