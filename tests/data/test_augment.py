from __future__ import annotations

import warnings

import numpy as np
import pytest

from mapseg_core.data.augment import seed_augmentation
from mapseg_core.errors import ConfigError

SIZE = 64


def _red_means_building() -> tuple[np.ndarray, np.ndarray]:
    """An image whose mask is exactly ``red > 128``: pure red blocks, left of centre."""
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[8:30, 4:24] = 1
    mask[40:56, 10:28] = 1
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    image[..., 1] = 60
    image[..., 2] = 40
    image[mask == 1] = (255, 0, 0)
    return image, mask


def _augment(seed: int, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    transform = seed_augmentation(SIZE, SIZE)
    transform.set_random_seed(seed)
    out = transform(image=image, mask=mask)
    return out["image"], out["mask"]


def test_policy_structure_follows_the_seed() -> None:
    transform = seed_augmentation(SIZE, SIZE)
    names = [type(t).__name__ for t in transform.transforms]
    assert names == [
        "HorizontalFlip",
        "VerticalFlip",
        "RandomRotate90",
        "Affine",
        "GaussNoise",
        "Perspective",
        "OneOf",
        "OneOf",
        "OneOf",
        "PadIfNeeded",
        "CenterCrop",
    ]
    assert [t.p for t in transform.transforms[:9]] == [0.5, 0.5, 1.0, 1.0, 0.2, 0.5, 0.9, 0.9, 0.9]
    inner = [[type(t).__name__ for t in one.transforms] for one in transform.transforms[6:9]]
    assert inner == [
        ["CLAHE", "RandomBrightnessContrast", "RandomGamma"],
        ["Sharpen", "Blur", "MotionBlur"],
        ["RandomBrightnessContrast", "HueSaturationValue"],
    ]


def test_no_deprecation_or_user_warnings() -> None:
    image, mask = _red_means_building()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(20):
            _augment(seed, image, mask)


def test_mask_stays_binary_and_aligned_with_the_image() -> None:
    image, mask = _red_means_building()
    changed = flipped = 0
    for seed in range(30):
        aug_image, aug_mask = _augment(seed, image, mask)
        assert aug_image.shape == (SIZE, SIZE, 3) and aug_image.dtype == np.uint8
        assert aug_mask.shape == (SIZE, SIZE) and aug_mask.dtype == np.uint8
        assert set(np.unique(aug_mask)) <= {0, 1}
        agreement = np.mean(aug_mask == (aug_image[..., 0] > 128))
        assert agreement > 0.95, f"seed {seed}: mask and image agree on {agreement:.1%} only"
        changed += not np.array_equal(aug_mask, mask)
        # The buildings start left of centre; after a horizontal flip they are right of it.
        flipped += np.nonzero(aug_mask)[1].mean() > SIZE / 2
    assert changed >= 28
    assert 5 <= flipped <= 25


def test_same_seed_same_result() -> None:
    image, mask = _red_means_building()
    first = _augment(3, image, mask)
    second = _augment(3, image, mask)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_output_is_model_size_whatever_comes_in() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    mask = (image[..., 0] > 128).astype(np.uint8)
    aug_image, aug_mask = _augment(0, image, mask)
    assert aug_image.shape == (SIZE, SIZE, 3)
    assert aug_mask.shape == (SIZE, SIZE)


def test_bad_size() -> None:
    with pytest.raises(ConfigError, match="must be positive"):
        seed_augmentation(0, 64)


def test_every_flip_and_right_angle_rotation_is_drawn_and_targets_follow() -> None:
    """Over seeds, an asymmetric L mask comes out in all 8 orientations, with its image."""
    from mapseg_core.data.augment import seed_augmentation
    from mapseg_core.data.targets import make_targets

    size = 32
    ids = np.zeros((size, size), np.float32)
    ids[8:24, 8:12] = 1
    ids[20:24, 12:24] = 2  # touching the first: a contact line the transform must carry
    image = np.zeros((size, size, 3), np.uint8)
    image[ids > 0] = (255, 0, 0)
    seen = set()
    for seed in range(200):
        transform = seed_augmentation(size, size)
        transform.set_random_seed(seed)
        out = transform(image=image, mask=ids)
        mask = out["mask"]
        targets = make_targets(mask, ("building", "contact"), 1)
        assert set(np.unique(mask)) <= {0.0, 1.0, 2.0}
        # The contact channel is where the two ids meet in the *augmented* map.
        assert targets[..., 1].any() == ((mask == 1).any() and (mask == 2).any())
        if (mask == 1).sum() > 20 and (mask == 2).sum() > 10:
            d = np.argwhere(mask == 2).mean(axis=0) - np.argwhere(mask == 1).mean(axis=0)
            seen.add((int(np.sign(d[0])), int(np.sign(d[1])), bool(abs(d[0]) > abs(d[1]))))
    assert len(seen) == 8
