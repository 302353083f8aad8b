"""Train / validation / test splits of image ids, reproducible from a seed.

:func:`make_splits` reproduces the seed post's two calls to scikit-learn's
``train_test_split`` bit for bit, without depending on scikit-learn::

    rs = np.random.RandomState(seed)
    train, test = train_test_split(ids, train_size=train_size, random_state=rs)
    train, valid = train_test_split(train, test_size=valid_size, random_state=rs)

so a model trained here is evaluated on the same test images as the seed's
for the same id list. Splits are saved next to a run so that resuming or
evaluating later uses exactly the same images.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mapseg_core.atomic import write_json
from mapseg_core.errors import DatasetError, InputFileNotFound, OutputError

SplitName = Literal["train", "valid", "test"]
SPLIT_NAMES: tuple[SplitName, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Splits:
    """Image ids of each split, in the (shuffled) order the split produced them."""

    # Images the model is fitted on.
    train: tuple[int, ...]
    # Images for early stopping and learning-rate decisions.
    valid: tuple[int, ...]
    # Images held out for the final report only.
    test: tuple[int, ...]

    def ids(self, name: SplitName) -> tuple[int, ...]:
        """The ids of split ``name``."""
        if name not in SPLIT_NAMES:
            raise DatasetError(f"unknown split {name!r}; choose one of {SPLIT_NAMES}")
        ids: tuple[int, ...] = getattr(self, name)
        return ids

    def to_dict(self) -> dict[str, list[int]]:
        """Plain lists, ready for JSON."""
        return {name: [int(i) for i in getattr(self, name)] for name in SPLIT_NAMES}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Splits:
        """Inverse of :meth:`to_dict`; checks the lists are integer ids and disjoint."""
        if not isinstance(data, dict) or any(
            not isinstance(data.get(name), list) for name in SPLIT_NAMES
        ):
            raise DatasetError(
                "splits need 'train', 'valid' and 'test' lists of image ids; "
                "delete the splits file to recreate it"
            )
        parts: dict[str, tuple[int, ...]] = {}
        for name in SPLIT_NAMES:
            values = data[name]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise DatasetError(
                    f"split {name!r} holds non-integer ids; delete the splits file to recreate it"
                )
            parts[name] = tuple(values)
        seen = [i for name in SPLIT_NAMES for i in parts[name]]
        if len(seen) != len(set(seen)):
            raise DatasetError(
                "an image id is in more than one split; delete the splits file to recreate it"
            )
        return cls(train=parts["train"], valid=parts["valid"], test=parts["test"])


def make_splits(
    image_ids: Sequence[int],
    train_size: float = 0.7,
    valid_size: float = 0.3,
    seed: int = 108241,
) -> Splits:
    """Split ids as the seed did: test first, then validation out of the rest.

    Args:
        image_ids: ids to split (:attr:`CocoDataset.image_ids`, sorted).
        train_size: fraction of all ids kept for train+valid; the rest is test.
        valid_size: fraction of train+valid held out for validation.
        seed: seed of the one ``RandomState`` both splits draw from, as in the seed.

    Returns:
        Disjoint splits covering every id; each one non-empty.
    """
    ids = [int(i) for i in image_ids]
    if len(ids) < 3:
        raise DatasetError(
            f"need at least 3 annotated images for train/valid/test splits, got {len(ids)}; "
            "add images or annotations"
        )
    if not 0 < train_size < 1 or not 0 < valid_size < 1:
        raise DatasetError("train_size and valid_size must be between 0 and 1")
    rng = np.random.RandomState(seed)
    rest, test = _train_test_split(ids, rng, train_size=train_size)
    train, valid = _train_test_split(rest, rng, test_size=valid_size)
    if not train or not valid or not test:
        raise DatasetError(
            f"{len(ids)} images with train_size={train_size} and valid_size={valid_size} "
            "leave a split empty; add images or choose sizes nearer 0.5"
        )
    return Splits(train=tuple(train), valid=tuple(valid), test=tuple(test))


def parse_split_by(split_by: str) -> tuple[str, str]:
    """``"field:NAME"`` or ``"pattern:REGEX"`` as ``(kind, value)``, or :class:`DatasetError`."""
    kind, _, value = split_by.partition(":")
    if kind not in ("field", "pattern") or not value:
        raise DatasetError(
            f"--split-by {split_by!r} is not understood; use field:NAME (a COCO image field, "
            "e.g. field:source) or pattern:REGEX (e.g. 'pattern:^([a-z]+)_')"
        )
    if kind == "pattern":
        try:
            re.compile(value)
        except re.error as exc:
            raise DatasetError(
                f"--split-by pattern {value!r} is not a regular expression ({exc})"
            ) from None
    return kind, value


def group_of(info: Mapping[str, object], split_by: str) -> str:
    """The group key of one COCO image record under ``split_by`` (see :func:`parse_split_by`).

    ``field:NAME`` reads the record's NAME (``mapseg chips`` writes ``source``,
    the raster a chip was cut from); ``pattern:REGEX`` searches ``file_name``
    and takes the first group (or the whole match).

    Raises:
        DatasetError: the field is missing or the pattern does not match.
    """
    kind, value = parse_split_by(split_by)
    if kind == "field":
        if value not in info:
            raise DatasetError(
                f"image {info.get('file_name')!r} has no field {value!r} for --split-by; "
                "add it to every image record or split by pattern:REGEX on file names"
            )
        return str(info[value])
    name = str(info.get("file_name", ""))
    match = re.search(value, name)
    if match is None:
        raise DatasetError(
            f"--split-by pattern {value!r} does not match file name {name!r}; "
            "change the pattern so it matches every image"
        )
    return match.group(1) if match.groups() else match.group(0)


def make_group_splits(
    image_ids: Sequence[int],
    groups: Sequence[str],
    train_size: float = 0.7,
    valid_size: float = 0.3,
    seed: int = 108241,
) -> Splits:
    """Spatial splits: whole groups (rasters, regions) go to one split each.

    Chips cut from one raster share buildings, light and season, and
    neighbouring chips overlap in context; split at random, the test split
    holds near-copies of training chips and its figures are too good. Here
    the groups are shuffled with ``seed`` and taken whole, test first, then
    validation, until each split holds at least its share of the *images*
    (``1 - train_size`` of all, then ``valid_size`` of the rest).

    Raises:
        DatasetError: fewer than 3 groups, or a split would be empty.
    """
    ids = [int(i) for i in image_ids]
    if len(groups) != len(ids):
        raise ValueError("one group per image id")
    names = sorted(set(groups))
    if len(names) < 3:
        raise DatasetError(
            f"--split-by gives {len(names)} group(s) ({', '.join(names)}); spatial splits need "
            "at least 3 (train, valid, test): add rasters or choose a finer key"
        )
    rng = np.random.RandomState(seed)
    order = [names[k] for k in rng.permutation(len(names))]
    size = {n: 0 for n in names}
    for g in groups:
        size[g] += 1
    test_target = math.ceil((1 - train_size) * len(ids))
    test, rest = _take(order, size, test_target)
    valid_target = math.ceil(valid_size * sum(size[g] for g in rest))
    valid, train = _take(rest, size, valid_target)
    if not train:  # the last group always trains
        train, valid = valid[-1:], valid[:-1]
    parts = {
        "train": set(train),
        "valid": set(valid),
        "test": set(test),
    }
    out = {
        k: tuple(i for i, g in zip(ids, groups, strict=True) if g in v) for k, v in parts.items()
    }
    if not all(out.values()):
        raise DatasetError(
            f"{len(names)} groups cannot fill train, valid and test with train_size={train_size} "
            f"and valid_size={valid_size}; add rasters or choose sizes nearer 0.5"
        )
    return Splits(train=out["train"], valid=out["valid"], test=out["test"])


def _take(order: list[str], size: dict[str, int], target: int) -> tuple[list[str], list[str]]:
    """Leading groups of ``order`` until they hold ``target`` images (at least one group)."""
    taken: list[str] = []
    count = 0
    for k, g in enumerate(order):
        if taken and count >= target:
            return taken, order[k:]
        taken.append(g)
        count += size[g]
    return taken, []


def _train_test_split(
    ids: list[int],
    rng: np.random.RandomState,
    *,
    train_size: float | None = None,
    test_size: float | None = None,
) -> tuple[list[int], list[int]]:
    """scikit-learn's ``train_test_split`` (ShuffleSplit) for float sizes and one array.

    Sizes follow ``_validate_shuffle_split``: a float test size rounds up, a
    float train size rounds down, and the missing one is the complement.
    The single ``rng.permutation(n)`` puts the test ids first.
    """
    n = len(ids)
    if test_size is not None:
        n_test = math.ceil(test_size * n)
        n_train = n - n_test
    elif train_size is not None:
        n_train = math.floor(train_size * n)
        n_test = n - n_train
    else:
        raise ValueError("give train_size or test_size")
    perm = rng.permutation(n)
    test = [ids[i] for i in perm[:n_test]]
    train = [ids[i] for i in perm[n_test : n_test + n_train]]
    return train, test


def save_splits(splits: Splits, path: str | Path) -> None:
    """Write ``splits`` as JSON, atomically.

    A temporary file in the same folder is renamed over ``path``, so an
    interrupted run never leaves a half-written splits file that a resume
    would then trust.
    """
    target = Path(path)
    try:
        write_json(target, splits.to_dict(), indent=1)
    except OSError as exc:
        raise OutputError(
            f"cannot write splits to {target} ({exc.strerror or type(exc).__name__}); "
            "check the folder exists and is writable"
        ) from exc


def load_splits(path: str | Path) -> Splits:
    """Read a file written by :func:`save_splits`."""
    source = Path(path)
    if not source.is_file():
        raise InputFileNotFound(f"splits file {source} not found; run training once to create it")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"splits file {source} is not valid JSON; delete it to recreate the splits"
        ) from exc
    try:
        return Splits.from_dict(data)
    except DatasetError as exc:
        raise DatasetError(f"splits file {source}: {exc}") from exc
