"""Training targets from an instance map: the building mask and the channels that separate.

A model that only learns the building mask cannot tell two touching houses
apart: their union is one blob. Two extra targets mark where buildings meet,
and are computed here from the *instance map* (one id per annotation, 0 for
background) after augmentation, so every channel goes through exactly the same
geometric transform as the image:

``building``
    1 on every annotated pixel (what one-channel models learn).
``contact``
    1 on every pixel (building or not) that has two *different* buildings
    within ``contact_width`` pixels: party walls, and the narrow gaps between
    nearly touching houses. Markers for separation are building pixels away
    from it.
``boundary``
    1 on building pixels within ``boundary_width`` pixels of a pixel that is
    not the same building (background or a neighbour): the rim of each house,
    so that even buildings whose contact the model misses keep apart cores.

Both widths are in pixels of the model input (at the model's ground sampling
distance), and the square neighbourhood makes them max/min filters (OpenCV
dilate/erode), exact on integer ids stored as float32 (< 2**24 of them).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from mapseg_core.errors import ConfigError

#: Target channels a training run can ask for, "building" first.
TARGET_CHANNELS: tuple[str, ...] = ("building", "contact", "boundary")
#: Larger than any instance id: stands in for background in a min filter.
_NONE = np.float32(2**24)


def check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """``channels`` as a tuple, or :class:`ConfigError` naming the valid ones."""
    out = tuple(str(c) for c in channels)
    bad = [c for c in out if c not in TARGET_CHANNELS]
    if not out or out[0] != "building" or bad or len(set(out)) != len(out):
        raise ConfigError(
            f"channels {list(out)} are not valid; give 'building' first, then any of "
            f"{list(TARGET_CHANNELS[1:])} once, e.g. --channels building,contact"
        )
    return out


def make_targets(
    instances: NDArray[np.floating] | NDArray[np.integer],
    channels: Sequence[str] = ("building",),
    contact_width: int = 2,
    boundary_width: int = 2,
) -> NDArray[np.float32]:
    """Targets ``(H, W, len(channels))`` float32 in {0, 1} from an ``HxW`` instance map.

    Args:
        instances: 0 for background, a positive id per building.
        channels: names from :data:`TARGET_CHANNELS`, in output order.
        contact_width: pixels within which two buildings make a contact pixel.
        boundary_width: width of the boundary rim inside each building.
    """
    ids = np.ascontiguousarray(instances, dtype=np.float32)
    out = np.zeros((*ids.shape, len(channels)), dtype=np.float32)
    building = ids > 0
    for k, name in enumerate(channels):
        if name == "building":
            out[..., k] = building
        elif name == "contact":
            kernel = np.ones((2 * contact_width + 1,) * 2, np.uint8)
            highest = cv2.dilate(ids, kernel)
            lowest = cv2.erode(np.where(building, ids, _NONE), kernel)
            out[..., k] = (highest > 0) & (lowest < _NONE) & (highest != lowest)
        elif name == "boundary":
            kernel = np.ones((2 * boundary_width + 1,) * 2, np.uint8)
            # OpenCV's default border ignores pixels outside the image: a chip edge
            # cutting a building is no boundary (nothing in the image shows one there).
            highest = cv2.dilate(ids, kernel)
            lowest = cv2.erode(ids, kernel)
            out[..., k] = building & ((highest != ids) | (lowest != ids))
        else:
            raise ConfigError(f"unknown target channel {name!r}; choose from {TARGET_CHANNELS}")
    return out
