"""Which model window and working GSD: the bundled weights run every way on large scenes.

    $ .venv/bin/python scripts/bundled_model/windows_gsd.py MODEL.keras out/windows-gsd \\
          --windows 256,512,768 --gsds 0.3,0.4,0.5

A chip is smaller than a 512 px window, so the held-out chips cannot say how a
window size does on a real raster. This runs ``mapseg tile-infer`` with the
weights of ``MODEL`` rebuilt for each window and GSD (as
``scripts/bundled_model/rewindow.py`` does) on three scenes
that are larger than any window, and scores what it writes: pixel Dice against
the reference mask, and building F1@0.5 (``mapseg evaluate-vectors``) against
the reference buildings:

* ``inria``: the held-out Inria Austin quadrant (500x500 px at 0.3 m, the
  README demo's area), buildings from its mask;
* ``massachusetts``: the whole 1 m tile (evaluation only), its footprints;
* ``jonkoping``: a 6x6 chip mosaic of the Barnarp scene (3072x3072 px at
  ~0.25 m, evaluation only), buildings from its mask.

Needs ``prepare_data.py``'s output in ``out/bundled-data`` and ``../shared/data``.
Prints a Markdown table (docs/bundled-model.md) and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "out" / "bundled-data" / "heldout-rasters"


def jonkoping_mosaic(shared: Path, out: Path) -> tuple[Path, Path]:
    """Rows 4-9, columns 2-7 of the Barnarp chip grid as one GeoTIFF, and its mask."""
    import rasterio
    from affine import Affine
    from PIL import Image

    raster, mask = out / "jonkoping.tif", out / "jonkoping-mask.tif"
    if raster.exists() and mask.exists():
        return raster, mask
    folder = shared / "data" / "jonkoping-barnarp"

    def grid(kind: str, suffix: str, mode: str) -> np.ndarray:
        rows = [
            np.concatenate(
                [
                    np.asarray(
                        Image.open(folder / kind / f"barnarp_{r}_{c}.{suffix}").convert(mode)
                    )
                    for c in range(2, 8)
                ],
                axis=1,
            )
            for r in range(4, 10)
        ]
        return np.concatenate(rows, axis=0)

    image, labels = grid("images", "jpg", "RGB"), grid("masks", "png", "L") > 127
    # No georeference comes with the scene: a local SWEREF 99 TM grid at its ~0.25 m.
    profile = {
        "driver": "GTiff",
        "width": image.shape[1],
        "height": image.shape[0],
        "crs": "EPSG:3006",
        "transform": Affine(0.25, 0, 440000, 0, -0.25, 6400000),
        "tiled": True,
    }
    with rasterio.open(raster, "w", count=3, dtype="uint8", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
    with rasterio.open(mask, "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(labels.astype(np.uint8)[None])
    return raster, mask


def mask_buildings(mask: Path, out: Path) -> Path:
    """The 4-connected components of a reference mask as a GeoPackage (area >= 4 m2)."""
    import geopandas as gpd
    import rasterio
    import rasterio.features
    import shapely.geometry

    target = out / f"{mask.stem}-buildings.gpkg"
    if not target.exists():
        with rasterio.open(mask) as src:
            values = (src.read(1) > 0).astype(np.uint8)
            shapes = rasterio.features.shapes(values, values > 0, transform=src.transform)
            crs = src.crs
        geoms = [shapely.geometry.shape(g) for g, v in shapes if v == 1]
        gpd.GeoDataFrame(geometry=[g for g in geoms if g.area >= 4.0], crs=crs).to_file(target)
    return target


def reference_mask(raster: Path, buildings: Path, out: Path) -> Path:
    """Footprints rasterised on the raster's grid (for Massachusetts' pixel Dice)."""
    import pyogrio
    import rasterio
    import rasterio.features

    target = out / f"{raster.stem}-mask.tif"
    if not target.exists():
        with rasterio.open(raster) as src:
            frame = pyogrio.read_dataframe(buildings).to_crs(src.crs)
            values = rasterio.features.rasterize(
                frame.geometry, out_shape=(src.height, src.width), transform=src.transform
            )
            profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": None}
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(values.astype(np.uint8)[None])
    return target


def score(
    model: Path, raster: Path, mask: Path, buildings: Path, out: Path, **options: Any
) -> dict:
    """tile-infer with ``model`` on ``raster``: seconds, Dice, F1@0.5, precision, recall."""
    import rasterio

    from mapseg_core.config import TileConfig
    from mapseg_core.evaluation.vectors import evaluate_vectors
    from mapseg_core.inference.engine import tile_infer

    layer, predicted = out / "buildings.gpkg", out / "predicted.tif"
    config = TileConfig(overwrite=True, save_mask=str(predicted), **options)
    start = time.perf_counter()
    tile_infer([raster], layer, model, config)
    seconds = time.perf_counter() - start
    with rasterio.open(predicted) as src:
        found = src.read(1) > 0
    with rasterio.open(mask) as src:
        truth = src.read(1) > 0
    dice = 2 * np.count_nonzero(found & truth) / max(1, found.sum() + truth.sum())
    figures = evaluate_vectors(layer, buildings).to_dict()
    return {
        "seconds": round(seconds, 1),
        "Dice": round(float(dice), 3),
        "F1@0.5": round(figures["f1"], 3),
        "precision": round(figures["precision"], 3),
        "recall": round(figures["recall"], 3),
        "buildings": figures["predicted"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a mapseg .keras U-Net (the bundled one)")
    parser.add_argument("out", type=Path, help="folder for the scenes, models and results")
    parser.add_argument("--windows", default="256,512,768", help="window sides, comma-separated")
    parser.add_argument("--gsds", default="0.3,0.4,0.5", help="working GSDs, comma-separated")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from mapseg_core.config import RunConfig
    from mapseg_core.models.artifact import load_artifact, save_artifact
    from mapseg_core.models.unet import resized_copy

    jonkoping, jonkoping_mask = jonkoping_mosaic(args.shared, args.out)
    massachusetts = HELDOUT / "massachusetts.tif"
    massachusetts_buildings = HELDOUT / "massachusetts.gpkg"
    inria_mask = HELDOUT / "inria-bottomright-mask.tif"
    scenes = {
        "inria": (
            HELDOUT / "inria-bottomright.tif",
            inria_mask,
            mask_buildings(inria_mask, args.out),
            {},
        ),
        "massachusetts": (
            massachusetts,
            reference_mask(massachusetts, massachusetts_buildings, args.out),
            massachusetts_buildings,
            {"nodata": "none"},  # nodata=255 is also white roofs
        ),
        "jonkoping": (jonkoping, jonkoping_mask, mask_buildings(jonkoping_mask, args.out), {}),
    }
    model, meta = load_artifact(args.model)
    config = RunConfig.from_dict(meta["config"]).model
    rows = []
    for window in (int(w) for w in args.windows.split(",")):
        for gsd in (float(g) for g in args.gsds.split(",")):
            variant = args.out / f"w{window}-g{gsd}.keras"
            resized = resized_copy(model, config, (window, window))
            save_artifact(resized, variant, {**meta, "input_size": [window, window], "gsd": gsd})
            row = {"window": window, "gsd": gsd}
            for name, (raster, mask, buildings, options) in scenes.items():
                row[name] = score(variant, raster, mask, buildings, args.out, **options)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    (args.out / "windows-gsd.json").write_text(json.dumps(rows, indent=2))
    head = "| window | GSD | " + " | ".join(f"{n}: Dice / F1@0.5 / s" for n in scenes) + " |"
    print(head)
    print("|---|---|" + "---|" * len(scenes))
    for row in rows:
        cells = [
            f"{row[n]['Dice']:.3f} / {row[n]['F1@0.5']:.3f} / {row[n]['seconds']:.1f}"
            for n in scenes
        ]
        print(f"| {row['window']} | {row['gsd']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
