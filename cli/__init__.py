"""The ``mapseg`` command line (installed as the ``mapseg_cli`` package)."""
