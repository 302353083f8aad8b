"""Checks of a COCO annotation file before anything trains on it, one line naming each fix.

The JSON is COCO (lists and keys masks need), the categories asked for exist,
some image is annotated and every annotation has a ``segmentation``, and every
image file exists. :func:`~mapseg_core.data.coco.load_coco` runs them in that order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO

from mapseg_core.errors import DatasetError, InputFileNotFound

#: How many missing file names a "files missing" error lists.
_MISSING_SHOWN = 3


def chosen_categories(
    coco: COCO, category_ids: Sequence[int] | None, ann_path: Path
) -> tuple[int, ...]:
    """The categories whose union is the mask: those asked for (checked), else all."""
    file_cats = sorted(coco.cats)
    if category_ids is None:
        chosen = tuple(int(c) for c in file_cats)
        if not chosen:
            raise DatasetError(
                f"{ann_path.name} has no categories; add the building category to its "
                '"categories" list'
            )
    else:
        chosen = tuple(sorted({int(c) for c in category_ids}))
        unknown = [c for c in chosen if c not in coco.cats]
        if unknown or not chosen:
            listed = ", ".join(f"{c} ({coco.cats[c].get('name', '')})" for c in file_cats)
            raise DatasetError(
                f"category id(s) {unknown or list(chosen)} not in {ann_path.name}, which has "
                f"{listed or 'none'}; pass --category-ids with ids from that list"
            )
    return chosen


def annotated_images(coco: COCO, chosen: tuple[int, ...], ann_path: Path) -> set[int]:
    """Ids of the images with an annotation of ``chosen``; every such annotation has a shape."""
    annotated: set[int] = set()
    no_segmentation: list[Any] = []
    for ann_id in coco.getAnnIds(catIds=list(chosen)):
        ann = coco.anns[ann_id]
        if ann.get("image_id") not in coco.imgs:
            continue
        if not ann.get("segmentation"):
            no_segmentation.append(ann.get("id"))
            continue
        annotated.add(int(ann["image_id"]))
    if no_segmentation:
        raise DatasetError(
            f"{len(no_segmentation)} annotation(s) in {ann_path.name} have no segmentation "
            f"(first: id {no_segmentation[0]}); masks are built from segmentation, never bbox, "
            "so export polygons or RLE"
        )
    if not annotated:
        raise DatasetError(
            f"no image in {ann_path.name} has an annotation of categories {list(chosen)}; "
            "check --category-ids and that annotations reference listed images"
        )
    return annotated


def check_image_files(
    coco: COCO, image_ids: tuple[int, ...], img_dir: Path, ann_path: Path
) -> None:
    """Every image of the dataset exists in ``img_dir`` (one line naming the missing ones)."""
    if not img_dir.is_dir():
        raise InputFileNotFound(
            f"images folder {img_dir} not found; pass the folder holding the images of "
            f"{ann_path.name}"
        )
    missing = [
        str(coco.imgs[i].get("file_name"))
        for i in image_ids
        if not os.path.exists(img_dir / str(coco.imgs[i].get("file_name", "")))
    ]
    if missing:
        shown = ", ".join(missing[:_MISSING_SHOWN])
        more = ", ..." if len(missing) > _MISSING_SHOWN else ""
        raise DatasetError(
            f"{len(missing)} of {len(image_ids)} annotated images are missing from {img_dir} "
            f"({shown}{more}); check the images folder or restore the files"
        )


def read_coco_json(path: Path) -> dict[str, Any]:
    """Parse ``path`` and check it has the COCO lists and the keys masks need."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{path} is not valid JSON ({type(exc).__name__}); pass a COCO annotation .json file"
        ) from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise DatasetError(
            f"{path} is JSON but not COCO (needs 'images', 'annotations' and 'categories' "
            "lists); export the labels as COCO instances"
        )
    for kind, keys in (
        ("images", ("id", "file_name", "width", "height")),
        ("annotations", ("id", "image_id", "category_id")),
        ("categories", ("id",)),
    ):
        for record in data[kind]:
            if not isinstance(record, dict) or any(key not in record for key in keys):
                raise DatasetError(
                    f"an entry of '{kind}' in {path.name} lacks one of {list(keys)}; "
                    "fix the annotation file (first bad entry: "
                    f"{str(record)[:80]})"
                )
    return data
