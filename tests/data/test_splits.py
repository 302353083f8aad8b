from __future__ import annotations

import json
from pathlib import Path

import pytest

from mapseg_core.data.splits import Splits, load_splits, make_splits, save_splits
from mapseg_core.errors import DatasetError, InputFileNotFound

# Expected splits of ids range(100, 100 + n), computed with scikit-learn 1.9.1 / numpy 2.4.6:
#   rs = np.random.RandomState(seed)
#   train, test = train_test_split(ids, train_size=train_size, random_state=rs)
#   train, valid = train_test_split(train, test_size=valid_size, random_state=rs)
# (the seed post's code), in a throwaway venv outside the repository.
SKLEARN_SPLITS = [
    (10, 108241, 0.7, 0.3, [101, 102, 100, 104], [107, 105, 108], [106, 103, 109]),
    (3, 108241, 0.7, 0.3, [101], [102], [100]),
    (
        20,
        108241,
        0.7,
        0.3,
        [111, 102, 114, 110, 105, 108, 118, 117, 106],
        [101, 109, 100, 104, 115],
        [103, 107, 119, 116, 113, 112],
    ),
    (7, 1, 0.6, 0.25, [103, 100, 104], [105], [106, 102, 101]),
]


@pytest.mark.parametrize(
    ("n", "seed", "train_size", "valid_size", "train", "valid", "test"), SKLEARN_SPLITS
)
def test_matches_scikit_learn(
    n: int,
    seed: int,
    train_size: float,
    valid_size: float,
    train: list[int],
    valid: list[int],
    test: list[int],
) -> None:
    splits = make_splits(range(100, 100 + n), train_size, valid_size, seed)
    assert splits == Splits(train=tuple(train), valid=tuple(valid), test=tuple(test))


def test_seed_post_sizes_and_first_ids() -> None:
    # The seed post's 8366 images gave 4099 / 1757 / 2510 (ids from scikit-learn as above).
    splits = make_splits(range(8366))
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (4099, 1757, 2510)
    assert splits.train[:5] == (7241, 3263, 2016, 5133, 1355)
    assert splits.valid[:5] == (6346, 5907, 3163, 6139, 342)
    assert splits.test[:5] == (7973, 2675, 4668, 664, 7809)


def test_disjoint_covering_and_reproducible() -> None:
    ids = list(range(0, 300, 3))
    splits = make_splits(ids, seed=7)
    everything = splits.train + splits.valid + splits.test
    assert sorted(everything) == ids
    assert make_splits(ids, seed=7) == splits
    assert make_splits(ids, seed=8) != splits


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_tiny_sets_fill_every_split(n: int) -> None:
    splits = make_splits(range(n))
    assert splits.train and splits.valid and splits.test


def test_too_few_images() -> None:
    with pytest.raises(DatasetError, match="need at least 3 annotated images"):
        make_splits([1, 2])


def test_sizes_that_empty_a_split() -> None:
    with pytest.raises(DatasetError, match="leave a split empty"):
        make_splits(range(3), train_size=0.2)


def test_ids_by_name() -> None:
    splits = Splits(train=(1, 2), valid=(3,), test=(4,))
    assert splits.ids("valid") == (3,)
    with pytest.raises(DatasetError, match="choose one of"):
        splits.ids("dev")  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    splits = make_splits(range(50))
    path = tmp_path / "splits.json"
    save_splits(splits, path)
    assert load_splits(path) == splits
    assert json.loads(path.read_text())["test"] == list(splits.test)
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"]  # no temp file left


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    save_splits(make_splits(range(10), seed=1), path)
    save_splits(make_splits(range(10), seed=2), path)
    assert load_splits(path) == make_splits(range(10), seed=2)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileNotFound, match="not found"):
        load_splits(tmp_path / "splits.json")


@pytest.mark.parametrize(
    ("content", "fix"),
    [
        ("{oops", "delete it to recreate"),
        ('{"train": [1], "valid": [2]}', "delete the splits file"),
        ('{"train": [1], "valid": ["a"], "test": [3]}', "non-integer"),
        ('{"train": [1, 2], "valid": [2], "test": [3]}', "more than one split"),
    ],
)
def test_load_bad_file(tmp_path: Path, content: str, fix: str) -> None:
    path = tmp_path / "splits.json"
    path.write_text(content)
    with pytest.raises(DatasetError) as exc:
        load_splits(path)
    assert fix in str(exc.value)
    assert "\n" not in str(exc.value)


def test_group_splits_keep_every_group_in_one_split():
    from mapseg_core.data.splits import make_group_splits

    ids = list(range(1, 61))
    groups = [f"raster{(i - 1) // 6}" for i in ids]  # 10 rasters of 6 chips
    splits = make_group_splits(ids, groups, train_size=0.7, valid_size=0.3, seed=5)
    of = dict(zip(ids, groups, strict=True))
    parts = [{of[i] for i in splits.ids(n)} for n in ("train", "valid", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sorted(splits.train + splits.valid + splits.test) == ids
    assert len(splits.test) >= 18 and len(splits.valid) >= 12
    again = make_group_splits(ids, groups, train_size=0.7, valid_size=0.3, seed=5)
    assert again == splits


def test_group_splits_need_three_groups():
    from mapseg_core.data.splits import make_group_splits

    with pytest.raises(DatasetError, match="at least 3"):
        make_group_splits([1, 2, 3, 4], ["a", "a", "b", "b"])


def test_group_keys_from_a_field_or_a_file_name_pattern():
    from mapseg_core.data.splits import group_of, parse_split_by

    info = {"file_name": "paris_0012.png", "source": "paris.tif"}
    assert group_of(info, "field:source") == "paris.tif"
    assert group_of(info, "pattern:^([a-z]+)_") == "paris"
    assert group_of(info, "pattern:[a-z]+") == "paris"
    with pytest.raises(DatasetError, match="no field 'region'"):
        group_of(info, "field:region")
    with pytest.raises(DatasetError, match="does not match"):
        group_of(info, "pattern:^x")
    with pytest.raises(DatasetError, match="field:NAME"):
        parse_split_by("source")
    with pytest.raises(DatasetError, match="not a regular expression"):
        parse_split_by("pattern:(")
