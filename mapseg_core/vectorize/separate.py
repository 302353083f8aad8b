"""Pure instance separation: touching buildings out of a building and a contact channel.

A U-Net's building mask merges houses that touch (terraces, semi-detached
pairs) into one connected component. Models trained with a *contact* channel
(pixels within a few pixels of two different buildings) or a *boundary*
channel (the outer rim of each building) mark where one building ends and
the next begins. Separation turns those channels into one label per building:

1. **Markers** are building pixels that are neither contact nor boundary:
   the cores of the houses, which no longer touch each other.
2. **Growth**: every other building pixel joins the marker it is nearest to,
   by geodesic distance inside the building mask (4-connected steps), up to
   ``radius`` steps. A pixel equally near two markers takes the one reached
   through its first neighbour in the fixed order up, left, right, down.
   Building pixels no marker reaches within ``radius`` steps (a building with
   no core at all) stay buildings of their own: each 4-connected run of them
   is one building, like a marker component.

Why bounded growth and not scikit-image's ``watershed``. The tiling engine's
guarantee is that the polygons do not depend on the block layout: 256 px
blocks, 1024 px blocks and Dask workers must give the same buildings. A
priority-flood watershed is global: the label it gives a pixel depends on the
flooding order over the whole image, so a pixel near a block border can be
labelled differently when the block, and so the image the watershed sees, is
different. Bounded growth is *local*: whether a pixel is reached, at which
distance and through which neighbour depends only on the mask and markers
within ``radius + 1`` pixels of it. That is what makes the merge exact:

*Buildings are the connected components of the building pixels under "kept"
edges*, where an edge between two 4-neighbours is kept when both are markers
(adjacent markers are one marker component), when one is the other's growth
parent, or when both are unreached. Every kept edge is decided by data within
``radius + 2`` pixels of it. A block that predicts its pixels plus a halo of
``radius + 2`` pixels (:func:`halo`) therefore labels its own pixels and the
ring of pixels just outside it exactly as a whole-image run would, up to the
*names* of the labels, which are local. Inside the block, pixels with equal
local labels are connected through kept edges (their growth paths and marker
component lie in the window), so they are one building. Runs of unreached
pixels are connected through the block and its ring only (``core``): near the
window's edge a pixel may look unreached because its marker is outside the
window, and such a pixel would bridge two runs that are separate buildings
(hypothesis found such layouts; they are examples in the tests now). Across a block
border, a border pixel is linked to the pixel facing it when their local
labels are equal; for every kept edge both blocks see equal labels, so both
sides record the link and :class:`~mapseg_core.vectorize.merge.BorderMerger`
joins them by its exact integer slot lookup. A link only one side records
(two pixels of one marker component joined outside one block's window) never
joins two different buildings, and the buildings it joins are already joined
by the marker edges on the path between them, which both sides see. So the
merged components are the global ones, whatever the block layout, the block
completion order or the machine a block ran on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mapseg_core.errors import ConfigError

#: Channel names a model can predict; ``building`` is always the first.
CHANNELS: tuple[str, ...] = ("building", "contact", "boundary")
#: Channels that separate touching buildings.
SEPARATING: tuple[str, ...] = ("contact", "boundary")


@dataclass(frozen=True)
class SeparationOptions:
    """How markers are made and grown (stored in a model's metadata as ``separation``)."""

    # Growth steps (pixels) from a marker; at least the contact/boundary width.
    radius: int = 8
    # Probability at or above which a pixel is contact or boundary (not a marker).
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.radius < 1:
            raise ConfigError(f"separation radius must be at least 1 pixel, got {self.radius}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"separation threshold must be between 0 and 1, got {self.threshold}")


def halo(options: SeparationOptions) -> int:
    """Pixels around a block whose probabilities the block's separation needs.

    ``radius`` for the growth distance of a pixel, one more for its parent
    (the neighbour's distance), one more for the ring of pixels just outside
    the block whose labels decide the border links.
    """
    return options.radius + 2


def markers_of(
    building: NDArray[np.bool_],
    separators: NDArray[np.floating] | None,
    threshold: float,
) -> NDArray[np.bool_]:
    """Marker pixels: building pixels below ``threshold`` in every separating channel.

    Args:
        building: ``(rows, cols)`` building mask.
        separators: ``(rows, cols, k)`` probabilities of the contact/boundary
            channels, or None (then every building pixel is a marker).
        threshold: separating probability from which a pixel is not a marker.
    """
    if separators is None or separators.shape[-1] == 0:
        return building.copy()
    markers = building & (separators[..., 0] < threshold)
    for k in range(1, separators.shape[-1]):
        markers &= separators[..., k] < threshold
    return markers


def grow(
    building: NDArray[np.bool_],
    markers: NDArray[np.bool_],
    radius: int,
    core: tuple[int, int, int, int] | None = None,
) -> NDArray[np.int32]:
    """Local instance labels: markers grown ``radius`` steps inside ``building``.

    Returns ``(rows, cols)`` int32: 0 off the building, ``1..n`` for the
    building pixels of each 4-connected marker component and the pixels grown
    from it, ``n + 1, n + 2, ...`` for each 4-connected run of building pixels
    no marker reaches. Each label is one building; labels are local names
    (another window numbers them otherwise), and a pixel's label is right for
    pixels at least ``radius + 1`` from the array's edge (see the module
    docstring).

    ``core`` (``row, col, height, width``): the pixels whose labels are used
    (a block and its one-pixel ring inside its halo). Runs of unreached pixels
    are then connected only through the core: near the array's edge a pixel
    can look unreached only because its marker lies outside the array, and
    such pixels would otherwise bridge two runs that are separate buildings.
    Runs that meet outside the core are joined by the block merge instead.
    """
    return _grow(building, markers, radius, core)[0][1:-1, 1:-1]


def _grow(
    building: NDArray[np.bool_],
    markers: NDArray[np.bool_],
    radius: int,
    core: tuple[int, int, int, int] | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """:func:`grow` with a one-pixel 0 border, and the labels that share an edge with another.

    Two 4-neighbours with different labels are never both markers (they would
    be one marker component), so the pairs are found around the non-marker
    pixels alone, a small part of the array.
    """
    # A 0 border, so every pixel has four neighbours in the flat array.
    building = np.pad(np.asarray(building, dtype=bool), 1)
    seeds = np.pad(np.asarray(markers, dtype=bool), 1) & building
    count, found = cv2.connectedComponents(seeds.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    labels = np.asarray(found, dtype=np.int32)
    width = labels.shape[1]
    flat = labels.ravel()
    # Only the building pixels that are not markers ever change: iterate over them alone
    # (the contact bands and rims, a small part of the block).
    todo = non_markers = np.flatnonzero(building & ~seeds)
    # Neighbour order up, left, right, down: the first labelled one is the parent.
    shifts = np.array([-width, -1, 1, width])
    for _ in range(radius):
        if todo.size == 0:
            break
        around = flat[todo[None, :] + shifts[:, None]]  # (4, n), labels before this step
        reached = around > 0
        hit = reached.any(axis=0)
        if not hit.any():
            break
        first = np.argmax(reached, axis=0)
        flat[todo[hit]] = around[first[hit], np.flatnonzero(hit)]
        todo = todo[~hit]
    if todo.size:
        # Unreached pixels: each 4-connected run of them is a building (n + 1, n + 2, ...).
        far = np.zeros(flat.size, np.uint8)
        far[todo] = 1
        far2d = far.reshape(labels.shape)
        if core is not None:  # connected through the core only (in the padded frame: +1)
            r, c, h, w = core
            far2d[: r + 1, :] = far2d[r + 1 + h :, :] = 0
            far2d[:, : c + 1] = far2d[:, c + 1 + w :] = 0
        _, runs = cv2.connectedComponents(far2d, connectivity=4, ltype=cv2.CV_32S)
        runs = np.asarray(runs).ravel()
        # Unreached pixels outside the core (labels unused) each get one more run.
        outside = todo[runs[todo] == 0]
        runs[outside] = runs.max() + 1 + np.arange(outside.size, dtype=runs.dtype)
        flat[todo] = runs[todo] + (count - 1)
    own = flat[non_markers]
    around = flat[non_markers[None, :] + shifts[:, None]]
    other = (around > 0) & (around != own)
    touching = np.unique(np.concatenate([own[other.any(axis=0)], around[other]]))
    return labels, touching


def separate(
    building: NDArray[np.bool_],
    separators: NDArray[np.floating] | None,
    options: SeparationOptions,
    core: tuple[int, int, int, int] | None = None,
) -> NDArray[np.int32]:
    """:func:`grow` from :func:`markers_of`: local instance labels of a building mask.

    ``core``: the block and its one-pixel ring inside the array (see :func:`grow`).
    """
    return separate_touching(building, separators, options, core)[0][1:-1, 1:-1]


def separate_touching(
    building: NDArray[np.bool_],
    separators: NDArray[np.floating] | None,
    options: SeparationOptions,
    core: tuple[int, int, int, int] | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """:func:`separate` with a one-pixel 0 border, and the labels that share an edge with another.

    The border is what a block's ring of labels holds beyond the raster's edge
    (see :func:`~mapseg_core.vectorize.pipeline.block_buildings`); the second
    array is what :func:`~mapseg_core.vectorize.polygons.vectorize_block` takes as
    ``touching``: it spares it a scan of the block.
    """
    markers = markers_of(building, separators, options.threshold)
    return _grow(building, markers, options.radius, core)


__all__ = [
    "CHANNELS",
    "SEPARATING",
    "SeparationOptions",
    "grow",
    "halo",
    "markers_of",
    "separate",
    "separate_touching",
]
