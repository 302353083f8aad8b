"""Training targets from instance maps: building, contact, boundary."""

from __future__ import annotations

import numpy as np
import pytest

from mapseg_core.data.targets import check_channels, make_targets
from mapseg_core.errors import ConfigError


def _pair() -> np.ndarray:
    ids = np.zeros((10, 14), np.float32)
    ids[2:8, 1:7] = 1
    ids[2:8, 7:13] = 2  # shares the edge x=7 with building 1
    return ids


def test_building_channel_is_the_union_mask():
    t = make_targets(_pair(), ("building",))
    assert t.shape == (10, 14, 1) and t.dtype == np.float32
    assert (t[..., 0] == (_pair() > 0)).all()


def test_contact_marks_pixels_near_two_buildings_only():
    ids = _pair()
    ids[2:8, 12] = 0  # building 2 keeps columns 7..11
    lone = ids.copy()
    lone[ids == 2] = 0
    contact = make_targets(ids, ("building", "contact"), contact_width=1)[..., 1]
    assert contact[:, 6:8].any() and (contact[:, :5] == 0).all() and (contact[:, 9:] == 0).all()
    assert contact[1, 6] == 1  # background next to the party wall counts too
    assert (make_targets(lone, ("building", "contact"), contact_width=1)[..., 1] == 0).all()


def test_boundary_is_the_rim_inside_each_building_but_not_at_the_image_edge():
    ids = np.zeros((8, 8), np.float32)
    ids[:, 2:8] = 1  # touches the top, bottom and right image edges
    rim = make_targets(ids, ("building", "boundary"), boundary_width=1)[..., 1]
    assert (rim[:, 2] == 1).all() and (rim[:, 3:] == 0).all() and (rim[ids == 0] == 0).all()


@pytest.mark.parametrize(
    "channels", [("contact",), ("building", "building"), ("building", "roof"), ()]
)
def test_bad_channel_lists_are_refused_with_an_example(channels):
    with pytest.raises(ConfigError, match="--channels building,contact"):
        check_channels(channels)


def test_sequence_targets_follow_the_augmented_instances(coco_set):
    from mapseg_core.data.coco import load_coco
    from mapseg_core.data.pipeline import CocoSequence

    dataset = load_coco(coco_set.annotations, coco_set.images_dir)
    seq = CocoSequence(
        dataset, dataset.image_ids, 2, (64, 64), augment=True, channels=("building", "contact")
    )
    x, y = seq[0]
    assert y.shape == (*x.shape[:3], 2)
    assert set(np.unique(y)) <= {0.0, 1.0}
    plain = CocoSequence(dataset, dataset.image_ids, 2, (64, 64))
    _, y1 = plain[0]
    assert y1.shape[-1] == 1
