"""Many inputs: raster lists, glob patterns and GDAL VRT mosaics, into one job.

A country comes as thousands of GeoTIFF tiles or as one VRT mosaic of them.
A list and a VRT need nothing special: every GDAL raster (a ``.vrt`` too) is
planned and tiled like a GeoTIFF, and a VRT's blocks read only the tiles
under them. A quoted glob (``'tiles/*.tif'``, or ``tiles/**/*.tif``), which
the shell did not expand because the command line would be too long, is
expanded here, sorted, so the block order and the job fingerprint do not
depend on the file system's listing order.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from mapseg_core.errors import InputFileNotFound
from mapseg_core.raster import is_gdal_path

_GLOB_CHARS = frozenset("*?[")


def expand_rasters(items: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Raster paths with glob patterns expanded (sorted, duplicates dropped, order kept).

    An item that exists as a file is taken as it is even if its name holds
    glob characters; GDAL virtual paths (``/vsi...``) and connection strings
    (``GPKG:file.gpkg:table``) are passed through.

    Raises:
        InputFileNotFound: a pattern matches no file.
    """
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        text = os.fspath(item)
        if is_gdal_path(text) or os.path.exists(text) or not _GLOB_CHARS & set(text):
            matches = [text]
        else:
            matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputFileNotFound(
                    f"pattern {text} matches no file; check the path (quote it for the shell)"
                )
        for match in matches:
            if match not in seen:
                seen.add(match)
                out.append(match)
    return out
