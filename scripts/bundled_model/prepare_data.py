"""Build the training and held-out data of the bundled model from ../shared/data.

Everything is brought to 0.5 m per pixel (the bundled model's GSD) and cut
into 256 px chips with ``mapseg chips``; the parts listed under HELD_OUT are
never used for training and are what the README reports on.

    $ .venv/bin/python scripts/bundled_model/prepare_data.py ../shared/data out/bundled-data

Writes OUT/train/{annotation.json,images/} (one COCO set merged from all
sources), OUT/heldout/ (rasters, labels and a crowdAI COCO set kept aside) and
OUT/manifest.json (what went where).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import rasterio
from PIL import Image
from rasterio.windows import Window

GSD = 0.5
CHIP = 256
#: crowdAI tiles are ~0.3 m: scaled by 0.6 to 0.5 m (300 px -> 180 px, padded to 256 in training).
CROWDAI_SCALE = 0.6
CROWDAI_SEED = 108241


def crop(src_path: Path, dst_path: Path, window: Window) -> Path:
    """Write ``window`` of a GeoTIFF as a new GeoTIFF (same CRS, shifted transform)."""
    with rasterio.open(src_path) as src:
        profile = src.profile.copy()
        profile.update(
            width=int(window.width),
            height=int(window.height),
            transform=src.window_transform(window),
        )
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        profile["tiled"] = False
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return dst_path


def chips(mapseg: str, raster: Path, labels: Path, out: Path, *extra: str) -> dict:
    cmd = [
        mapseg,
        "chips",
        str(raster),
        str(labels),
        "-o",
        str(out),
        "--size",
        str(CHIP),
        "--gsd",
        str(GSD),
        "--overwrite",
        "--progress",
        "none",
        "--json",
        *extra,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr}")
    return json.loads(result.stdout)


def crowdai(source: Path, train_out: Path, heldout_out: Path) -> dict:
    """Rescale the crowdAI tiles to 0.5 m; the seed's test split is held out."""
    from mapseg_core.data.splits import make_splits

    data = json.loads((source / "annotation.json").read_text())
    ids = sorted({a["image_id"] for a in data["annotations"]})
    splits = make_splits(ids, 0.7, 0.3, CROWDAI_SEED)
    parts = {"train": set(splits.train) | set(splits.valid), "heldout": set(splits.test)}
    for name, out in (("train", train_out), ("heldout", heldout_out)):
        (out / "images").mkdir(parents=True, exist_ok=True)
        images = [im for im in data["images"] if im["id"] in parts[name]]
        for im in images:
            with Image.open(source / "images" / im["file_name"]) as img:
                size = (round(im["width"] * CROWDAI_SCALE), round(im["height"] * CROWDAI_SCALE))
                img.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(
                    out / "images" / im["file_name"].replace(".jpg", ".png")
                )
            im.update(
                file_name=im["file_name"].replace(".jpg", ".png"), width=size[0], height=size[1]
            )
        anns = []
        for ann in data["annotations"]:
            if ann["image_id"] in parts[name]:
                ann = dict(ann)
                ann["segmentation"] = [
                    [v * CROWDAI_SCALE for v in poly] for poly in ann["segmentation"]
                ]
                ann["area"] = ann["area"] * CROWDAI_SCALE**2
                anns.append(ann)
        coco = {"images": images, "annotations": anns, "categories": data["categories"]}
        (out / "annotation.json").write_text(json.dumps(coco))
    return {"train_images": len(parts["train"]), "heldout_images": len(parts["heldout"])}


def merge(sets: list[Path], out: Path) -> dict:
    """One COCO set from several (category 'building' as id 1), images copied with prefixes."""
    images, annotations = [], []
    (out / "images").mkdir(parents=True, exist_ok=True)
    for set_dir in sets:
        data = json.loads((set_dir / "annotation.json").read_text())
        building = {c["id"] for c in data["categories"]}
        id_map = {}
        for im in data["images"]:
            new_id = len(images) + 1
            id_map[im["id"]] = new_id
            name = f"{set_dir.name}__{Path(im['file_name']).name}"
            shutil.copy(set_dir / "images" / Path(im["file_name"]).name, out / "images" / name)
            images.append(
                {"id": new_id, "file_name": name, "width": im["width"], "height": im["height"]}
            )
        for ann in data["annotations"]:
            if ann["category_id"] in building:
                annotations.append(
                    {
                        **ann,
                        "id": len(annotations) + 1,
                        "image_id": id_map[ann["image_id"]],
                        "category_id": 1,
                    }
                )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "building", "supercategory": "building"}],
    }
    (out / "annotation.json").write_text(json.dumps(coco))
    return {"images": len(images), "annotations": len(annotations)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shared_data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--mapseg", default=str(Path(sys.executable).parent / "mapseg"))
    args = parser.parse_args()
    d, out = args.shared_data, args.out
    parts, heldout = out / "parts", out / "heldout"
    manifest: dict = {"gsd": GSD, "chip": CHIP, "sources": {}, "heldout": {}}

    # Massachusetts (1 m): the left 65% trains, the right 35% is held out.
    mass = d / "massachusetts" / "22978945_15.tif"
    with rasterio.open(mass) as src:
        split = int(src.width * 0.65)
        width, height = src.width, src.height
    crop(mass, parts / "mass-left.tif", Window(0, 0, split, height))
    crop(mass, heldout / "massachusetts-right.tif", Window(split, 0, width - split, height))
    shutil.copy(d / "massachusetts" / "22978945_15.gpkg", heldout / "massachusetts.gpkg")
    # Massachusetts declares nodata=255, which is also the colour of white roofs.
    manifest["sources"]["massachusetts"] = chips(
        args.mapseg,
        parts / "mass-left.tif",
        d / "massachusetts" / "22978945_15.gpkg",
        parts / "massachusetts",
        "--nodata",
        "none",
    )
    manifest["heldout"]["massachusetts"] = f"columns {split}..{width} of 22978945_15.tif"

    # Inria Austin (0.3 m): the bottom-right quadrant is held out (and is the demo sample).
    inria = d / "inria-austin" / "aerial_sample.tif"
    mask = d / "inria-austin" / "aerial_sample_mask.tif"
    for name, window in (
        ("top", Window(0, 0, 1000, 500)),
        ("bottomleft", Window(0, 500, 500, 500)),
    ):
        crop(inria, parts / f"inria-{name}.tif", window)
        crop(mask, parts / f"inria-{name}-mask.tif", window)
        manifest["sources"][f"inria-{name}"] = chips(
            args.mapseg,
            parts / f"inria-{name}.tif",
            parts / f"inria-{name}-mask.tif",
            parts / f"inria-{name}",
        )
    crop(inria, heldout / "inria-bottomright.tif", Window(500, 500, 500, 500))
    crop(mask, heldout / "inria-bottomright-mask.tif", Window(500, 500, 500, 500))
    manifest["heldout"]["inria"] = "bottom-right 500x500 quadrant"

    # SpaceNet Rio (EPSG:4326, ~0.5 m): tiles 50-61 train, 62-64 are held out.
    rio = sorted((d / "spacenet-rio" / "3band").glob("*.tif"))
    for tif in rio:
        number = int(tif.stem.rsplit("img", 1)[1])
        label = d / "spacenet-rio" / "building_mask" / tif.name
        if number >= 62:
            shutil.copy(tif, heldout / f"rio-{number}.tif")
            shutil.copy(label, heldout / f"rio-{number}-mask.tif")
            continue
        manifest["sources"][f"rio-{number}"] = chips(
            args.mapseg,
            tif,
            label,
            parts / f"rio-{number}",
            "--nodata",
            "0",
            "--skip-nodata",
            "0.5",
        )
    manifest["heldout"]["spacenet-rio"] = "tiles img62, img63, img64"

    # Small sets, all for training.
    manifest["sources"]["tanzania"] = chips(
        args.mapseg,
        d / "tanzania-drone" / "tanzania_sample.tif",
        d / "tanzania-drone" / "tanzania_sample_buildings.geojson",
        parts / "tanzania",
    )
    for i in (1, 2):
        manifest["sources"][f"new-brunswick-{i}"] = chips(
            args.mapseg,
            d / "new-brunswick" / f"23322E759967N_clipped_1m_{i}of2.tif",
            d / "new-brunswick" / "BakerLake_2017_clipped.gpkg",
            parts / f"new-brunswick-{i}",
            "--where",
            "Niveau_2 = 'Building'",
        )
    sn = d / "spacenet-samples"
    manifest["sources"]["las-vegas"] = chips(
        args.mapseg,
        sn / "SpaceNet_AOI_2_Las_Vegas-056155973080_01_P001-WV03-RGB.tif",
        sn / "SpaceNet_AOI_2_Las_Vegas-056155973080_01_P001-WV03.gpkg",
        parts / "las-vegas",
    )
    atl = sorted(sn.glob("SN4_*.tif"))[0]
    manifest["sources"]["atlanta"] = chips(
        args.mapseg, atl, sorted(sn.glob("SN4_*.geojson"))[0], parts / "atlanta"
    )

    manifest["sources"]["crowdai"] = crowdai(
        d / "crowdai-sample" / "train", parts / "crowdai", heldout / "crowdai"
    )
    manifest["heldout"]["crowdai"] = "the seed split's test images (seed 108241), at 0.5 m"
    sets = sorted(p for p in parts.iterdir() if (p / "annotation.json").is_file())
    manifest["train"] = merge(sets, out / "train")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    print(json.dumps(manifest["train"]))


if __name__ == "__main__":
    main()
