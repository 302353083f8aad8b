"""mapseg: building footprints from aerial and satellite imagery.

The engine behind the ``mapseg`` CLI and the QGIS plugin. It never prints and
never exits: problems are raised as :class:`mapseg_core.errors.MapsegError`
subclasses whose message says what to do next.
"""

from importlib.metadata import PackageNotFoundError, version

# GDAL (pyogrio's and rasterio's) must bind its own SQLite before TensorFlow is
# loaded: TensorFlow exports SQLite symbols without the R*Tree module, and a GDAL
# loaded after it fails on GeoPackage spatial indexes ("no such module: rtree").
import pyogrio  # noqa: F401, E402  (imported for that side effect)
import rasterio  # noqa: F401, E402

try:
    __version__ = version("mapseg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
