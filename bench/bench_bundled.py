"""End-to-end throughput of the bundled model at 0.3 m input, vs bare predict, in one run.

    .venv/bin/python bench/bench_bundled.py --size 8192
    .venv/bin/python bench/bench_bundled.py --size 4096 --model run/model.keras

The input is real imagery: the bundled 0.3 m Inria Austin sample
(examples/inria-austin-sample.tif, 500x500 px) mirrored into a ``--size``
square GeoTIFF, so building density and texture are those of a town, not of
a synthetic lattice. Three figures, each the minimum of ``--repeat`` rounds:

* ``tile-infer``: the whole job as a user runs it (read, resample 0.3 m to the
  model's GSD, normalize, predict, crop, vectorize, clean outlines, merge,
  write the GeoPackage), with the model's default options;
* ``tile-infer --outline pixel``: the same with pixel outlines (the cost of
  outline cleaning is the ratio of the two);
* ``bare``: ``predict_on_batch`` over the raster already resampled to the
  model's GSD and in memory, cut into non-overlapping model-sized windows:
  the least any tool must spend.

Throughput is quoted in input megapixels per second (0.3 m pixels) and km²/h.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from _common import say
from bench_tile_infer import bare_predict
from rasterio.enums import Resampling

from mapseg_core.config import TileConfig
from mapseg_core.inference.engine import tile_infer
from mapseg_core.models.artifact import bundled_model_path, load_artifact, read_metadata

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inria-austin-sample.tif"


def mirrored_scene(path: Path, size: int) -> Path:
    """``size`` x ``size`` GeoTIFF of the sample, mirrored tile by tile (seamless)."""
    with rasterio.open(SAMPLE) as src:
        img = src.read()
        profile = src.profile
    flips = [[img, img[:, :, ::-1]], [img[:, ::-1, :], img[:, ::-1, ::-1]]]
    side = img.shape[1]
    reps = math.ceil(size / side)
    rows = [np.concatenate([flips[i % 2][j % 2] for j in range(reps)], axis=2) for i in range(reps)]
    big = np.concatenate(rows, axis=1)[:, :size, :size]
    profile.update(
        width=size, height=size, tiled=True, blockxsize=512, blockysize=512, compress="deflate"
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(big)
    return path


def resampled(path: Path, gsd: float) -> np.ndarray:
    """The raster at ``gsd`` metres, (h, w, bands) float32: what a bare predict would be fed."""
    with rasterio.open(path) as src:
        scale = abs(src.transform.a) / gsd
        shape = (src.count, round(src.height * scale), round(src.width * scale))
        data = src.read(out_shape=shape, resampling=Resampling.bilinear)
    return np.moveaxis(data, 0, -1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="raster side in 0.3 m pixels")
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--repeat", type=int, default=2, help="rounds (minimum of each figure)")
    args = parser.parse_args()
    model_path = args.model or bundled_model_path()
    meta = read_metadata(model_path)
    model, _ = load_artifact(model_path)
    side = int(meta["input_size"][0])
    with tempfile.TemporaryDirectory() as tmp:
        raster = mirrored_scene(Path(tmp) / "town.tif", args.size)
        with rasterio.open(raster) as src:
            res = abs(src.transform.a)
            km2 = src.width * src.height * res * res / 1e6
        image = resampled(raster, float(meta["gsd"]))
        mpx = args.size * args.size / 1e6
        say(f"{args.size}² px at {res:g} m ({km2:.2f} km²) -> {image.shape[1]}² px at "
            f"{meta['gsd']} m; model {model_path.name}, {side} px input")  # fmt: skip
        times: dict[str, list[float]] = {"tile-infer": [], "pixel": [], "bare": []}
        count = 0
        for _ in range(args.repeat):
            for name, extra in (("tile-infer", {}), ("pixel", {"outline": "pixel"})):
                out = Path(tmp) / f"{name}.gpkg"
                config = TileConfig(overwrite=True, **extra)  # type: ignore[arg-type]
                start = time.perf_counter()
                summary = tile_infer([raster], out, model_path, config, loaded_model=model)
                times[name].append(time.perf_counter() - start)
                count = summary.get("features", count) if name == "tile-infer" else count
            times["bare"].append(bare_predict(model, image, side, 8))
        best = {k: min(v) for k, v in times.items()}
        for name, label in (
            ("tile-infer", "tile-infer (model defaults)"),
            ("pixel", "tile-infer --outline pixel"),
            ("bare", "bare predict, resampled, in memory"),
        ):
            say(f"{label:38s} {best[name]:7.2f} s  {mpx / best[name]:5.2f} Mpx/s  "
                f"{km2 / best[name] * 3600:7.0f} km²/h")  # fmt: skip
        say(f"buildings written: {count}")
        say(f"tile-infer / bare predict:           {best['tile-infer'] / best['bare']:.3f}")
        say(f"clean outlines / pixel outlines:     {best['tile-infer'] / best['pixel']:.3f}")


if __name__ == "__main__":
    main()
