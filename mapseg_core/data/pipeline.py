"""Batches of (image, mask) at model size for Keras, from a :class:`CocoDataset`.

Everything here is numpy (plus OpenCV for resampling): no TensorFlow import,
so the same sequences feed a model on the TensorFlow, JAX or PyTorch Keras
backend. Keras' ``PyDataset`` workers are threads (never processes): the
dataset's pycocotools index is read-only and shared.

Order of operations per sample: load (uint8) -> :func:`prepare_sample` to
the model input size -> augmentation (training only) -> float32. Augmenting
at model size keeps the augmentation cost independent of the source tile
size, and shift/scale are then relative to what the model sees, as in the
seed (whose tiles already were the model size).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from mapseg_core.backend import keras
from mapseg_core.config import TrainConfig
from mapseg_core.data.augment import seed_augmentation
from mapseg_core.data.coco import CocoDataset
from mapseg_core.data.samples import ResizeMode, _fit, prepare_sample  # noqa: F401  (re-exported)
from mapseg_core.data.splits import Splits
from mapseg_core.data.targets import check_channels, make_targets
from mapseg_core.errors import ConfigError, DatasetError


class CocoSequence(keras.utils.PyDataset):
    """Keras batches of one split of a :class:`CocoDataset`.

    Reproducible by construction: the sample order of epoch ``e`` and the
    augmentation of each sample are drawn from ``seed``, ``e`` and the
    sample's position, never from a shared random state, so the batches do
    not depend on how many worker threads ran them or in which order.

    Args:
        dataset: where images and masks come from.
        image_ids: the split's ids (e.g. ``splits.train``).
        batch_size: samples per batch; the last batch may be smaller.
        input_size: model input ``(height, width)``.
        augment: apply :func:`seed_augmentation` (training only).
        shuffle: reorder the samples at every epoch end.
        seed: seed of the shuffling and augmentation draws.
        resize_mode: how samples reach ``input_size`` (see :func:`prepare_sample`).
        workers: Keras worker threads preparing batches ahead.
        max_queue_size: batches prepared ahead at most.
        channels: target channels (see :mod:`mapseg_core.data.targets`).
        contact_width: pixels within which two buildings make a contact pixel.
        boundary_width: width of the boundary rim.
    """

    def __init__(
        self,
        dataset: CocoDataset,
        image_ids: Sequence[int],
        batch_size: int,
        input_size: tuple[int, int],
        augment: bool = False,
        shuffle: bool = False,
        seed: int = 108241,
        resize_mode: ResizeMode = "resize",
        workers: int = 2,
        max_queue_size: int = 8,
        channels: Sequence[str] = ("building",),
        contact_width: int = 2,
        boundary_width: int = 2,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if not image_ids:
            raise DatasetError("a data split has no images; add images or change the split sizes")
        if resize_mode not in ("resize", "crop"):
            raise ConfigError(f"unknown resize_mode {resize_mode!r}; choose 'resize' or 'crop'")
        self.dataset = dataset
        self.image_ids: tuple[int, ...] = tuple(int(i) for i in image_ids)
        self.batch_size = int(batch_size)
        self.input_size: tuple[int, int] = (int(input_size[0]), int(input_size[1]))
        self.augment = augment
        self.shuffle = shuffle
        self.seed = int(seed)
        self.resize_mode: ResizeMode = resize_mode
        self.channels: tuple[str, ...] = check_channels(channels)
        self.contact_width = int(contact_width)
        self.boundary_width = int(boundary_width)
        self._epoch = 0
        self._order: tuple[int, ...] = self._order_for(0)
        # One Compose per thread: a Compose holds its random state, which is re-seeded per sample.
        self._local = threading.local()

    @property
    def epoch(self) -> int:
        """Number of completed epochs (``on_epoch_end`` calls or :meth:`set_epoch`)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order and augmentation draws.

        To resume a run, call ``set_epoch(initial_epoch)`` before
        ``fit(initial_epoch=...)``: the resumed epochs then replay the
        uninterrupted run's draws. (Keras 3 ``fit`` calls ``on_epoch_end``
        once before its first epoch too, on both runs alike.)
        """
        self._epoch = int(epoch)
        self._order = self._order_for(self._epoch)

    def __len__(self) -> int:
        """Batches per epoch: ``ceil(len(image_ids) / batch_size)``."""
        return math.ceil(len(self.image_ids) / self.batch_size)

    def batch_ids(self, index: int) -> tuple[int, ...]:
        """Image ids of batch ``index`` in the current epoch (e.g. to caption predictions)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range for {len(self)} batches")
        start = index * self.batch_size
        return self._order[start : start + self.batch_size]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index``: float32 images (B, H, W, 3) in 0..255, targets (B, H, W, C) in {0, 1}.

        ``C`` is ``len(channels)``; with the default ``("building",)`` the targets are
        the building masks, as always. The image and its *instance map* are
        fitted and augmented together, and the targets are made from the
        augmented instance map (:func:`~mapseg_core.data.targets.make_targets`),
        so every channel sees exactly the image's geometric transform.
        """
        ids = self.batch_ids(index)
        start = index * self.batch_size
        height, width = self.input_size
        images = np.empty((len(ids), height, width, 3), dtype=np.float32)
        masks = np.empty((len(ids), height, width, len(self.channels)), dtype=np.float32)
        for k, image_id in enumerate(ids):
            image = self.dataset.load_image(image_id)
            instances = self.dataset.load_instances(image_id)
            image, instances = _fit(image, instances, self.input_size, self.resize_mode)
            if self.augment:
                image, instances = self._augment(image, instances, start + k)
            images[k] = image
            masks[k] = make_targets(
                instances, self.channels, self.contact_width, self.boundary_width
            )
        return images, masks

    def on_epoch_end(self) -> None:
        """Advance the epoch; with ``shuffle`` the next epoch gets a new order."""
        self.set_epoch(self._epoch + 1)

    def _order_for(self, epoch: int) -> tuple[int, ...]:
        if not self.shuffle:
            return self.image_ids
        rng = np.random.default_rng([self.seed, epoch])
        return tuple(self.image_ids[i] for i in rng.permutation(len(self.image_ids)))

    def _augment(
        self, image: np.ndarray, mask: np.ndarray, position: int
    ) -> tuple[np.ndarray, np.ndarray]:
        transform: Any = getattr(self._local, "transform", None)
        if transform is None:
            transform = seed_augmentation(*self.input_size)
            self._local.transform = transform
        sample_seed = np.random.SeedSequence([self.seed, self._epoch, position])
        transform.set_random_seed(int(sample_seed.generate_state(1)[0]))
        out = transform(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(mask))
        return out["image"], out["mask"]


def make_sequences(
    dataset: CocoDataset,
    splits: Splits,
    model_input_size: tuple[int, int],
    train_config: TrainConfig,
    channels: Sequence[str] = ("building",),
) -> dict[str, CocoSequence]:
    """The ``"train"``, ``"valid"`` and ``"test"`` sequences of a training run.

    Only ``"train"`` is augmented (if ``train_config.augment``) and shuffled:
    validation and test batches must be the same at every evaluation so that
    their metrics are comparable across epochs and runs.

    Args:
        dataset: the loaded COCO dataset.
        splits: image ids per split.
        model_input_size: model input ``(height, width)``.
        train_config: its ``batch_size``, ``workers``, ``resize_mode``, ``seed`` and
            ``augment`` are used.
    """
    common: dict[str, Any] = {
        "batch_size": train_config.batch_size,
        "input_size": model_input_size,
        "seed": train_config.seed,
        "resize_mode": train_config.resize_mode,
        "workers": train_config.workers,
        "channels": tuple(channels),
        "contact_width": train_config.contact_width,
        "boundary_width": train_config.boundary_width,
    }
    return {
        "train": CocoSequence(
            dataset, splits.train, augment=train_config.augment, shuffle=True, **common
        ),
        "valid": CocoSequence(dataset, splits.valid, **common),
        "test": CocoSequence(dataset, splits.test, **common),
    }
