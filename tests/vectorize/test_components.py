"""4-connected components by OpenCV number and box them as scipy.ndimage does."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from mapseg_core.vectorize.components import components


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(1, 50),
    width=st.integers(1, 50),
    density=st.floats(0.1, 0.9),
)
def test_labels_and_boxes_are_scipys(seed, height, width, density):
    mask = np.random.default_rng(seed).random((height, width)) < density
    labels, boxes = components(mask)
    expected, count = ndimage.label(mask)  # 4-connected in 2-D by default
    assert labels.dtype == np.int32 and np.array_equal(labels, expected)
    assert boxes == ndimage.find_objects(expected) and len(boxes) == count


def test_corner_neighbours_are_two_components_and_empty_masks_have_none():
    labels, boxes = components(np.array([[1, 0], [0, 1]], bool))
    assert labels.tolist() == [[1, 0], [0, 2]] and len(boxes) == 2
    assert components(np.zeros((3, 4), bool))[1] == []
    assert components(np.zeros((0, 4), bool))[0].shape == (0, 4)
