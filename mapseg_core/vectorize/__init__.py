"""Vectorization: pure mask -> polygons with exact merging across blocks, and GeoPackage I/O."""
