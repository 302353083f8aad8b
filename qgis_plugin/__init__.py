"""mapseg for QGIS: a Processing provider that drives the mapseg engine out of process.

QGIS imports this package and calls :func:`classFactory`. Nothing here imports
the deep-learning stack: the algorithms run the ``mapseg`` command line in a
subprocess (as QGIS's GRASS, SAGA and OTB providers drive theirs), so the
plugin installs into any QGIS >= 3.22 whatever its Python carries.
"""


def classFactory(iface):  # noqa: N802 (the name QGIS looks for)
    """Return the plugin object; ``iface`` is None under ``qgis_process``."""
    from .plugin_main import MapsegPlugin

    return MapsegPlugin(iface)
