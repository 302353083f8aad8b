"""Tiled inference: pure window grid and stitching, raster I/O in ``engine``."""
