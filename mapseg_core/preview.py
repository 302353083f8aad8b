"""A picture of the result: the raster with the building polygons drawn over it.

``render_preview`` is the only function here that opens files (a decimated
rasterio read of the raster, a pyogrio read of the layer); drawing is
``draw_preview``, a pure function of an RGB array, its ``Affine`` and the
polygons, so its output can be tested without files.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mapseg_core.atomic import write_bytes
from mapseg_core.errors import InputFileNotFound

#: Outline colour of the buildings (matplotlib colour).
OUTLINE = "#ffcc00"


def draw_preview(
    rgb: np.ndarray,
    transform: Any,
    polygons: Sequence[Any],
    title: str = "",
    dpi: int = 100,
) -> bytes:
    """PNG bytes of ``rgb`` (HxWx3 uint8) with ``polygons`` outlined on top.

    Args:
        rgb: the image, already in display range.
        transform: ``affine.Affine`` from pixel (col, row) to the polygons' CRS.
        polygons: shapely polygons in the same CRS as ``transform``.
        title: shown above the picture.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = rgb.shape[:2]
    inverse = ~transform
    fig = plt.figure(figsize=(width / dpi, height / dpi + (0.35 if title else 0)), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + (35 if title else 0))))
    ax.imshow(rgb, interpolation="nearest")
    for polygon in polygons:
        rings = [polygon.exterior, *polygon.interiors]
        for ring in rings:
            xy = np.asarray(ring.coords)
            cols, rows = inverse @ (xy[:, 0], xy[:, 1])
            ax.plot(cols, rows, color=OUTLINE, linewidth=1.2)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10, y=0.995)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def render_preview(
    raster: str | os.PathLike[str],
    vectors: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    layer: str | None = None,
    bands: tuple[int, int, int] = (1, 2, 3),
    max_size: int = 1600,
) -> Path:
    """Write a PNG of ``raster`` (at most ``max_size`` px wide/high) with the layer drawn on it.

    The polygons are reprojected to the raster's CRS. Non-uint8 rasters are
    stretched between their 2nd and 98th percentiles for display.

    Raises:
        InputFileNotFound, RasterError: unreadable inputs.
    """
    import pyogrio
    from rasterio.enums import Resampling

    from mapseg_core.raster import open_raster

    if not Path(vectors).is_file():
        raise InputFileNotFound(f"{vectors} not found; pass an existing file")
    src = open_raster(raster)
    with src:
        scale = max(src.width, src.height) / max_size
        scale = max(scale, 1.0)
        out_h, out_w = int(round(src.height / scale)), int(round(src.width / scale))
        use = bands if src.count >= 3 else (1, 1, 1)
        data = src.read(list(use), out_shape=(3, out_h, out_w), resampling=Resampling.average)
        transform = src.transform @ src.transform.scale(src.width / out_w, src.height / out_h)
        crs = src.crs
    rgb = _display_range(np.moveaxis(data, 0, -1))
    frame = pyogrio.read_dataframe(vectors, layer=layer)
    if crs is not None and frame.crs is not None and len(frame):
        frame = frame.to_crs(crs)
    polygons = [g for geom in frame.geometry if geom is not None for g in _parts(geom)]
    title = f"{Path(raster).name}: {len(frame)} buildings"
    return write_bytes(output, draw_preview(rgb, transform, polygons, title=title))


def _parts(geometry: Any) -> list[Any]:
    return list(geometry.geoms) if hasattr(geometry, "geoms") else [geometry]


def _display_range(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    data = array.astype("float64")
    low, high = np.nanpercentile(data, (2, 98))
    return (np.clip((data - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8)
