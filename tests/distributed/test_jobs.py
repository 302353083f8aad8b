"""The job manifest: exact round trip of block polygons, identity checks, one run at a time."""

from __future__ import annotations

import numpy as np
import pytest
from rasters import canonical

from mapseg_core.config import TileConfig
from mapseg_core.distributed.fingerprint import job_fingerprint
from mapseg_core.distributed.inputs import expand_rasters
from mapseg_core.distributed.jobs import JobBusyError, JobManifest, JobMismatchError
from mapseg_core.errors import InputFileNotFound, OutputError
from mapseg_core.vectorize.merge import merge_blocks
from mapseg_core.vectorize.polygons import vectorize_block


def _blocks(mask: np.ndarray, size: int):
    rows, cols = -(-mask.shape[0] // size), -(-mask.shape[1] // size)
    for i in range(rows):
        for j in range(cols):
            part = mask[i * size : (i + 1) * size, j * size : (j + 1) * size]
            prob = np.where(part, 0.9, 0.1).astype(np.float32)
            yield vectorize_block(part, prob, (i, j), (i * size, j * size), (rows, cols))


@pytest.fixture
def mask() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.random((96, 128)) > 0.55  # many buildings crossing every block border


def _fingerprint(tmp_path, **changes):
    raster = tmp_path / "a.tif"
    raster.write_bytes(b"x")
    return job_fingerprint(TileConfig(**changes), "abc", [str(raster)])


def test_stored_blocks_merge_exactly_like_fresh_ones(tmp_path, mask):
    fresh = list(_blocks(mask, 32))
    with JobManifest.open(tmp_path / "job", _fingerprint(tmp_path)) as manifest:
        for k, block in enumerate(fresh):
            manifest.record(0, block, valid_pixels=k)
        stored = list(manifest.stored(0))
    assert [s[0] for s in stored] == [b.block for b in fresh]
    assert [s[2] for s in stored] == list(range(len(fresh)))
    assert [s[1] for s in stored] == fresh  # dataclass equality: geometries, slots, sums
    half = len(fresh) // 2
    mixed = [s[1] for s in stored[:half]] + fresh[half:]
    a = merge_blocks(fresh)
    b = merge_blocks(mixed[::-1])
    assert canonical([x.geometry for x in a]) == canonical([x.geometry for x in b])
    assert sorted((x.pixels, x.prob_sum) for x in a) == sorted((x.pixels, x.prob_sum) for x in b)


def test_reopening_the_same_job_resumes_even_with_overwrite(tmp_path, mask):
    fp = _fingerprint(tmp_path)
    with JobManifest.open(tmp_path / "job", fp) as manifest:
        manifest.record(0, next(_blocks(mask, 32)), 10)
    with JobManifest.open(tmp_path / "job", fp, overwrite=True) as manifest:
        assert manifest.done(0) == {(0, 0)} and manifest.count() == 1


def test_other_parameters_are_refused_with_the_fix(tmp_path, mask):
    with JobManifest.open(tmp_path / "job", _fingerprint(tmp_path)) as manifest:
        manifest.record(0, next(_blocks(mask, 32)), 10)
    with pytest.raises(JobMismatchError) as err:
        JobManifest.open(tmp_path / "job", _fingerprint(tmp_path, block_size=512))
    message = str(err.value)
    assert "--block-size" in message and "--overwrite" in message and "--job-dir" in message
    assert "\n" not in message
    with JobManifest.open(
        tmp_path / "job", _fingerprint(tmp_path, block_size=512), overwrite=True
    ) as manifest:
        assert manifest.count() == 0


def test_one_run_per_job_dir(tmp_path):
    fp = _fingerprint(tmp_path)
    with JobManifest.open(tmp_path / "job", fp), pytest.raises(JobBusyError, match="in use"):
        JobManifest.open(tmp_path / "job", fp)
    JobManifest.open(tmp_path / "job", fp).close()  # released when the first run closed


def test_a_folder_of_other_files_is_not_a_job_dir(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="new --job-dir"):
        JobManifest.open(tmp_path / "job", _fingerprint(tmp_path))


def test_failures_are_kept_until_the_block_succeeds(tmp_path, mask):
    block = next(_blocks(mask, 32))
    with JobManifest.open(tmp_path / "job", _fingerprint(tmp_path)) as manifest:
        manifest.record_failure(0, (0, 0), "a.tif block (0, 0)", "boom")
        assert manifest.failures() == ["a.tif block (0, 0)"]
        manifest.record(0, block, 5)
        assert manifest.failures() == []


def test_globs_expand_sorted_and_missing_patterns_fail(tmp_path):
    for name in ("b.tif", "a.tif", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert expand_rasters([str(tmp_path / "*.tif")]) == [
        str(tmp_path / "a.tif"),
        str(tmp_path / "b.tif"),
    ]
    assert expand_rasters([tmp_path / "b.tif", str(tmp_path / "*.tif")]) == [
        str(tmp_path / "b.tif"),
        str(tmp_path / "a.tif"),
    ]
    with pytest.raises(InputFileNotFound, match="matches no file"):
        expand_rasters([str(tmp_path / "*.jp2")])
