"""Build the bundled model's train / valid / held-out COCO sets from ../shared/data.

Every source whose licence allows training a model that ships (CC BY, CC BY-SA,
ODbL, attribution) is brought to the working GSD (``WORKING_GSD``, 0.3 m; why:
docs/bundled-model.md, "Working resolution") and cut into ``CHIP`` px chips.
Sources without a training licence, and labels known to be wrong, only go to
``evaluation-only/``. Splits are spatial (by region, tile column or quadrant,
never by chip; the rule of each source is in ``SOURCES`` and in the docs).

    $ .venv/bin/python scripts/bundled_model/prepare_data.py ../shared/data out/bundled-data

Writes, under OUT:

* ``train/``, ``valid/``, ``heldout/``, ``evaluation-only/``: one COCO set each
  (``annotation.json`` + ``images/``), category 1 "building"; every image record
  has ``source``, ``region`` (its spatial unit), ``split``, ``gsd`` (metres per
  pixel of the chip) and ``source_gsd`` (of the imagery it was cut from).
  Chips without buildings are kept (negatives).
* ``heldout-rasters/``: the held-out georeferenced rasters and labels, for
  ``mapseg tile-infer`` + ``mapseg evaluate-vectors`` at the source resolution.
* ``manifest.json``: per source and split, chips and buildings; licences.
* ``CREDITS.md``: who to credit for what.

Paths written into the outputs are relative to OUT: nothing of this machine.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Metres per pixel every training chip is resampled to.
WORKING_GSD = 0.3
#: Chip side in pixels at the working GSD (the b0 preset's input).
CHIP = 256
#: Web-Mercator sphere radius (EPSG:3857), metres.
MERCATOR_R = 6378137.0
SPLITS = ("train", "valid", "heldout", "evaluation-only")


@dataclass(frozen=True)
class Source:
    """One folder of ../shared/data: its licence, credit and held-out rule."""

    name: str
    licence: str
    credit: str
    # "train": split by the rule into train/valid/heldout; "evaluation": evaluation-only.
    use: str
    heldout_rule: str


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "crowdai-sample",
            "CC BY-SA 4.0",
            "crowdAI Mapping Challenge (imagery SpaceNet/Maxar)",
            "train",
            "tiles carry no location: the seed split (seed 108241): 6 test tiles held out, "
            "4 validation",
        ),
        Source(
            "inria-austin",
            "attribution (Inria Aerial Image Labeling, Maggiori et al. 2017)",
            "Inria Aerial Image Labeling dataset, Maggiori et al. 2017",
            "train",
            "bottom-right 500x500 px quadrant held out, bottom-left validation, top half trains",
        ),
        Source(
            "spacenet-rio",
            "CC BY-SA 4.0",
            "SpaceNet (AOI 1 Rio de Janeiro), Maxar",
            "train",
            "tiles run north to south: img62-64 (southmost) held out, img60-61 validation",
        ),
        Source(
            "spacenet-samples",
            "CC BY-SA 4.0",
            "SpaceNet (Las Vegas WV3, Atlanta SN4), Maxar",
            "train",
            "the Atlanta crop (another city) held out; Las Vegas trains; the SN7 mosaic "
            "(Planet, ~3.8 m) is outside the model's 0.075-1 m range and unused",
        ),
        Source(
            "tanzania-drone",
            "CC BY 4.0",
            "Open AI Tanzania Building Footprint Segmentation Challenge",
            "train",
            "right half (x >= 500 px of 1000) held out",
        ),
        Source(
            "hotosm-oam",
            "imagery CC BY 4.0; labels ODbL 1.0",
            "HOT fAIr/RAMP: imagery OpenAerialMap contributors; labels (c) OpenStreetMap "
            "contributors",
            "train",
            "z19 tiles only (z20/z21 show the same ground), split by z19 column: the east "
            "columns held out, the next ones validation (ZANZIBAR/CATANDUANES_CUTS); Banepa "
            "with hotosm-fair-banepa by one rule (BANEPA_CUTS); Nairobi evaluation only "
            "(labels offset 1-3 m, buildings missing)",
        ),
        Source(
            "hotosm-fair-banepa",
            "imagery CC BY 4.0; labels ODbL 1.0",
            "HOT fAIr sample dataset (Banepa): imagery OpenAerialMap contributors; labels "
            "(c) OpenStreetMap contributors",
            "train",
            "one rule with hotosm-oam 3_banepa_np (they adjoin): z19 column x >= 386694 "
            "held out, x = 386693 validation",
        ),
        Source(
            "massachusetts",
            "no licence stated",
            "Massachusetts Buildings Dataset, Mnih 2013",
            "evaluation",
            "evaluation only (no licence to train a shipped model): the whole tile",
        ),
        Source(
            "new-brunswick",
            "not stated in ../shared/data/README.md (New Brunswick open data via NRCan)",
            "New Brunswick open data (via NRCan geo-deep-learning tests)",
            "evaluation",
            "evaluation only until its licence is confirmed: both crops",
        ),
        Source(
            "jonkoping-barnarp",
            "unknown",
            "Barnarp, Jönköping orthophoto",
            "evaluation",
            "evaluation only (licence unknown): all 170 chips",
        ),
    )
}

#: z19 columns (x) from which tiles are validation / held out, per hotosm-oam area.
ZANZIBAR_CUTS = (319297, 319298)
CATANDUANES_CUTS = (443120, 443121)
#: Banepa: hotosm-oam 3_banepa_np (x 386697..386719) and hotosm-fair-banepa (x 386690..386695).
BANEPA_CUTS = (386693, 386694)
HOTOSM_AREAS = {
    "1_zanzibar_tz": ZANZIBAR_CUTS,
    "3_banepa_np": BANEPA_CUTS,
    "4_catanduanes_ph": CATANDUANES_CUTS,
}
#: Nairobi's labels are offset by 1-3 m and miss buildings (README): evaluation only.
NAIROBI = "5_nairobi_ke"
#: Estimated GSD of the Jönköping scene (../shared/data/README.md: from house sizes).
JONKOPING_GSD = 0.25


# === Pure helpers: tiles, resolution, splits ===


def parse_tile_name(name: str) -> tuple[int, int, int]:
    """``(z, x, y)`` of an OAM chip name ``OAM-<x>-<y>-<z>.png`` (or ``.tif``)."""
    match = re.fullmatch(r"OAM-(\d+)-(\d+)-(\d+)\.\w+", Path(name).name)
    if match is None:
        raise ValueError(f"{name} is not an OAM-<x>-<y>-<z> tile name")
    x, y, z = (int(v) for v in match.groups())
    return z, x, y


def tile_bounds_3857(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(minx, miny, maxx, maxy)`` of XYZ tile ``z/x/y`` in EPSG:3857 metres (y down)."""
    span = 2 * math.pi * MERCATOR_R
    size = span / 2**z
    minx = -span / 2 + x * size
    maxy = span / 2 - y * size
    return minx, maxy - size, minx + size, maxy


def mercator_to_lonlat(mx: float, my: float) -> tuple[float, float]:
    """EPSG:3857 metres to (longitude, latitude) degrees on the WGS84 sphere model."""
    lon = math.degrees(mx / MERCATOR_R)
    lat = math.degrees(2 * math.atan(math.exp(my / MERCATOR_R)) - math.pi / 2)
    return lon, lat


def tile_bounds_lonlat(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` degrees of tile ``z/x/y``.

    A 256 px tile spans < 80 m at z19, so an EPSG:4326 grid over these bounds
    differs from the Mercator one by far less than a millimetre: tiles can be
    written as plain EPSG:4326 GeoTIFFs, whose GSD mapseg converts with the
    latitude (EPSG:3857 units are metres only at the equator).
    """
    minx, miny, maxx, maxy = tile_bounds_3857(z, x, y)
    west, south = mercator_to_lonlat(minx, miny)
    east, north = mercator_to_lonlat(maxx, maxy)
    return west, south, east, north


def tile_ground_gsd(z: int, y: int, pixels: int = 256) -> float:
    """Ground metres per pixel of tile ``z/x/y``: Mercator metres times cos(latitude)."""
    minx, miny, maxx, maxy = tile_bounds_3857(z, 0, y)
    _, lat = mercator_to_lonlat(0.0, (miny + maxy) / 2)
    return (maxx - minx) / pixels * math.cos(math.radians(lat))


def parent_tile(z: int, x: int, y: int, zoom: int = 19) -> tuple[int, int]:
    """``(x, y)`` of the zoom-``zoom`` tile holding tile ``z/x/y`` (itself when z == zoom)."""
    if z < zoom:
        raise ValueError(f"tile z{z} is coarser than z{zoom}")
    shift = z - zoom
    return x >> shift, y >> shift


def column_split(x: int, cuts: tuple[int, int]) -> str:
    """Split of a z19 column: ``x >= cuts[1]`` held out, ``x >= cuts[0]`` valid, else train.

    Cutting by column keeps each split a contiguous strip of ground, and every
    zoom level of a place maps to the same z19 column (:func:`parent_tile`), so
    no view of a held-out building can reach training.
    """
    valid_from, heldout_from = cuts
    if x >= heldout_from:
        return "heldout"
    return "valid" if x >= valid_from else "train"


def rio_split(number: int) -> str:
    """SpaceNet Rio tile ``img<number>``: 62-64 held out, 60-61 valid (they run north-south)."""
    if number >= 62:
        return "heldout"
    return "valid" if number >= 60 else "train"


def resampled_size(width: int, height: int, gsd: float, target: float) -> tuple[int, int]:
    """Pixel size of a ``width x height`` image at ``gsd`` once resampled to ``target``."""
    factor = gsd / target
    return max(1, round(width * factor)), max(1, round(height * factor))


def building_stats(areas_m2: Iterable[float], gsds: Iterable[float] = (0.3, 0.5)) -> dict:
    """Median / 10th percentile building side (sqrt of area) in metres and in pixels per GSD."""
    sides = np.sqrt(np.asarray(list(areas_m2), dtype=float))
    if sides.size == 0:
        return {"buildings": 0}
    p10, p50 = (float(np.percentile(sides, q)) for q in (10, 50))
    out: dict[str, Any] = {"buildings": int(sides.size), "side_p10_m": p10, "side_p50_m": p50}
    for g in gsds:
        out[f"side_p10_px_{g:g}m"] = p10 / g
        out[f"side_p50_px_{g:g}m"] = p50 / g
    return out


# === COCO assembly ===


class CocoWriter:
    """One COCO set being assembled: images copied in, ids renumbered, category 1."""

    def __init__(self, root: Path):
        self.root = root
        (root / "images").mkdir(parents=True, exist_ok=True)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add_set(
        self, coco_dir: Path, prefix: str, fields: dict[str, Any], keep: Callable[[dict], bool]
    ) -> tuple[int, int]:
        """Copy the images of a chips folder (those ``keep`` accepts); returns (chips, anns)."""
        data = json.loads((coco_dir / "annotation.json").read_text())
        by_image: dict[int, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        chips = anns = 0
        for im in data["images"]:
            if not keep(im):
                continue
            name = f"{prefix}__{Path(im['file_name']).name}"
            shutil.copy(coco_dir / "images" / im["file_name"], self.root / "images" / name)
            new_id = len(self.images) + 1
            record = {"id": new_id, "file_name": name, "width": im["width"]}
            record.update(height=im["height"], **fields)
            self.images.append(record)
            for ann in by_image.get(im["id"], []):
                self.annotations.append(
                    {
                        **ann,
                        "id": len(self.annotations) + 1,
                        "image_id": new_id,
                        "category_id": 1,
                    }
                )
                anns += 1
            chips += 1
        return chips, anns

    def write(self) -> dict[str, int]:
        coco = {
            "info": {"description": "mapseg bundled-model data", "gsd_m": WORKING_GSD},
            "licenses": [],
            "categories": [{"id": 1, "name": "building", "supercategory": "building"}],
            "images": self.images,
            "annotations": self.annotations,
        }
        (self.root / "annotation.json").write_text(json.dumps(coco))
        return {"images": len(self.images), "annotations": len(self.annotations)}


# === Sources (I/O) ===


class Builder:
    """Runs each source into the four COCO sets and records what went where."""

    def __init__(self, data: Path, out: Path, work: Path):
        self.data, self.out, self.work = data, out, work
        self.sets = {name: CocoWriter(out / name) for name in SPLITS}
        self.counts: dict[str, dict[str, dict[str, int]]] = {}
        self.gsds: dict[str, float] = {}
        self.areas: dict[str, list[float]] = {}
        (out / "heldout-rasters").mkdir(parents=True, exist_ok=True)

    def chips(
        self,
        source: str,
        region: str,
        split: str | Callable[[dict], str],
        raster: Path,
        labels: Path,
        **options: Any,
    ) -> None:
        """``make_chips`` of one raster at the working GSD into the split(s)."""
        from mapseg_core.data.chips import ChipConfig, make_chips

        config = ChipConfig(size=CHIP, gsd=WORKING_GSD, **options)
        target = self.work / f"{source}-{region}"
        summary = make_chips(raster, labels, target, config, overwrite=True)
        self.gsds.setdefault(source, _raster_gsd(raster))
        self._collect(source, region, split, target, self.gsds[source], summary.gsd_m)

    def _collect(
        self,
        source: str,
        region: str,
        split: str | Callable[[dict], str],
        coco_dir: Path,
        source_gsd: float,
        gsd: float,
    ) -> None:
        pick = split if callable(split) else (lambda im, s=split: s)
        for name in SPLITS:
            fields = {"source": source, "region": region, "split": name}
            fields.update(gsd=round(gsd, 4), source_gsd=round(source_gsd, 4))
            chips, anns = self.sets[name].add_set(
                coco_dir,
                f"{source}-{region}",
                fields,
                lambda im, n=name: pick(im) == n,  # type: ignore[misc]
            )
            if chips:
                entry = self.counts.setdefault(source, {}).setdefault(name, {})
                entry["chips"] = entry.get("chips", 0) + chips
                entry["buildings"] = entry.get("buildings", 0) + anns
                entry["empty_chips"] = entry.get("empty_chips", 0)
        data = json.loads((coco_dir / "annotation.json").read_text())
        self.areas.setdefault(source, []).extend(
            float(a["area"]) * gsd**2 for a in data["annotations"] if "area" in a
        )
        empty = {im["id"] for im in data["images"]} - {a["image_id"] for a in data["annotations"]}
        for im in data["images"]:
            if im["id"] in empty:
                self.counts[source][pick(im)]["empty_chips"] += 1

    def heldout_raster(self, src: Path, name: str) -> None:
        shutil.copy(src, self.out / "heldout-rasters" / name)


def _raster_gsd(path: Path) -> float:
    """Ground resolution at the raster's centre, in metres (as tile-infer measures it)."""
    import rasterio

    from mapseg_core.raster import raster_gsd

    with rasterio.open(path) as src:
        return raster_gsd(src.crs, src.transform, src.width, src.height)[0]


def crop(src_path: Path, dst_path: Path, window: Any) -> Path:
    """Write ``window`` of a GeoTIFF as a new GeoTIFF (same CRS, shifted transform)."""
    import rasterio

    with rasterio.open(src_path) as src:
        profile = src.profile.copy()
        profile.update(
            width=int(window.width),
            height=int(window.height),
            transform=src.window_transform(window),
            tiled=False,
        )
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        dst_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return dst_path


def xyz_geotiff(png: Path, dst: Path) -> Path:
    """An OAM XYZ chip as an EPSG:4326 GeoTIFF georeferenced from its tile name."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_bounds

    z, x, y = parse_tile_name(png.name)
    with Image.open(png) as img:
        rgb = np.asarray(img.convert("RGB"))
    height, width = rgb.shape[:2]
    transform = from_bounds(*tile_bounds_lonlat(z, x, y), width, height)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3}
    profile.update(dtype="uint8", crs="EPSG:4326", transform=transform)
    with rasterio.open(dst, "w", **profile) as ds:
        ds.write(np.moveaxis(rgb, -1, 0))
    return dst


def tile_chip(
    b: Builder, source: str, region: str, split: str, tif: Path, labels: Path, mask: Path
) -> None:
    """One georeferenced tile: vector labels, or its mask when no footprint is on it (negative)."""
    from mapseg_core.errors import InputError

    try:
        b.chips(source, region, split, tif, labels)
    except InputError:  # no footprint on this tile: an empty chip, kept as a negative
        b.chips(source, region, split, tif, mask)


def hotosm(b: Builder) -> None:
    """hotosm-oam z19 tiles (areas 1, 3, 4 train by column; Nairobi evaluation only)."""
    root = b.data / "hotosm-oam"
    for area in sorted(p.name for p in root.iterdir() if p.is_dir()):
        labels = root / area / "labels_osm_4326.geojson"
        for png in sorted((root / area / "images").glob("OAM-*-19.png")):
            z, x, y = parse_tile_name(png.name)
            if area == NAIROBI:
                split = "evaluation-only"
            else:
                split = column_split(parent_tile(z, x, y)[0], HOTOSM_AREAS[area])
            tif = xyz_geotiff(png, b.work / f"{png.stem}.tif")
            mask = root / area / "masks" / png.name
            source = "hotosm-oam-nairobi" if area == NAIROBI else "hotosm-oam"
            tile_chip(b, source, f"{area}-z19-{x}-{y}", split, tif, labels, mask)
            b.gsds.setdefault(f"{area} z19", tile_ground_gsd(z, y))
            b.gsds.setdefault(f"{area} z21", tile_ground_gsd(21, y * 4))


def fair_banepa(b: Builder) -> None:
    """fAIr Banepa TIFFs, georeferenced in place by their .aux.xml sidecars (GDAL reads them)."""
    root = b.data / "hotosm-fair-banepa"
    labels = root / "labels_osm_4326.geojson"
    for tif in sorted((root / "images").glob("OAM-*.tif")):
        z, x, y = parse_tile_name(tif.name)
        split = column_split(parent_tile(z, x, y)[0], BANEPA_CUTS)
        tile_chip(
            b, "hotosm-fair-banepa", f"z19-{x}-{y}", split, tif, labels, root / "masks" / tif.name
        )


def georeferenced_sources(b: Builder) -> None:
    """Inria, Rio, SpaceNet samples, Tanzania: crops by the held-out rule, chips at 0.3 m."""
    from rasterio.windows import Window

    d, parts = b.data, b.work / "crops"
    inria, mask = (
        d / "inria-austin" / "aerial_sample.tif",
        d / "inria-austin" / "aerial_sample_mask.tif",
    )
    for name, split, window in (
        ("top", "train", Window(0, 0, 1000, 500)),
        ("bottomleft", "valid", Window(0, 500, 500, 500)),
        ("bottomright", "heldout", Window(500, 500, 500, 500)),
    ):
        image = crop(inria, parts / f"inria-{name}.tif", window)
        labels = crop(mask, parts / f"inria-{name}-mask.tif", window)
        b.chips("inria-austin", name, split, image, labels)
        if split == "heldout":
            b.heldout_raster(image, "inria-bottomright.tif")
            b.heldout_raster(labels, "inria-bottomright-mask.tif")

    for tif in sorted((d / "spacenet-rio" / "3band").glob("*.tif")):
        number = int(tif.stem.rsplit("img", 1)[1])
        label = d / "spacenet-rio" / "building_mask" / tif.name
        split = rio_split(number)
        b.chips("spacenet-rio", f"img{number}", split, tif, label, nodata=0, skip_nodata=0.5)
        if split == "heldout":
            b.heldout_raster(tif, f"rio-{number}.tif")
            b.heldout_raster(label, f"rio-{number}-mask.tif")

    sn = d / "spacenet-samples"
    vegas = "SpaceNet_AOI_2_Las_Vegas-056155973080_01_P001-WV03"
    b.chips("spacenet-samples", "las-vegas", "train", sn / f"{vegas}-RGB.tif", sn / f"{vegas}.gpkg")
    atlanta, atlanta_labels = sorted(sn.glob("SN4_*.tif"))[0], sorted(sn.glob("SN4_*.geojson"))[0]
    b.chips("spacenet-samples", "atlanta", "heldout", atlanta, atlanta_labels)
    b.heldout_raster(atlanta, "atlanta.tif")
    b.heldout_raster(atlanta_labels, "atlanta.geojson")

    tz = d / "tanzania-drone" / "tanzania_sample.tif"
    tz_labels = d / "tanzania-drone" / "tanzania_sample_buildings.geojson"
    for name, split, window in (
        ("left", "train", Window(0, 0, 500, 1000)),
        ("right", "heldout", Window(500, 0, 500, 1000)),
    ):
        image = crop(tz, parts / f"tanzania-{name}.tif", window)
        try:
            b.chips("tanzania-drone", name, split, image, tz_labels)
        except Exception as exc:  # a half without any footprint: say so, keep going
            print(f"tanzania-drone {name}: {exc}")
        if split == "heldout":
            b.heldout_raster(image, "tanzania-right.tif")
    b.heldout_raster(tz_labels, "tanzania.geojson")


def evaluation_only(b: Builder) -> None:
    """Massachusetts, New Brunswick, Jönköping: never trained on (licences)."""
    d = b.data
    mass = d / "massachusetts"
    # Massachusetts declares nodata=255, which is also the colour of white roofs.
    b.chips(
        "massachusetts",
        "tile",
        "evaluation-only",
        mass / "22978945_15.tif",
        mass / "22978945_15.gpkg",
        nodata="none",
    )
    b.heldout_raster(mass / "22978945_15.tif", "massachusetts.tif")
    b.heldout_raster(mass / "22978945_15.gpkg", "massachusetts.gpkg")
    for i in (1, 2):
        b.chips(
            "new-brunswick",
            f"crop{i}",
            "evaluation-only",
            d / "new-brunswick" / f"23322E759967N_clipped_1m_{i}of2.tif",
            d / "new-brunswick" / "BakerLake_2017_clipped.gpkg",
            where="Niveau_2 = 'Building'",
        )
    jonkoping(b)


def jonkoping(b: Builder) -> None:
    """Jönköping JPEG chips (no georeference, ~0.25 m): resampled to 0.3 m, instances from masks."""
    import cv2
    from PIL import Image

    from mapseg_core.data.instances import mask_instances

    root = b.data / "jonkoping-barnarp"
    target = b.work / "jonkoping"
    (target / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for jpg in sorted((root / "images").glob("*.jpg")):
        with Image.open(jpg) as img:
            rgb = np.asarray(img.convert("RGB"))
        with Image.open(root / "masks" / f"{jpg.stem}.png") as img:
            building = np.asarray(img.convert("L")) > 127
        size = resampled_size(rgb.shape[1], rgb.shape[0], JONKOPING_GSD, WORKING_GSD)
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        building = cv2.resize(building.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        Image.fromarray(rgb).save(target / "images" / f"{jpg.stem}.png")
        image_id = len(images) + 1
        images.append(
            {"id": image_id, "file_name": f"{jpg.stem}.png", "width": size[0], "height": size[1]}
        )
        for inst in mask_instances(building.astype(bool), "polygon", 4):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    **inst,
                }
            )
    (target / "annotation.json").write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "building"}],
            }
        )
    )
    b._collect("jonkoping-barnarp", "scene", "evaluation-only", target, JONKOPING_GSD, WORKING_GSD)
    b.gsds["jonkoping-barnarp"] = JONKOPING_GSD


def crowdai(b: Builder) -> None:
    """crowdAI tiles (~0.3 m: the working GSD, no resampling); the seed split decides."""
    from mapseg_core.data.splits import make_splits

    root = b.data / "crowdai-sample" / "train"
    data = json.loads((root / "annotation.json").read_text())
    splits = make_splits(sorted(im["id"] for im in data["images"]), 0.7, 0.3, 108241)
    split_of = {i: "train" for i in splits.train}
    split_of.update({i: "valid" for i in splits.valid})
    split_of.update({i: "heldout" for i in splits.test})
    b.gsds["crowdai-sample"] = WORKING_GSD
    b._collect(
        "crowdai-sample", "tiles", lambda im: split_of[im["id"]], root, WORKING_GSD, WORKING_GSD
    )


def credits_markdown() -> str:
    lines = ["# Data of the bundled model: credits and licences", ""]
    lines += ["| source | used for | licence | credit | held-out rule |", "|---|---|---|---|---|"]
    for s in SOURCES.values():
        use = "training (train/valid/held-out)" if s.use == "train" else "evaluation only"
        lines.append(f"| {s.name} | {use} | {s.licence} | {s.credit} | {s.heldout_rule} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shared_data", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    with tempfile.TemporaryDirectory(
        dir=args.out.parent if args.out.parent.exists() else None
    ) as tmp:
        b = Builder(args.shared_data, args.out, Path(tmp))
        crowdai(b)
        georeferenced_sources(b)
        hotosm(b)
        fair_banepa(b)
        evaluation_only(b)
        totals = {name: writer.write() for name, writer in b.sets.items()}
    manifest = {
        "working_gsd": WORKING_GSD,
        "chip": CHIP,
        "splits": totals,
        "sources": {
            name: {
                "licence": SOURCES[name].licence
                if name in SOURCES
                else SOURCES["hotosm-oam"].licence,
                "use": SOURCES[name].use if name in SOURCES else "evaluation",
                "heldout_rule": SOURCES[name].heldout_rule
                if name in SOURCES
                else "evaluation only: labels offset",
                "counts": counts,
                "source_gsd_m": round(b.gsds.get(name, 0.0), 4),
                "building_size": building_stats(b.areas.get(name, [])),
            }
            for name, counts in b.counts.items()
        },
        "gsd_m": {k: round(v, 4) for k, v in sorted(b.gsds.items())},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (args.out / "CREDITS.md").write_text(credits_markdown())
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
