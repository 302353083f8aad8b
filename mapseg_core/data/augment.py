"""The seed post's augmentation policy, ported to albumentations 2.x.

The seed was written for albumentations 0.x, whose ``IAA*`` transforms
(imgaug wrappers), ``RandomBrightness``, ``RandomContrast`` and, in 2.x,
``ShiftScaleRotate`` are gone or deprecated. :func:`seed_augmentation` keeps
the seed's structure and probabilities and maps each transform to its
current equivalent with the old default parameters; the mapping is listed in
its docstring.
"""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version at import time: a network call
# (slow or failing offline, e.g. on a training cluster) and a UserWarning.
# The engine makes no network calls; a user can still set the variable to 0.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from mapseg_core.errors import ConfigError  # noqa: E402


def seed_augmentation(height: int, width: int) -> A.Compose:
    """The seed's training augmentation for ``height x width`` image+mask pairs.

    Most of its length is this docstring's seed-to-here table (one line of
    code per transform), kept next to the code it documents.

    Image and mask are transformed together. Geometric transforms use
    nearest-neighbour interpolation on the mask and fill borders with 0 in
    both, so the mask stays binary and aligned with the image; colour
    transforms touch the image only.

    Seed transform (albumentations 0.x) -> transform here:

    * ``HorizontalFlip(p=0.5)`` -> unchanged, followed by two transforms the seed
      lacks: ``VerticalFlip(p=0.5)`` and ``RandomRotate90(p=1)`` (0, 90, 180 or
      270 degrees), which together draw any of the 8 flips and right-angle
      rotations with equal chance. Aerial views have no preferred orientation;
      these are also the transforms ``tile-infer --tta`` averages over.
    * ``ShiftScaleRotate(scale_limit=0.25, rotate_limit=0, shift_limit=0.1,
      border_mode=0, p=1)`` -> ``Affine(scale=(0.75, 1.25),
      translate_percent=(-0.1, 0.1), rotate=0, border_mode=BORDER_CONSTANT,
      fill=0, fill_mask=0, p=1)``; ShiftScaleRotate is deprecated in 2.x and
      is a special case of Affine.
    * ``IAAAdditiveGaussianNoise(p=0.2)`` (sigma 0.01..0.05 x 255, same on all
      channels) -> ``GaussNoise(std_range=(0.01, 0.05), per_channel=False,
      p=0.2)``.
    * ``IAAPerspective(p=0.5)`` (scale 0.05..0.1, keep size) ->
      ``Perspective(scale=(0.05, 0.1), keep_size=True, fill=0, fill_mask=0,
      p=0.5)``.
    * ``OneOf([CLAHE, RandomBrightness, RandomGamma], p=0.9)`` -> ``OneOf([CLAHE,
      RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0),
      RandomGamma], p=0.9)``.
    * ``OneOf([IAASharpen, Blur(3), MotionBlur(3)], p=0.9)`` -> ``OneOf([Sharpen
      (alpha 0.2..0.5, lightness 0.5..1, imgaug's defaults), Blur(3),
      MotionBlur(3)], p=0.9)``.
    * ``OneOf([RandomContrast, HueSaturationValue], p=0.9)`` ->
      ``OneOf([RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.2),
      HueSaturationValue], p=0.9)``.

    The seed's commented-out ``PadIfNeeded`` + ``RandomCrop`` to
    ``height x width`` become a final ``PadIfNeeded`` + ``CenterCrop``: a
    no-op for inputs already at model size (what the pipeline passes), and a
    guarantee that the output is ``height x width`` whatever comes in.

    Args:
        height: output height in pixels (the model input height).
        width: output width in pixels (the model input width).

    Returns:
        A Compose to call as ``transform(image=uint8 HxWx3, mask=uint8 HxW)``.
    """
    if height < 1 or width < 1:
        raise ConfigError(f"augmentation size must be positive, got {height}x{width}")
    border = cv2.BORDER_CONSTANT
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            # Not in the seed: a nadir image has no "up", so every right-angle rotation and
            # mirror of a roof is as likely as the original (the 8 symmetries of the square).
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=1.0),
            A.Affine(
                scale=(0.75, 1.25),
                translate_percent=(-0.1, 0.1),
                rotate=0,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=border,
                fill=0,
                fill_mask=0,
                p=1.0,
            ),
            A.GaussNoise(std_range=(0.01, 0.05), per_channel=False, p=0.2),
            A.Perspective(
                scale=(0.05, 0.1),
                keep_size=True,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=border,
                fill=0,
                fill_mask=0,
                p=0.5,
            ),
            A.OneOf(
                [
                    A.CLAHE(p=1.0),
                    A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0, p=1.0),
                    A.RandomGamma(p=1.0),
                ],
                p=0.9,
            ),
            A.OneOf(
                [
                    A.Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0), p=1.0),
                    A.Blur(blur_limit=3, p=1.0),
                    A.MotionBlur(blur_limit=3, p=1.0),
                ],
                p=0.9,
            ),
            A.OneOf(
                [
                    A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.2, p=1.0),
                    A.HueSaturationValue(p=1.0),
                ],
                p=0.9,
            ),
            A.PadIfNeeded(
                min_height=height, min_width=width, border_mode=border, fill=0, fill_mask=0
            ),
            A.CenterCrop(height=height, width=width),
        ]
    )
