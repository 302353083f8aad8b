"""Tiny generated test data shared by the test suite."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

#: Colours the generator paints: buildings (category 100), sheds (category 200), background.
BUILDING_RGB = (220, 30, 30)
SHED_RGB = (30, 30, 220)
BACKGROUND_RGB = (20, 90, 20)

BUILDING = 100
SHED = 200


@dataclass(frozen=True)
class CocoFixture:
    """Paths of a generated COCO set and the masks its generator drew."""

    annotations: Path
    images_dir: Path
    # image id -> category id -> HxW uint8 mask of what was drawn for that category.
    drawn: dict[int, dict[int, np.ndarray]] = field(repr=False)
    # image id -> file name.
    files: dict[int, str] = field(repr=False)

    def expected_mask(self, image_id: int, category_ids: tuple[int, ...]) -> np.ndarray:
        """Union of the drawn masks of ``category_ids`` on ``image_id``."""
        layers = [m for c, m in self.drawn[image_id].items() if c in category_ids]
        return np.maximum.reduce(layers).astype(np.uint8)

    def data(self) -> dict[str, Any]:
        """The annotation JSON, parsed (to write broken variants)."""
        result: dict[str, Any] = json.loads(self.annotations.read_text())
        return result


def rect_polygon(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """COCO polygon of pixel-corner vertices; pycocotools fills exactly ``[y0:y1, x0:x1]``."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def rect_mask(shape: tuple[int, int], *rects: tuple[int, int, int, int]) -> np.ndarray:
    """HxW uint8 mask with the ``(x0, y0, x1, y1)`` rectangles set."""
    out = np.zeros(shape, dtype=np.uint8)
    for x0, y0, x1, y1 in rects:
        out[y0:y1, x0:x1] = 1
    return out


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major run lengths, zeros first), written by hand."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    counts: list[int] = []
    value, run = 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = int(pixel), 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _paint(masks: dict[int, np.ndarray], mode: str) -> Image.Image:
    shape = next(iter(masks.values())).shape
    rgb = np.empty((*shape, 3), dtype=np.uint8)
    rgb[:] = BACKGROUND_RGB
    for category, mask in masks.items():
        rgb[mask.astype(bool)] = BUILDING_RGB if category == BUILDING else SHED_RGB
    image = Image.fromarray(rgb, "RGB")
    if mode == "L":
        return image.convert("L")
    if mode == "RGBA":
        rgba = image.convert("RGBA")
        rgba.putalpha(128)
        return rgba
    return image


def make_coco(tmp_path: Path) -> CocoFixture:
    """Write a tiny COCO set with the traps real exports have.

    Images (id: what it tests):

    * 1 (32x32 RGB): two building polygons, one of them L-shaped.
    * 2 (32x32 RGB): an ``iscrowd=1`` uncompressed-RLE building and a shed polygon.
    * 5 (40x48 RGB, another size): a building as compressed RLE.
    * 7 (32x32 grayscale): one building polygon.
    * 9 (32x32 RGBA, alpha 128): one building polygon.
    * 11 (32x32 RGB): no annotation; not part of any dataset.
    * 12 (32x32 RGB): only a shed.

    Categories are 100 ("building", crowdAI's id) and 200 ("shed"). Every
    ``bbox`` is wrong on purpose as in crowdAI (``bbox[0] == bbox[1]``,
    covering the whole image), so a mask built from bboxes fails the tests.
    """
    images_dir = tmp_path / "images"
    images_dir.mkdir(parents=True)
    square = (32, 32)
    drawn: dict[int, dict[int, np.ndarray]] = {
        1: {BUILDING: rect_mask(square, (2, 3, 10, 8), (14, 14, 24, 18), (14, 18, 18, 28))},
        2: {BUILDING: rect_mask(square, (5, 5, 15, 20)), SHED: rect_mask(square, (20, 2, 30, 9))},
        5: {BUILDING: rect_mask((40, 48), (30, 10, 46, 36))},
        7: {BUILDING: rect_mask(square, (8, 8, 20, 16))},
        9: {BUILDING: rect_mask(square, (0, 0, 6, 32))},
        11: {BUILDING: np.zeros(square, np.uint8)},
        12: {SHED: rect_mask(square, (10, 10, 22, 22))},
    }
    modes = {1: "RGB", 2: "RGB", 5: "RGB", 7: "L", 9: "RGBA", 11: "RGB", 12: "RGB"}
    files = {i: f"{i:06d}.png" for i in drawn}
    for image_id, masks in drawn.items():
        _paint(masks, modes[image_id]).save(images_dir / files[image_id])

    l_shape = [14, 14, 24, 14, 24, 18, 18, 18, 18, 28, 14, 28]
    compressed = mask_utils.encode(np.asfortranarray(drawn[5][BUILDING]))
    compressed["counts"] = compressed["counts"].decode("ascii")
    segmentations: list[tuple[int, int, Any, int]] = [
        (1, BUILDING, [rect_polygon(2, 3, 10, 8)], 0),
        (1, BUILDING, [l_shape], 0),
        (2, BUILDING, uncompressed_rle(drawn[2][BUILDING]), 1),
        (2, SHED, [rect_polygon(20, 2, 30, 9)], 0),
        (5, BUILDING, compressed, 0),
        (7, BUILDING, [rect_polygon(8, 8, 20, 16)], 0),
        (9, BUILDING, [rect_polygon(0, 0, 6, 32)], 0),
        (12, SHED, [rect_polygon(10, 10, 22, 22)], 0),
    ]
    annotations = [
        {
            "id": 1000 + n,
            "image_id": image_id,
            "category_id": category,
            "segmentation": segmentation,
            "iscrowd": crowd,
            "area": float(drawn[image_id][category].sum()),
            "bbox": [0.0, 0.0, 32.0, 32.0],
        }
        for n, (image_id, category, segmentation, crowd) in enumerate(segmentations)
    ]
    shapes = {i: next(iter(m.values())).shape for i, m in drawn.items()}
    data = {
        "info": {"description": "mapseg test set"},
        "categories": [
            {"id": BUILDING, "name": "building", "supercategory": "building"},
            {"id": SHED, "name": "shed", "supercategory": "building"},
        ],
        "images": [
            {"id": i, "file_name": files[i], "height": shapes[i][0], "width": shapes[i][1]}
            for i in drawn
        ],
        "annotations": annotations,
    }
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(data))
    return CocoFixture(annotations=path, images_dir=images_dir, drawn=drawn, files=files)


def make_learnable_coco(
    tmp_path: Path, n_images: int = 12, size: int = 64, seed: int = 3
) -> tuple[Path, Path]:
    """A COCO set a tiny model can learn in a few epochs: red roofs on a green ground.

    Returns ``(annotation.json, images_dir)``. Each image has one to three
    axis-aligned red rectangles (category 100) at random places.
    """
    rng = np.random.default_rng(seed)
    images_dir = tmp_path / "images"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        canvas = np.empty((size, size, 3), np.uint8)
        canvas[:] = BACKGROUND_RGB
        for _ in range(int(rng.integers(1, 4))):
            w, h = (int(v) for v in rng.integers(8, size // 2, 2))
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            canvas[y0 : y0 + h, x0 : x0 + w] = BUILDING_RGB
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": BUILDING,
                    "segmentation": [rect_polygon(x0, y0, x0 + w, y0 + h)],
                    "iscrowd": 0,
                    "area": float(w * h),
                    "bbox": [x0, y0, w, h],
                }
            )
        name = f"{image_id:04d}.png"
        Image.fromarray(canvas).save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "height": size, "width": size})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": BUILDING, "name": "building"}],
    }
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(data))
    return path, images_dir
