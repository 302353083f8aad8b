"""mapseg: building footprints from aerial and satellite imagery.

The engine behind the ``mapseg`` CLI and the QGIS plugin. It never prints and
never exits: problems are raised as :class:`mapseg_core.errors.MapsegError`
subclasses whose message says what to do next.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mapseg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
