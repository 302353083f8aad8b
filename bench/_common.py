"""Shared generators for the tile-infer benchmarks: big synthetic rasters, written in strips."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

ROOF = (220, 40, 40)
GROUND = (60, 120, 60)
GSD = 0.3


def buildings_strip(rows: int, width: int, row0: int, seed: int = 0) -> np.ndarray:
    """A strip ``(3, rows, width)`` of ground with one rectangular roof per 48x48 px cell.

    Roofs (8..27 px a side, jittered by up to 18 px) stay inside their cell,
    so neighbours never touch; each lattice row draws from its own seed, so
    the same pixels come out whatever the strip height.
    """
    cell = 48
    img = np.empty((3, rows, width), dtype=np.uint8)
    for k in range(3):
        img[k] = GROUND[k]
    ncols = width // cell + 1
    for ci in range(row0 // cell, (row0 + rows - 1) // cell + 1):
        draw = np.random.default_rng([seed, ci]).integers(
            [8, 8, 0, 0], [28, 28, 19, 19], (ncols, 4)
        )
        for cj, (h, w, dr, dc) in enumerate(draw.tolist()):
            r0, c0 = ci * cell + dr - row0, cj * cell + dc
            rr0, rr1 = max(r0, 0), min(r0 + h, rows)
            if rr1 > rr0 and c0 < width:
                img[:, rr0:rr1, c0 : min(c0 + w, width)] = np.array(ROOF, np.uint8)[:, None, None]
    return img


def write_scene(path: Path, size: int, strip: int = 1024) -> Path:
    """A ``size`` x ``size`` RGB GeoTIFF (EPSG:32633, 0.3 m, tiled, deflate), strip by strip."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(GSD, 0, 500000.0, 0, -GSD, 5000000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as ds:
        for r in range(0, size, strip):
            rows = min(strip, size - r)
            ds.write(buildings_strip(rows, size, r), window=((r, r + rows), (0, size)))
    return path


def heavy_stub(path: Path, input_size: int, margin: int, fixed: bool = False) -> Path:
    """Roof detector with the cost of a small CNN: ``roof_logit + 0 * convnet(x)``.

    The 1x1 roof convolution gives an exactly known mask; the zero-weighted
    branch (three 3x3 convolutions, 32 filters) gives the model a realistic
    compute cost, so the engine's overhead is measured against real work.
    ``fixed`` builds it for ``input_size`` inputs only (like the mapseg U-Nets),
    so tile-infer predicts model-sized windows instead of larger spans.
    """
    import keras

    from mapseg_core.models.artifact import save_artifact

    side = input_size if fixed else None
    inputs = keras.Input(shape=(side, side, 3))
    roof = keras.layers.Conv2D(1, 1, name="roof")
    x = inputs
    for k in range(3):
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=f"c{k}")(x)
    heavy = keras.layers.Conv2D(1, 1, name="heavy", kernel_initializer="zeros")(x)
    model = keras.Model(inputs, keras.layers.Add()([roof(inputs), heavy]))
    roof.set_weights([np.array([0.1, 0, -0.1], np.float32).reshape(1, 1, 3, 1), np.array([-10.0])])
    return save_artifact(
        model,
        path,
        {
            "input_size": [input_size, input_size],
            "gsd": GSD,
            "receptive_margin": margin,
            "preset": "bench-stub",
        },
    )


def light_stub(path: Path, input_size: int = 512, margin: int = 0) -> Path:
    """The 1x1 roof convolution alone (cheapest possible model)."""
    import keras

    from mapseg_core.models.artifact import save_artifact

    inputs = keras.Input(shape=(None, None, 3))
    roof = keras.layers.Conv2D(1, 1, name="roof")
    model = keras.Model(inputs, roof(inputs))
    roof.set_weights([np.array([0.1, 0, -0.1], np.float32).reshape(1, 1, 3, 1), np.array([-10.0])])
    return save_artifact(
        model,
        path,
        {
            "input_size": [input_size, input_size],
            "gsd": GSD,
            "receptive_margin": margin,
            "preset": "bench-stub",
        },
    )


def say(*args: Any) -> None:
    print(*args, flush=True, file=sys.stdout)
