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
  the least any tool must spend;
* ``engine alone``: tile-infer again with clean outlines, the model's outputs
  replayed from memory (recorded in the first round, looked up by the bytes
  of each input): the job's cost without the network, so the ceiling of any
  model on this engine and these cores. Its ``predict`` lines say how many
  windows tile-infer feeds the model and what they cost inside the job.

Throughput is quoted in input megapixels per second (0.3 m pixels) and km²/h.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import tempfile
import time
from pathlib import Path
from typing import Any

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


class Replay:
    """The model, its outputs recorded by input bytes, then replayed without it.

    Recording also adds up the wall time of the model's calls (inside tile-infer,
    so shared with the engine's other threads) and the pixels it was fed.
    """

    def __init__(self, model: Any):
        self.model = model
        self.outputs: dict[bytes, np.ndarray] = {}
        self.replaying = False
        self.seconds = 0.0
        self.pixels = 0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        key = hashlib.blake2b(np.ascontiguousarray(batch).tobytes(), digest_size=16).digest()
        if self.replaying:
            return self.outputs[key]  # a KeyError says the engine fed other inputs
        start = time.perf_counter()
        out = np.asarray(self.model.predict_on_batch(batch))
        self.seconds += time.perf_counter() - start
        self.pixels += batch.shape[0] * batch.shape[1] * batch.shape[2]
        self.calls += 1
        self.outputs[key] = out
        return out


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
    replay = Replay(model)
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
        times: dict[str, list[float]] = {"tile-infer": [], "pixel": [], "bare": [], "engine": []}
        counts: dict[str, int] = {}
        runs = (("tile-infer", {}), ("pixel", {"outline": "pixel"}), ("engine", {}))
        for round_ in range(args.repeat):
            for name, extra in runs:
                out = Path(tmp) / f"{name}.gpkg"
                config = TileConfig(overwrite=True, **extra)  # type: ignore[arg-type]
                replay.replaying = name == "engine"
                start = time.perf_counter()
                summary = tile_infer([raster], out, model_path, config, loaded_model=replay)
                times[name].append(time.perf_counter() - start)
                counts[name] = summary["features"]
                if round_ == 0 and name == "tile-infer":
                    inside, fed, calls = replay.seconds, replay.pixels / 1e6, replay.calls
            times["bare"].append(bare_predict(model, image, side, 8))
        if counts["engine"] != counts["tile-infer"]:
            raise SystemExit(
                "the replayed run wrote other buildings: the engine is not deterministic"
            )
        best = {k: min(v) for k, v in times.items()}
        for name, label in (
            ("tile-infer", "tile-infer (model defaults)"),
            ("pixel", "tile-infer --outline pixel"),
            ("bare", "bare predict, resampled, in memory"),
            ("engine", "engine alone (model outputs replayed)"),
        ):
            say(f"{label:38s} {best[name]:7.2f} s  {mpx / best[name]:5.2f} Mpx/s  "
                f"{km2 / best[name] * 3600:7.0f} km²/h")  # fmt: skip
        covered = image.shape[0] * image.shape[1] / 1e6
        say(f"buildings written: {counts['tile-infer']}")
        say(f"predict inside tile-infer (round 1): {calls} calls, {fed:.1f} Mpx at {meta['gsd']} m "
            f"({fed / covered:.2f}x the resampled raster), {inside:.2f} s")  # fmt: skip
        say(f"model alone on those inputs (bare rate): {best['bare'] * fed / covered:.2f} s")
        say(f"tile-infer / bare predict:           {best['tile-infer'] / best['bare']:.3f}")
        say(f"clean outlines / pixel outlines:     {best['tile-infer'] / best['pixel']:.3f}")
        say(f"tile-infer / engine alone:           {best['tile-infer'] / best['engine']:.3f}")


if __name__ == "__main__":
    main()
