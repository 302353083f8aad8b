"""Probability maps -> scored instances, and back to the image size."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mapseg_core.evaluation.predictions import instances, to_image_size


def test_components_are_instances_scored_by_mean_probability():
    prob = np.zeros((10, 12), np.float32)
    prob[1:3, 1:4] = 0.8
    prob[1, 1] = 0.6
    prob[5:9, 7:9] = 0.95
    prob[3, 4] = 0.9  # diagonal to the first one: separate (4-connectivity)
    found = instances(prob, 0.5)
    assert len(found) == 3
    first = next(f for f in found if f["area"] == 6)
    assert first["score"] == pytest.approx((5 * 0.8 + 0.6) / 6)
    rle = dict(first["segmentation"], counts=first["segmentation"]["counts"].encode())
    assert mask_utils.decode(rle)[1:3, 1:4].all()
    assert instances(np.zeros((4, 4)), 0.5) == []


def test_back_to_image_size():
    prob = np.ones((4, 4), np.float32)
    assert to_image_size(prob, (8, 6), "resize").shape == (8, 6)
    cropped = to_image_size(prob, (8, 8), "crop")
    assert cropped[2:6, 2:6].all() and cropped.sum() == 16
    assert to_image_size(np.ones((8, 8)), (4, 4), "crop").shape == (4, 4)
