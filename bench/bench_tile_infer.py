"""tile-infer wall time vs bare ``model.predict`` on the same pixels, measured in one run.

    .venv/bin/python bench/bench_tile_infer.py --size 4096
    .venv/bin/python bench/bench_tile_infer.py --size 4096 --fixed

One synthetic orthophoto (0.3 m, one roof per 48x48 px), one model (a roof
detector with the compute of three 3x3x32 convolutions), loaded once, and:

* ``bare``: the user's alternative to tile-infer, each pixel predicted once
  with non-overlapping windows, already in memory as float32 (no I/O, no
  vectorizing). Two ways, and the *faster* is the baseline: model-sized
  windows, ``--batch`` per ``predict_on_batch`` call; and (for a model that
  takes any input size) windows of the same pixel budget as one such call,
  one per call, which is what tile-infer's spans use.
* ``same inputs``: predicting exactly the inputs tile-infer predicts (the
  overlap's extra pixels included), cut from the in-memory image, no I/O.
* ``tile-infer``: the whole job (read, normalize, predict, crop, vectorize,
  merge, write the GeoPackage).

Every figure is the minimum over ``--repeat`` interleaved rounds (the machine
is shared; the minimum is each figure's least disturbed run); tile-infer runs
before ``same inputs`` and pays for tracing the model for its input shapes.
``tile-infer / same inputs`` is the engine's overhead; ``tile-infer / bare``
adds the cost of the overlap. ``--fixed`` builds the model for 512 px inputs
only (like the mapseg U-Nets): tile-infer then predicts model-sized windows.
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
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.windows import WindowGrid, make_grid
from mapseg_core.models.artifact import load_artifact


def bare_predict(model, image: np.ndarray, side: int, batch: int) -> float:
    """Seconds to predict ``image`` (h, w, 3) cut into non-overlapping side x side windows."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, -h % side), (0, -w % side), (0, 0)))
    windows = [
        padded[r : r + side, c : c + side]
        for r in range(0, padded.shape[0], side)
        for c in range(0, padded.shape[1], side)
    ]
    start = time.perf_counter()
    for k in range(0, len(windows), batch):
        model.predict_on_batch(np.stack(windows[k : k + batch]))
    return time.perf_counter() - start


def engine_inputs(grid: WindowGrid, any_size: bool, batch: int) -> list[tuple[int, int]]:
    """(rows, cols) of every model input tile-infer predicts, one entry per window/span."""
    shapes = []
    extra = (grid.tile[0] - grid.core[0], grid.tile[1] - grid.core[1])
    for block in grid.blocks():
        if any_size:
            budget = batch * grid.tile[0] * grid.tile[1]
            shapes += [
                (s.height + extra[0], s.width + extra[1]) for s in grid.spans_of(block, budget)
            ]
        else:
            shapes += [grid.tile] * len(grid.windows_of(block).offsets)
    return shapes


def same_inputs(model, image: np.ndarray, shapes: list[tuple[int, int]], batch: int) -> float:
    """Seconds to predict inputs of ``shapes`` cut from ``image`` (equal shapes batched)."""
    padded = np.pad(image, ((0, 1024), (0, 1024), (0, 0)), mode="reflect")
    start = time.perf_counter()
    k = 0
    while k < len(shapes):
        n = 1
        while k + n < len(shapes) and n < batch and shapes[k + n] == shapes[k]:
            n += 1
        h, w = shapes[k]
        model.predict_on_batch(np.stack([padded[:h, :w]] * n))
        k += n
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="raster side in pixels")
    parser.add_argument("--tile", type=int, default=512, help="model input size")
    parser.add_argument("--margin", type=int, default=16, help="overlap (cropped px per side)")
    parser.add_argument("--block", type=int, default=2048, help="block size")
    parser.add_argument("--batch", type=int, default=4, help="windows per predict call")
    parser.add_argument("--fixed", action="store_true", help="model takes 512 px inputs only")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (minimum of each figure)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmpdir = Path(tmp)
        raster = write_scene(tmpdir / "scene.tif", args.size)
        model_path = heavy_stub(tmpdir / "heavy.keras", args.tile, args.margin, args.fixed)
        model, _ = load_artifact(model_path)
        any_size = Predictor(model, args.batch).any_size
        with rasterio.open(raster) as ds:
            image = np.moveaxis(ds.read(), 0, -1).astype(np.float32)
        model.predict_on_batch(image[None, : args.tile, : args.tile])  # trace once
        grid = make_grid(args.size, args.size, (args.tile, args.tile), args.margin, args.block)
        shapes = engine_inputs(grid, any_size, args.batch)
        big = math.isqrt(args.batch * args.tile**2) // 32 * 32
        runs: dict[str, list[float]] = {"tile": [], "big": [], "same": [], "engine": []}
        config = TileConfig(
            block_size=args.block, batch_size=args.batch, min_area=0.0, overwrite=True
        )
        # Rounds interleave every figure, and each is the minimum over the rounds: the
        # machine is shared, and the minimum is the least disturbed run of each. tile-infer
        # runs before ``same inputs`` in the first round: it pays for tracing its shapes.
        for _ in range(args.repeat):
            runs["tile"].append(bare_predict(model, image, args.tile, args.batch))
            if any_size:
                runs["big"].append(bare_predict(model, image, big, 1))
            start = time.perf_counter()
            summary = tile_infer(
                [raster], tmpdir / "out.gpkg", model_path, config, loaded_model=model
            )
            runs["engine"].append(time.perf_counter() - start)
            runs["same"].append(same_inputs(model, image, shapes, args.batch))

    bare_tile = min(runs["tile"])
    bare_big = min(runs["big"]) if runs["big"] else math.inf
    bare = min(bare_tile, bare_big)
    same, engine = min(runs["same"]), min(runs["engine"])
    mpx = args.size**2 / 1e6
    predicted = sum(h * w for h, w in shapes) / 1e6
    say(
        f"raster {args.size}x{args.size} px ({mpx:.1f} Mpx, {mpx * GSD**2:.2f} km2 at {GSD} m), "
        f"model window {args.tile} ({'fixed' if not any_size else 'any size'}), "
        f"overlap {args.margin}, core {grid.core[0]}, block {grid.block[0]}, batch {args.batch}"
    )
    say(
        f"model inputs: bare {math.ceil(args.size / args.tile) ** 2} x {args.tile}^2, tile-infer "
        f"{len(shapes)} {'spans' if any_size else 'windows'} = {predicted:.1f} Mpx "
        f"({predicted / mpx:.3f} x the raster)"
    )
    say(f"minimum of {args.repeat} interleaved rounds each")
    say(f"bare predict, {args.tile} px windows (each pixel once) {bare_tile:8.2f} s")
    if any_size:
        say(f"bare predict, {big} px windows (each pixel once) {bare_big:8.2f} s")
    say(f"predict the same inputs as tile-infer (no I/O)    {same:8.2f} s")
    say(
        f"tile-infer (read..GeoPackage)                     {engine:8.2f} s, "
        f"{summary['features']} buildings"
    )
    say(f"ratio tile-infer / bare predict (faster of above)  {engine / bare:8.3f}  (goal <= 1.15)")
    say(f"ratio tile-infer / predict same inputs             {engine / same:8.3f}  (overhead)")
    say(
        f"throughput {mpx / engine:.2f} Mpx/s = "
        f"{mpx * GSD**2 / engine * 3600:.1f} km2/h at {GSD} m "
        f"(bare predict: {mpx / bare:.2f} Mpx/s)"
    )


if __name__ == "__main__":
    main()
