"""Tiled inference: pure window grid and stitching, raster I/O in ``engine``.

``tile_infer`` is imported lazily so that importing the pure modules does not
import rasterio's writers or Keras.
"""

from __future__ import annotations

from typing import Any

__all__ = ["tile_infer"]


def tile_infer(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`mapseg_core.inference.engine.tile_infer`."""
    from mapseg_core.inference.engine import tile_infer as _tile_infer

    return _tile_infer(*args, **kwargs)
