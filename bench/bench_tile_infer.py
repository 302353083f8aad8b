"""tile-infer wall time vs bare ``model.predict`` on the same pixels, measured in one run.

    .venv/bin/python bench/bench_tile_infer.py --size 4096

Three figures on one synthetic orthophoto (0.3 m, one roof per 48x48 px) and
one model (a roof detector with the compute of three 3x3x32 convolutions):

* ``bare``: ``predict_on_batch`` over the raster cut into non-overlapping
  windows, already in memory as float32 (each pixel predicted once, no I/O).
* ``same windows``: ``predict_on_batch`` over as many windows as tile-infer
  predicts (the overlap's extra pixels included, still no I/O).
* ``tile-infer``: the whole job (read, normalize, predict, crop, vectorize,
  merge, write the GeoPackage), model already loaded as in both baselines.

``tile-infer / same windows`` is the engine's overhead; ``tile-infer / bare``
adds the cost of the overlap, (tile / core)^2.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from _common import GSD, heavy_stub, say, write_scene

from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer
from mapseg_core.inference.windows import make_grid
from mapseg_core.models.artifact import load_artifact


def bare_predict(model, image: np.ndarray, tile: int, batch: int, n_windows: int | None) -> float:
    """Seconds to predict ``image`` (h, w, 3) cut into tile x tile windows (n_windows of them)."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, -h % tile), (0, -w % tile), (0, 0)))
    windows = [
        padded[r : r + tile, c : c + tile]
        for r in range(0, padded.shape[0], tile)
        for c in range(0, padded.shape[1], tile)
    ]
    if n_windows is not None:
        windows = (windows * math.ceil(n_windows / len(windows)))[:n_windows]
    start = time.perf_counter()
    for k in range(0, len(windows), batch):
        model.predict_on_batch(np.stack(windows[k : k + batch]))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="raster side in pixels")
    parser.add_argument("--tile", type=int, default=512, help="model input size")
    parser.add_argument("--margin", type=int, default=16, help="overlap (cropped px per side)")
    parser.add_argument("--block", type=int, default=2048, help="block size")
    parser.add_argument("--batch", type=int, default=4, help="windows per predict call")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmpdir = Path(tmp)
        raster = write_scene(tmpdir / "scene.tif", args.size)
        model_path = heavy_stub(tmpdir / "heavy.keras", args.tile, args.margin)
        model, _ = load_artifact(model_path)
        with rasterio.open(raster) as ds:
            image = np.moveaxis(ds.read(), 0, -1).astype(np.float32)
        model.predict_on_batch(image[None, : args.tile, : args.tile])  # trace once
        grid = make_grid(args.size, args.size, (args.tile, args.tile), args.margin, args.block)
        n_engine = math.ceil(args.size / grid.core[0]) * math.ceil(args.size / grid.core[1])

        bare = bare_predict(model, image, args.tile, args.batch, None)
        same = bare_predict(model, image, args.tile, args.batch, n_engine)
        del image
        config = TileConfig(
            block_size=args.block, batch_size=args.batch, min_area=0.0, overwrite=True
        )
        start = time.perf_counter()
        summary = tile_infer([raster], tmpdir / "out.gpkg", model_path, config, loaded_model=model)
        engine = time.perf_counter() - start
        bare = min(
            bare,
            bare_predict(
                model, np.zeros((args.size, args.size, 3), np.float32), args.tile, args.batch, None
            ),
        )

    mpx = args.size**2 / 1e6
    say(
        f"raster {args.size}x{args.size} px ({mpx:.1f} Mpx, {mpx * GSD**2:.2f} km2 at {GSD} m), "
        f"model window {args.tile}, overlap {args.margin}, core {grid.core[0]}, "
        f"block {grid.block[0]}, batch {args.batch}"
    )
    say(f"windows predicted: bare {math.ceil(args.size / args.tile) ** 2}, tile-infer {n_engine}")
    say(f"bare model.predict (each pixel once)      {bare:8.2f} s")
    say(f"bare model.predict (same windows)         {same:8.2f} s")
    say(
        f"tile-infer (read..GeoPackage)             {engine:8.2f} s, "
        f"{summary['features']} buildings"
    )
    say(f"ratio tile-infer / bare predict            {engine / bare:8.3f}  (goal <= 1.15)")
    say(f"ratio tile-infer / predict same windows    {engine / same:8.3f}  (engine overhead)")
    say(
        f"throughput {mpx / engine:.2f} Mpx/s = "
        f"{mpx * GSD**2 / engine * 3600:.1f} km2/h at {GSD} m "
        f"(bare predict: {mpx / bare:.2f} Mpx/s)"
    )


if __name__ == "__main__":
    main()
