from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest
from helpers import BUILDING, CocoFixture

from mapseg_core.config import TrainConfig
from mapseg_core.data.coco import CocoDataset, load_coco
from mapseg_core.data.pipeline import CocoSequence, make_sequences, prepare_sample
from mapseg_core.data.splits import Splits
from mapseg_core.errors import ConfigError, DatasetError

SIZE = (32, 32)


@pytest.fixture
def dataset(coco_set: CocoFixture) -> CocoDataset:
    return load_coco(coco_set.annotations, coco_set.images_dir, category_ids=[BUILDING])


def _block(
    shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image with one flat (200, 100, 50) block on black, and its mask."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    image = np.zeros((*shape, 3), dtype=np.uint8)
    image[mask == 1] = (200, 100, 50)
    return image, mask


# === prepare_sample ===


def test_resize_shrink_keeps_block_exact() -> None:
    image, mask = _block((64, 64), 16, 48, 16, 48)
    out_image, out_mask = prepare_sample(image, mask, SIZE, "resize")
    assert out_image.dtype == np.float32 and out_image.shape == (32, 32, 3)
    assert out_mask.dtype == np.float32 and out_mask.shape == (32, 32, 1)
    expected = np.zeros(SIZE, np.float32)
    expected[8:24, 8:24] = 1
    np.testing.assert_array_equal(out_mask[..., 0], expected)
    np.testing.assert_array_equal(out_image[expected == 1], [[200, 100, 50]] * 256)


def test_resize_enlarge_keeps_mask_binary() -> None:
    image, mask = _block((16, 20), 4, 12, 5, 15)
    out_image, out_mask = prepare_sample(image, mask, SIZE, "resize")
    assert set(np.unique(out_mask)) == {0.0, 1.0}
    assert out_mask[8:24, 8:24].all() and out_mask[:, :6].sum() == 0
    assert out_image.max() <= 255 and out_image.min() >= 0


def test_crop_takes_the_centre() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = (image[..., 0] > 128).astype(np.uint8)
    out_image, out_mask = prepare_sample(image, mask, SIZE, "crop")
    np.testing.assert_array_equal(out_image, image[4:36, 8:40].astype(np.float32))
    np.testing.assert_array_equal(out_mask[..., 0], mask[4:36, 8:40])


def test_crop_pads_smaller_sources_with_zero() -> None:
    image, mask = _block((40, 20), 0, 40, 0, 20)  # all building
    out_image, out_mask = prepare_sample(image, mask[..., None], SIZE, "crop")
    # Rows are cropped (40 -> 32), columns padded (20 -> 32, 6 each side).
    np.testing.assert_array_equal(out_mask[:, 6:26, 0], 1)
    assert out_mask[:, :6].sum() == 0 and out_mask[:, 26:].sum() == 0
    assert out_image[:, :6].sum() == 0 and out_image[:, 26:].sum() == 0


def test_same_size_is_untouched() -> None:
    image, mask = _block(SIZE, 3, 9, 4, 30)
    for mode in ("resize", "crop"):
        out_image, out_mask = prepare_sample(image, mask, SIZE, mode)  # type: ignore[arg-type]
        np.testing.assert_array_equal(out_image, image)
        np.testing.assert_array_equal(out_mask[..., 0], mask)


def test_prepare_sample_rejects_bad_input() -> None:
    image, mask = _block(SIZE, 0, 1, 0, 1)
    with pytest.raises(DatasetError, match="same size"):
        prepare_sample(image, mask[:10], SIZE, "resize")
    with pytest.raises(ConfigError, match="choose 'resize' or 'crop'"):
        prepare_sample(image, mask, (16, 16), "stretch")  # type: ignore[arg-type]


# === CocoSequence ===


def test_batches_shapes_dtypes_and_masks(coco_set: CocoFixture, dataset: CocoDataset) -> None:
    sequence = CocoSequence(dataset, dataset.image_ids, batch_size=3, input_size=SIZE)
    assert len(sequence) == 2  # 5 images
    images, masks = sequence[0]
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
    assert masks.shape == (3, 32, 32, 1) and masks.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255
    assert sequence.batch_ids(0) == (1, 2, 5)
    for k, image_id in enumerate(sequence.batch_ids(0)):
        drawn = coco_set.expected_mask(image_id, (BUILDING,))
        blank = np.zeros((*drawn.shape, 3), np.uint8)
        np.testing.assert_array_equal(masks[k], prepare_sample(blank, drawn, SIZE, "resize")[1])
    np.testing.assert_array_equal(masks[0, ..., 0], coco_set.expected_mask(1, (BUILDING,)))
    last_images, last_masks = sequence[1]
    assert last_images.shape[0] == last_masks.shape[0] == 2
    with pytest.raises(IndexError):
        sequence[2]


def test_other_size_image_is_resized_or_cropped(
    coco_set: CocoFixture, dataset: CocoDataset
) -> None:
    drawn = coco_set.expected_mask(5, (BUILDING,))  # 40x48
    cropped = CocoSequence(dataset, [5], batch_size=1, input_size=SIZE, resize_mode="crop")
    np.testing.assert_array_equal(cropped[0][1][0, ..., 0], drawn[4:36, 8:40])
    resized = CocoSequence(dataset, [5], batch_size=1, input_size=SIZE, resize_mode="resize")
    mask = resized[0][1][0, ..., 0]
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert abs(mask.mean() - drawn.mean()) < 0.03


def test_grayscale_and_rgba_are_converted_with_warnings(
    dataset: CocoDataset, caplog: pytest.LogCaptureFixture
) -> None:
    sequence = CocoSequence(dataset, [7, 9], batch_size=2, input_size=SIZE)
    with caplog.at_level(logging.WARNING, logger="mapseg"):
        images, _ = sequence[0]
    assert images.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(images[0, ..., 0], images[0, ..., 1])
    text = caplog.text
    assert "mode L" in text and "mode RGBA" in text


def test_unaugmented_batches_are_identical_across_calls_and_epochs(
    dataset: CocoDataset,
) -> None:
    sequence = CocoSequence(dataset, dataset.image_ids, batch_size=2, input_size=SIZE)
    first = sequence[1]
    sequence.on_epoch_end()
    again = sequence[1]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_shuffle_changes_order_per_epoch_deterministically(dataset: CocoDataset) -> None:
    def orders(seed: int) -> list[tuple[int, ...]]:
        sequence = CocoSequence(
            dataset, dataset.image_ids, batch_size=5, input_size=SIZE, shuffle=True, seed=seed
        )
        result = []
        for _ in range(3):
            result.append(sequence.batch_ids(0))
            sequence.on_epoch_end()
        return result

    first = orders(1)
    assert first == orders(1)
    assert len(set(first)) == 3  # three epochs, three orders
    assert all(sorted(order) == list(dataset.image_ids) for order in first)
    assert first != orders(2)


def test_set_epoch_resumes_the_order(dataset: CocoDataset) -> None:
    running = CocoSequence(dataset, dataset.image_ids, 5, SIZE, shuffle=True)
    running.on_epoch_end()
    running.on_epoch_end()
    resumed = CocoSequence(dataset, dataset.image_ids, 5, SIZE, shuffle=True)
    resumed.set_epoch(2)
    assert resumed.epoch == running.epoch == 2
    assert resumed.batch_ids(0) == running.batch_ids(0)


def test_augmentation_is_reproducible_and_thread_safe(dataset: CocoDataset) -> None:
    def sequence() -> CocoSequence:
        return CocoSequence(dataset, dataset.image_ids, 1, SIZE, augment=True, shuffle=True)

    plain = CocoSequence(dataset, dataset.image_ids, 1, SIZE, shuffle=True)
    serial = [sequence()[i] for i in range(5)]
    threaded = sequence()
    indices = [4, 3, 2, 1, 0, 0, 1, 2, 3, 4]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(threaded.__getitem__, indices))
    for index, (p_image, p_mask) in zip(indices, parallel, strict=True):
        np.testing.assert_array_equal(serial[index][0], p_image)
        np.testing.assert_array_equal(serial[index][1], p_mask)
        assert set(np.unique(p_mask)) <= {0.0, 1.0}
    assert any(not np.array_equal(serial[i][0], plain[i][0]) for i in range(5))


def test_augmentation_differs_between_epochs(dataset: CocoDataset) -> None:
    sequence = CocoSequence(dataset, [1], 1, SIZE, augment=True)
    first = sequence[0][0]
    sequence.on_epoch_end()
    assert not np.array_equal(first, sequence[0][0])


def test_keras_options_are_passed(dataset: CocoDataset) -> None:
    sequence = CocoSequence(dataset, [1, 2], 1, SIZE, workers=3, max_queue_size=5)
    assert (sequence.workers, sequence.use_multiprocessing, sequence.max_queue_size) == (
        3,
        False,
        5,
    )
    assert sequence.num_batches == 2


def test_sequence_rejects_bad_options(dataset: CocoDataset) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        CocoSequence(dataset, [1], 0, SIZE)
    with pytest.raises(DatasetError, match="no images"):
        CocoSequence(dataset, [], 1, SIZE)
    with pytest.raises(ConfigError, match="resize_mode"):
        CocoSequence(dataset, [1], 1, SIZE, resize_mode="fit")  # type: ignore[arg-type]


def test_make_sequences(dataset: CocoDataset) -> None:
    splits = Splits(train=(1, 2, 5), valid=(7,), test=(9,))
    config = TrainConfig(batch_size=2, workers=1, resize_mode="crop", seed=5, augment=True)
    sequences = make_sequences(dataset, splits, SIZE, config)
    assert set(sequences) == {"train", "valid", "test"}
    train = sequences["train"]
    assert (train.augment, train.shuffle, train.seed, train.resize_mode) == (True, True, 5, "crop")
    assert train.batch_size == 2 and len(train) == 2 and train.workers == 1
    for name in ("valid", "test"):
        assert not sequences[name].augment and not sequences[name].shuffle
        assert sequences[name].image_ids == splits.ids(name)  # type: ignore[arg-type]
    assert sequences["valid"][0][0].shape == (1, 32, 32, 3)


def test_feeds_keras_fit_with_worker_threads(dataset: CocoDataset) -> None:
    train = CocoSequence(dataset, dataset.image_ids, 2, SIZE, augment=True, shuffle=True)
    valid = CocoSequence(dataset, dataset.image_ids, 2, SIZE)
    inputs = keras.Input((*SIZE, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(
        keras.layers.Rescaling(1 / 255)(inputs)
    )
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(train, validation_data=valid, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["val_loss"]) == 2
    assert train.epoch >= 2
