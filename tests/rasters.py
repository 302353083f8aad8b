"""Tiny generated GeoTIFFs with a real CRS and a stub model whose output is known exactly.

The stub model is one 1x1 convolution: ``logit = (red - blue - 100) / 10``,
so a pixel is a building exactly where red is high and blue is low (the
synthetic roof colour ``ROOF``) and background/other colours never are.
Because the convolution sees one pixel, its prediction does not depend on the
window, so tiled inference must reproduce the painted shapes pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from shapely.geometry import Polygon, box

#: Roof colour the stub detects (red high, blue low).
ROOF = (220, 40, 40)
#: Background colour (greenish; never a building).
GROUND = (60, 120, 60)
#: A bright roof that equals a declared nodata of 255 in every band.
WHITE = (255, 255, 255)
#: CRS of the synthetic rasters (UTM 33N, metres).
CRS = "EPSG:32633"
#: Ground resolution of the synthetic rasters, metres.
GSD = 0.5
#: Top-left corner of the synthetic rasters.
ORIGIN = (500000.0, 5000000.0)


def transform(gsd: float = GSD, origin: tuple[float, float] = ORIGIN) -> Affine:
    """North-up transform with square pixels."""
    return Affine(gsd, 0.0, origin[0], 0.0, -gsd, origin[1])


def scene(height: int = 160, width: int = 200) -> tuple[np.ndarray, list[Polygon]]:
    """RGB scene ``(3, h, w)`` uint8 and its buildings in pixel coordinates (x=col, y=row).

    Buildings: rectangles, an L-shape, a courtyard building (hole), buildings
    crossing the block borders of 32/48/64/96 px blocks, and one cut by the
    raster edge.
    """
    img = np.empty((3, height, width), dtype=np.uint8)
    for k in range(3):
        img[k] = GROUND[k]
    shapes: list[Polygon] = []

    def paint(poly: Polygon) -> None:
        minx, miny, maxx, maxy = (int(v) for v in poly.bounds)
        for r in range(miny, maxy):
            for c in range(minx, maxx):
                if poly.contains(shapely.Point(c + 0.5, r + 0.5)):
                    img[:, r, c] = ROOF
        shapes.append(poly)

    paint(box(5, 5, 20, 14))  # small rectangle
    paint(box(40, 10, 70, 40))  # crosses x=48, 64 and y=32
    l_shape = Polygon([(80, 60), (120, 60), (120, 70), (92, 70), (92, 100), (80, 100)])
    paint(l_shape)  # L crossing 96 borders
    courtyard = Polygon(
        [(130, 20), (175, 20), (175, 70), (130, 70)], [[(145, 35), (160, 35), (160, 55), (145, 55)]]
    )
    paint(courtyard)  # hole; crosses 32, 48, 64, 96, 144, 160
    paint(box(20, 100, 60, 135))  # crosses 32, 48 and 96, 128
    paint(box(185, 120, width, 150))  # on the raster's right edge
    paint(box(140, 140, 160, height))  # on the bottom edge
    paint(box(62, 62, 66, 66))  # tiny, straddling the 64 corner
    return img, shapes


def write_raster(
    path: str | Path,
    data: np.ndarray,
    crs: str | None = CRS,
    gsd: float = GSD,
    nodata: float | None = None,
    colorinterp: Sequence[str] | None = None,
    tfm: Affine | None = None,
    **profile: Any,
) -> Path:
    """Write ``data`` ``(bands, h, w)`` as a GeoTIFF."""
    path = Path(path)
    bands, height, width = data.shape
    meta: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": str(data.dtype),
        "transform": tfm if tfm is not None else transform(gsd),
        **profile,
    }
    if crs is not None:
        meta["crs"] = crs
    if nodata is not None:
        meta["nodata"] = nodata
    with rasterio.open(path, "w", **meta) as ds:
        ds.write(data)
        if colorinterp is not None:
            from rasterio.enums import ColorInterp

            ds.colorinterp = [ColorInterp[c] for c in colorinterp]
    return path


def expected_world(shapes: Sequence[Polygon], tfm: Affine | None = None) -> list[Polygon]:
    """Pixel-coordinate shapes mapped to world coordinates."""
    tfm = tfm or transform()

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([tfm.a * x + tfm.b * y + tfm.c, tfm.d * x + tfm.e * y + tfm.f])

    return [shapely.transform(s, apply) for s in shapes]


def canonical(geoms: Sequence[Any], digits: int = 6) -> set[str]:
    """Geometries as a set of normalized, rounded WKT (vertex order, collinear points ignored)."""
    out = set()
    for g in geoms:
        g = shapely.normalize(shapely.simplify(shapely.set_precision(g, 10**-digits), 0))
        out.add(shapely.to_wkt(g, rounding_precision=digits, trim=True))
    return out


def make_stub_model(
    path: str | Path,
    input_size: tuple[int, int] = (64, 64),
    gsd: float = GSD,
    receptive_margin: int = 8,
    bands: int = 3,
    **metadata: Any,
) -> Path:
    """Save the roof-colour stub (a 1x1 conv) as a mapseg model file.

    ``logit = (red - blue - 100) / 10``: positive on ``ROOF`` (8.0), negative on
    ``GROUND`` (-10.0) and on white (-10.0).
    """
    import keras

    inputs = keras.Input(shape=(None, None, bands))
    conv = keras.layers.Conv2D(1, 1, name="roof_colour")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 1, bands, 1), dtype=np.float32)
    kernel[0, 0, 0, 0] = 0.1
    kernel[0, 0, min(2, bands - 1), 0] -= 0.1
    conv.set_weights([kernel, np.array([-10.0], dtype=np.float32)])
    from mapseg_core.models.artifact import save_artifact

    meta = {
        "input_size": list(input_size),
        "bands": bands,
        "band_names": ["red", "green", "blue", "nir"][:bands],
        "gsd": gsd,
        "receptive_margin": receptive_margin,
        "output": "logits",
        "threshold": 0.5,
        "preset": "stub",
        **metadata,
    }
    return save_artifact(model, path, meta)


#: A roof pixel on a party wall: a building (logit 3) and contact (logit 3) for the contact stub.
PARTY_WALL = (230, 40, 100)


def terrace_scene(height: int = 96, width: int = 160) -> tuple[np.ndarray, list[Polygon]]:
    """Rows of touching houses, each pair sharing a 2 px party wall, and their footprints.

    Row one's walls lie on the 32/64/96 px block borders, row two's between them;
    both rows cross block rows. Each wall is one pixel column on either side of
    the edge two houses share, so separation must give back the houses exactly.
    """
    img = np.empty((3, height, width), dtype=np.uint8)
    for k in range(3):
        img[k] = GROUND[k]
    shapes: list[Polygon] = []
    for x0, y0, y1, count in ((16, 20, 44, 6), (8, 58, 78, 5)):
        for k in range(count):
            left, right = x0 + 16 * k, x0 + 16 * (k + 1)
            img[:, y0:y1, left:right] = np.array(ROOF, np.uint8)[:, None, None]
            shapes.append(box(left, y0, right, y1))
        for k in range(1, count):
            edge = x0 + 16 * k
            img[:, y0:y1, edge - 1 : edge + 1] = np.array(PARTY_WALL, np.uint8)[:, None, None]
    img[:, 84:92, 130:150] = np.array(ROOF, np.uint8)[:, None, None]  # a detached house
    shapes.append(box(130, 84, 150, 92))
    return img, shapes


def make_contact_stub_model(
    path: str | Path, input_size: tuple[int, int] = (64, 64), receptive_margin: int = 8
) -> Path:
    """A two-channel 1x1-conv stub: building as :func:`make_stub_model`, contact on party walls.

    ``building = (red - blue - 100) / 10``, ``contact = (blue - 70) / 10``: ROOF is
    building (8) and no contact (-3), PARTY_WALL both (3, 3), GROUND neither.
    """
    import keras

    inputs = keras.Input(shape=(None, None, 3))
    conv = keras.layers.Conv2D(2, 1, name="roof_and_wall")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 1, 3, 2), dtype=np.float32)
    kernel[0, 0, 0, 0], kernel[0, 0, 2, 0] = 0.1, -0.1
    kernel[0, 0, 2, 1] = 0.1
    conv.set_weights([kernel, np.array([-10.0, -7.0], dtype=np.float32)])
    from mapseg_core.models.artifact import save_artifact

    meta = {
        "input_size": list(input_size),
        "bands": 3,
        "band_names": ["red", "green", "blue"],
        "gsd": GSD,
        "receptive_margin": receptive_margin,
        "output": "logits",
        "threshold": 0.5,
        "preset": "stub",
        "channels": ["building", "contact"],
        "separation": {"radius": 4, "threshold": 0.5},
    }
    return save_artifact(model, path, meta)
