"""The mapseg QGIS plugin (Processing provider): see issue C; not shipped yet."""
