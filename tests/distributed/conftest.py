"""Fixtures of the distributed tests: a bigger synthetic scene and a raster with one bad tile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasters import scene, write_raster

#: Options shared by the distributed tests: 32 px cores and blocks, so a small raster has
#: hundreds of blocks and buildings cross many block borders.
BLOCK_ARGS = ("--min-area", "0", "--block-size", "32", "--overlap", "4")


def tiled_scene(path: Path, reps: tuple[int, int] = (4, 4)) -> Path:
    """The 160x200 test scene repeated ``reps`` times (640x800 by default), as a GeoTIFF."""
    img, _ = scene()
    return write_raster(path, np.tile(img, (1, *reps)))


def corrupt_tiff_tile(path: Path, row: int, col: int) -> None:
    """Overwrite the compressed bytes of TIFF tile (row, col) so GDAL fails to read it."""
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * size)


@pytest.fixture
def bad_tile_raster(tmp_path: Path) -> Path:
    """The test scene as 16 px deflate tiles, with the tile at rows/cols 80..96 unreadable.

    With ``--overlap 0`` and 64 px blocks, only block (1, 1) reads that tile.
    """
    img, _ = scene()
    path = write_raster(
        tmp_path / "bad.tif", img, tiled=True, blockxsize=16, blockysize=16, compress="deflate"
    )
    corrupt_tiff_tile(path, 5, 5)
    return path
