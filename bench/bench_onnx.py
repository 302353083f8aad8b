"""ONNX Runtime vs Keras (TensorFlow) on the same raster and model, measured in one run.

    .venv/bin/python bench/bench_onnx.py
    .venv/bin/python bench/bench_onnx.py --raster ../shared/data/inria-austin/aerial_sample.tif

The model (default: the bundled EfficientNet-B0 U-Net) is exported once with
``mapseg export``; then, interleaved over ``--repeat`` rounds (minimum kept,
the machine is shared):

* ``in process``: ``tile_infer`` with each model already loaded, so only the
  job itself is timed (read, predict, vectorize, write), and the ratio is the
  engines' throughput ratio;
* ``command``: ``mapseg tile-infer`` as a user runs it on the 500x500 px
  example, start-up included (Python, the engine, the backend, the model).

It also prints how many pixels of the two building masks agree.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from _common import say

from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer
from mapseg_core.models.artifact import bundled_model_path, load_artifact
from mapseg_core.models.onnx_export import export_onnx

ROOT = Path(__file__).resolve().parents[1]


def _job(raster: Path, model: Path, loaded, out: Path) -> tuple[float, float, np.ndarray]:
    config = TileConfig(overwrite=True, save_mask=str(out.with_suffix(".tif")))
    start = time.perf_counter()
    summary = tile_infer([raster], out, model, config, loaded_model=loaded)
    seconds = time.perf_counter() - start
    with rasterio.open(out.with_suffix(".tif")) as ds:
        mask = ds.read(1)
    return seconds, summary["megapixels"], mask


def _command(raster: Path, model: Path, out: Path) -> float:
    mapseg = Path(sys.executable).with_name("mapseg")
    args = [str(mapseg), "tile-infer", str(raster), "-o", str(out), "--model", str(model)]
    start = time.perf_counter()
    subprocess.run([*args, "--overwrite", "-q"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raster", type=Path, default=ROOT / "examples/inria-austin-sample.tif")
    parser.add_argument("--model", type=Path, default=None, help="a .keras model")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    keras_file = args.model or bundled_model_path()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        onnx_file = tmp / "model.onnx"
        exported = export_onnx(keras_file, onnx_file)
        say(f"export: {exported['seconds']} s, {exported['bytes'] / 1e6:.1f} MB")
        engines = {"keras": (keras_file, load_artifact(keras_file)[0])}
        engines["onnx"] = (onnx_file, load_artifact(onnx_file)[0])
        best = {name: float("inf") for name in engines}
        wall = {name: float("inf") for name in engines}
        masks: dict[str, np.ndarray] = {}
        mpx = 0.0
        for _ in range(args.repeat):
            for name, (path, loaded) in engines.items():
                seconds, mpx, masks[name] = _job(args.raster, path, loaded, tmp / f"{name}.gpkg")
                best[name] = min(best[name], seconds)
                wall[name] = min(wall[name], _command(args.raster, path, tmp / f"c{name}.gpkg"))
        say(f"raster: {args.raster.name}, {mpx:.3f} Mpx, model {keras_file.name}")
        for name in engines:
            say(
                f"{name:>5}: in process {best[name]:.2f} s ({mpx / best[name]:.2f} Mpx/s), "
                f"command {wall[name]:.2f} s wall"
            )
        say(f"throughput onnx / keras: {best['keras'] / best['onnx']:.2f}")
        say(f"command wall onnx / keras: {wall['onnx'] / wall['keras']:.2f}")
        agree = float((masks["keras"] == masks["onnx"]).mean())
        say(f"mask agreement: {100 * agree:.3f} % of {masks['keras'].size} px")


if __name__ == "__main__":
    main()
