"""COCO annotation files to image + building-mask pairs.

This is the only module of :mod:`mapseg_core.data` that opens paths: the
splits, augmentation and batching code work on the arrays it returns.

Masks are always rasterised from each annotation's ``segmentation``
(polygons, uncompressed or compressed RLE, ``iscrowd`` regions) with
pycocotools, never from ``bbox``: in the crowdAI Mapping Challenge export
about 40% of the ``bbox`` values are wrong (``bbox[0] == bbox[1]``), while the
polygons are right. Category ids are taken as the file states them (crowdAI's
building category is 100, not 1).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from mapseg_core.data.coco_checks import (
    annotated_images,
    check_image_files,
    chosen_categories,
    read_coco_json,
)
from mapseg_core.errors import DatasetError, InputFileNotFound

logger = logging.getLogger("mapseg")


@dataclass(frozen=True)
class CocoDataset:
    """A COCO file restricted to the categories whose union is the building mask.

    Build it with :func:`load_coco`, which validates the file and the image
    folder once so that loading samples during training cannot fail on the
    usual mistakes. Instances are safe to share between data-loading threads:
    the pycocotools index is only read after it is built.
    """

    # The COCO annotation JSON file.
    annotations: Path
    # Folder the images' ``file_name`` entries are relative to.
    images_dir: Path
    # Categories whose union is the mask, sorted.
    category_ids: tuple[int, ...]
    # Images with at least one annotation of ``category_ids`` (and negatives if asked), sorted.
    image_ids: tuple[int, ...]
    # The pycocotools index (read-only after build).
    _coco: COCO = field(repr=False, compare=False)
    # Image modes already reported as converted to RGB, so a grayscale dataset logs once per mode.
    # Unlocked on purpose (keeps the dataset picklable): two threads may both log a mode once.
    _warned_modes: set[str] = field(default_factory=set, repr=False, compare=False)
    # Metres per pixel the samples are delivered at (None: as stored). See :meth:`at_gsd`.
    gsd: float | None = None
    # Metres per pixel of the stored images where their record has no ``gsd`` field
    # (None: records without one are taken to be at ``gsd`` already).
    image_gsd: float | None = None

    def at_gsd(self, gsd: float | None, image_gsd: float | None = None) -> CocoDataset:
        """This dataset delivering images, masks and instance maps at ``gsd`` m/pixel.

        COCO exports carry no resolution: ``image_gsd`` says what the images
        are (``mapseg train/evaluate --image-gsd``), else each image record's
        ``gsd`` field (written by ``scripts/bundled_model/prepare_data.py``)
        does; an image with neither is delivered as stored. An explicit
        ``image_gsd`` wins over the records. Images are resampled with area
        averaging when shrinking (bilinear when enlarging), masks and instance
        maps with nearest neighbour, so samples match a model trained at
        ``gsd`` as tile-infer's resampling does.
        """
        for name, value in (("gsd", gsd), ("image_gsd", image_gsd)):
            if value is not None and not (value > 0 and np.isfinite(value)):
                raise DatasetError(f"{name} must be positive metres per pixel, got {value}")
        return replace(self, gsd=gsd, image_gsd=image_gsd)

    def source_gsd(self, image_id: int) -> float | None:
        """Metres per pixel of the stored image (``image_gsd``, else its record's ``gsd``)."""
        if self.image_gsd is not None:
            return float(self.image_gsd)
        value = self._coco.imgs[int(image_id)].get("gsd")
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def sample_shape(self, image_id: int) -> tuple[int, int]:
        """``(height, width)`` of the delivered sample (after resampling to ``gsd``)."""
        height, width = self._shape(image_id)
        factor = self._factor(image_id)
        if factor == 1.0:
            return height, width
        return max(1, round(height * factor)), max(1, round(width * factor))

    def _factor(self, image_id: int) -> float:
        source = self.source_gsd(image_id)
        if self.gsd is None or source is None or abs(source - self.gsd) <= 1e-9 * self.gsd:
            return 1.0
        return source / self.gsd

    def _resampled(self, image_id: int, array: np.ndarray, nearest: bool) -> np.ndarray:
        shape = self.sample_shape(image_id)
        if array.shape[:2] == shape:
            return array
        import cv2

        if nearest:
            interpolation = cv2.INTER_NEAREST
        else:
            interpolation = cv2.INTER_AREA if shape[0] < array.shape[0] else cv2.INTER_LINEAR
        out = cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)
        return np.ascontiguousarray(out.astype(array.dtype, copy=False))

    def image_info(self, image_id: int) -> dict[str, Any]:
        """The image's COCO record (``id``, ``file_name``, ``width``, ``height``, ...), a copy."""
        info = self._coco.imgs.get(int(image_id))
        if info is None:
            raise DatasetError(
                f"image id {image_id} is not in {self.annotations.name}; "
                "use an id from dataset.image_ids"
            )
        return dict(info)

    def load_image(self, image_id: int) -> np.ndarray:
        """The image as an ``HxWx3`` uint8 RGB array (resampled to :attr:`gsd`, see :meth:`at_gsd`).

        Grayscale, palette and RGBA images are converted to RGB (transparency
        is dropped) because the encoders take exactly three 0..255 bands; the
        first conversion of each mode is logged as a warning on the
        ``"mapseg"`` logger so that a silently wrong dataset gets noticed.
        """
        info = self.image_info(image_id)
        path = self.images_dir / info["file_name"]
        if not path.exists():
            raise DatasetError(
                f"image file {path} listed in {self.annotations.name} is missing; "
                "restore it or remove it from the annotation file"
            )
        try:
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                rgb = img if mode == "RGB" else img.convert("RGB")
                array = np.asarray(rgb, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as exc:
            raise DatasetError(
                f"cannot read image {path} ({type(exc).__name__}); "
                "replace the corrupt file or remove it from the annotation file"
            ) from exc
        if mode != "RGB":
            self._warn_converted(mode, path)
        expected = (int(info["height"]), int(info["width"]))
        if array.shape[:2] != expected:
            raise DatasetError(
                f"image {path} is {array.shape[0]}x{array.shape[1]} but "
                f"{self.annotations.name} says {expected[0]}x{expected[1]}; "
                "fix its height/width in the annotation file"
            )
        return self._resampled(image_id, np.ascontiguousarray(array), nearest=False)

    def check_images(self) -> None:
        """Open every image's header, so a corrupt file stops a run before it starts.

        Only the header is parsed (no pixels are decoded): a few milliseconds
        per image, against a failure hours into training.

        Raises:
            DatasetError: an image cannot be identified or has another size
                than its annotation record says.
        """
        for image_id in self.image_ids:
            info = self._coco.imgs[int(image_id)]
            path = self.images_dir / info["file_name"]
            try:
                with Image.open(path) as img:
                    size = img.size
            except (OSError, ValueError, SyntaxError, UnidentifiedImageError) as exc:
                raise DatasetError(
                    f"cannot read image {path} ({type(exc).__name__}); "
                    "replace the corrupt file or remove it from the annotation file"
                ) from None
            if size != (int(info["width"]), int(info["height"])):
                raise DatasetError(
                    f"image {path} is {size[1]}x{size[0]} but {self.annotations.name} says "
                    f"{info['height']}x{info['width']}; fix its height/width in the annotation file"
                )

    def _annotation_masks(self, image_id: int) -> Iterator[np.ndarray]:
        """Each annotation of ``category_ids`` on the image as an ``HxW`` uint8 mask, in order.

        Rasterised from ``segmentation`` with ``COCO.annToMask`` (polygons, RLE
        and ``iscrowd`` regions alike); ``bbox`` is never used because real
        exports get it wrong.
        """
        info = self.image_info(image_id)
        height, width = int(info["height"]), int(info["width"])
        ann_ids = self._coco.getAnnIds(imgIds=[int(image_id)], catIds=list(self.category_ids))
        for ann in self._coco.loadAnns(ann_ids):
            try:
                ann_mask = self._coco.annToMask(ann)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise DatasetError(
                    f"annotation {ann.get('id')} of image {image_id} has an unreadable "
                    f"segmentation ({type(exc).__name__}); fix or remove it in "
                    f"{self.annotations.name}"
                ) from exc
            if ann_mask.shape != (height, width):
                raise DatasetError(
                    f"annotation {ann.get('id')} of image {image_id} is "
                    f"{ann_mask.shape[0]}x{ann_mask.shape[1]} but the image is {height}x{width}; "
                    "fix the RLE size or the image's height/width in the annotation file"
                )
            yield ann_mask

    def _shape(self, image_id: int) -> tuple[int, int]:
        info = self.image_info(image_id)
        return int(info["height"]), int(info["width"])

    def load_mask(self, image_id: int) -> np.ndarray:
        """The ``HxW`` uint8 {0, 1} union of the image's annotations of ``category_ids``.

        Every annotation is rasterised from its ``segmentation``, never from
        ``bbox`` (see :meth:`_annotation_masks`).
        """
        mask = np.zeros(self._shape(image_id), dtype=np.uint8)
        for ann_mask in self._annotation_masks(image_id):
            np.maximum(mask, ann_mask, out=mask)
        return self._resampled(image_id, mask, nearest=True)

    def load_instances(self, image_id: int) -> np.ndarray:
        """The ``HxW`` float32 instance map: 0 for background, ``k`` on the k-th annotation.

        Built like :meth:`load_mask` (from ``segmentation``, never ``bbox``);
        where annotations overlap the later one wins. Its support is exactly
        :meth:`load_mask`'s. Float32 so that OpenCV and albumentations warp it
        with nearest-neighbour interpolation like any mask (ids are exact below
        2**24); :func:`mapseg_core.data.targets.make_targets` turns it into the
        building, contact and boundary targets after augmentation.
        """
        ids = np.zeros(self._shape(image_id), dtype=np.float32)
        for k, ann_mask in enumerate(self._annotation_masks(image_id), start=1):
            ids[ann_mask > 0] = k
        return self._resampled(image_id, ids, nearest=True)

    def load_sample(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image, mask)`` of :meth:`load_image` and :meth:`load_mask`."""
        return self.load_image(image_id), self.load_mask(image_id)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable description of the dataset, stored in the model metadata.

        It records which file and categories a model was trained on, so a
        model can be traced back to its data. A model file travels: paths are
        recorded relative (the annotation file's name, the image folder
        relative to it) and the file's SHA-256 identifies the data wherever it
        lies, so nothing of the machine it was trained on (user names, mount
        points) ends up in a model someone else receives.
        """
        from mapseg_core.models.artifact import file_sha256, portable_path

        ann_ids = self._coco.getAnnIds(imgIds=list(self.image_ids), catIds=list(self.category_ids))
        return {
            "annotations": self.annotations.name,
            "annotations_sha256": file_sha256(self.annotations),
            "images_dir": portable_path(self.images_dir, self.annotations.parent),
            "images": len(self.image_ids),
            "annotations_count": len(ann_ids),
            "categories": [
                {"id": int(cid), "name": str(self._coco.cats[cid].get("name", ""))}
                for cid in self.category_ids
            ],
            "images_in_file": len(self._coco.imgs),
        }

    def _warn_converted(self, mode: str, path: Path) -> None:
        if mode in self._warned_modes:
            return
        self._warned_modes.add(mode)
        dropped = " (transparency dropped)" if "A" in mode or mode == "P" else ""
        logger.warning(
            "image %s has mode %s, converted to RGB%s; "
            "further %s images of this dataset are converted silently",
            path,
            mode,
            dropped,
            mode,
        )


def load_coco(
    annotations: str | Path,
    images_dir: str | Path,
    category_ids: Sequence[int] | None = None,
    include_negatives: bool = False,
) -> CocoDataset:
    """Read and validate a COCO annotation file and its image folder.

    Everything that would otherwise fail mid-training is checked here, each
    failure raising one line that names the fix: the file exists and is COCO
    JSON, the categories exist, some image is annotated, and every annotated
    image file exists (``os.path.exists`` only; decoding is left to
    :meth:`CocoDataset.load_image`, which names a corrupt file).

    Args:
        annotations: the COCO annotation JSON.
        images_dir: folder the images' ``file_name`` entries are relative to.
        category_ids: categories whose union is the mask; ``None`` takes every
            category in the file.
        include_negatives: also keep the images with no annotation of those
            categories (all-background targets). Training wants them: without
            negatives a model never sees a roofless field, car park or road at
            training time and calls some of them buildings. They are kept only
            when the file also has annotated images.

    Returns:
        The dataset over the images that have at least one annotation of the
        chosen categories (and, with ``include_negatives``, the others).
    """
    ann_path = Path(annotations)
    img_dir = Path(images_dir)
    if not ann_path.is_file():
        raise InputFileNotFound(
            f"annotation file {ann_path} not found; pass the path to the COCO annotation .json"
        )
    data = read_coco_json(ann_path)
    coco = COCO()
    coco.dataset = data
    # pycocotools prints progress ("creating index..."); the engine never prints.
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()

    chosen = chosen_categories(coco, category_ids, ann_path)
    annotated = annotated_images(coco, chosen, ann_path)
    if include_negatives:
        annotated |= {int(i) for i in coco.imgs}
    image_ids = tuple(sorted(annotated))

    check_image_files(coco, image_ids, img_dir, ann_path)
    return CocoDataset(
        annotations=ann_path,
        images_dir=img_dir,
        category_ids=chosen,
        image_ids=image_ids,
        _coco=coco,
    )
