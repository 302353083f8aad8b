"""tile_infer_job on a real LocalCluster (2 worker processes) and in this process.

Every test compares polygon *sets* (normalized WKT) with the single-process
engine on the same raster: blocks complete in any order, so feature ids may
differ, the buildings may not.
"""

from __future__ import annotations

import importlib
import os
import signal
from pathlib import Path

import geopandas as gpd
import pytest
from conftest import tiled_scene
from rasters import canonical, scene, write_raster

from mapseg_core.config import TileConfig
from mapseg_core.distributed.jobs import BlocksFailed, JobManifest
from mapseg_core.distributed.scheduler import JobOptions, tile_infer_job
from mapseg_core.errors import Interrupted
from mapseg_core.inference.engine import tile_infer

distributed = pytest.importorskip("distributed")

CONFIG = TileConfig(min_area=0.0, block_size=32, overlap=4)


@pytest.fixture(scope="module")
def client():
    """One LocalCluster for the module: 2 processes, 1 thread each (TF import ~5-8 s each)."""
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"TF_CPP_MIN_LOG_LEVEL": "2"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(importlib.import_module, "tensorflow")  # the slow part of a worker's start
        yield client


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 320x400 raster (130 blocks of 32 px), the stub model, the single-process polygons
    and the single-process GeoPackage."""
    from rasters import make_stub_model

    folder = tmp_path_factory.mktemp("big")
    model = make_stub_model(folder / "stub.keras")
    raster = tiled_scene(folder / "big.tif", (2, 2))
    tile_infer([raster], folder / "single.gpkg", model, CONFIG)
    return raster, model, _polygons(folder / "single.gpkg"), folder / "single.gpkg"


def _polygons(path: Path) -> set[str]:
    return canonical(gpd.read_file(path).geometry)


def _attributes(path: Path) -> list[tuple]:
    df = gpd.read_file(path)
    return sorted(zip(df.area_m2, df.score, df.source, strict=True))


def _ready(client) -> None:
    client.wait_for_workers(2, timeout=120)


def test_dask_run_gives_the_single_process_polygons(client, big, tmp_path):
    raster, model, expected, single = big
    _ready(client)
    events = []
    summary = tile_infer_job(
        [raster], tmp_path / "o.gpkg", model, CONFIG, client=client, report=events.append
    )
    assert _polygons(tmp_path / "o.gpkg") == expected
    assert summary["blocks"] == summary["blocks_run"] == 130 and summary["workers"] == 2
    assert summary["mpx_per_s"] > 0 and summary["km2_per_h"] > 0
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "done"
    assert sum(e["event"] == "progress" for e in events) == 130
    # The attributes too (area_m2, score, source), not only the geometries.
    assert _attributes(tmp_path / "o.gpkg") == _attributes(single)


def test_dask_run_writes_the_single_process_probabilities_and_mask(client, big, tmp_path):
    """Block values come back from the workers and land where tile-infer puts them."""
    import numpy as np
    import rasterio

    raster, model, expected, _ = big
    _ready(client)

    def outputs(folder: Path) -> TileConfig:
        folder.mkdir()
        return TileConfig(
            min_area=0.0,
            block_size=32,
            overlap=4,
            save_probabilities=str(folder / "p.tif"),
            save_mask=str(folder / "m.tif"),
        )

    tile_infer([raster], tmp_path / "single.gpkg", model, outputs(tmp_path / "single"))
    tile_infer_job([raster], tmp_path / "o.gpkg", model, outputs(tmp_path / "dask"), client=client)
    assert _polygons(tmp_path / "o.gpkg") == expected
    for name in ("p.tif", "m.tif"):
        with (
            rasterio.open(tmp_path / "single" / name) as a,
            rasterio.open(tmp_path / "dask" / name) as b,
        ):
            assert np.array_equal(a.read(1), b.read(1)) and a.transform == b.transform
            assert a.read(1).any()


def test_a_worker_killed_mid_run_changes_nothing(client, big, tmp_path):
    raster, model, expected, single = big
    _ready(client)
    pids = list(client.run(os.getpid).values())
    killed = []

    def report(event):
        if event["event"] == "progress" and event["done"] == 30 and not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    summary = tile_infer_job(
        [raster],
        tmp_path / "o.gpkg",
        model,
        CONFIG,
        JobOptions(job_dir=str(tmp_path / "job")),
        report=report,
        client=client,
    )
    assert killed and summary["failed_blocks"] == []
    assert _polygons(tmp_path / "o.gpkg") == expected


def test_several_rasters_and_a_vrt_mosaic_make_one_layer(client, stub_model, tmp_path):
    img, _ = scene()
    left = write_raster(tmp_path / "left.tif", img[:, :, :96])
    from rasters import transform

    right = write_raster(
        tmp_path / "right.tif", img[:, :, 96:], tfm=transform(origin=(500000.0 + 96 * 0.5, 5e6))
    )
    whole = write_raster(tmp_path / "whole.tif", img)
    vrt = _vrt(tmp_path / "mosaic.vrt", [(left, 0, 96), (right, 96, 104)], img.shape[1:])
    _ready(client)
    tile_infer([whole], tmp_path / "whole.gpkg", stub_model, CONFIG)
    tile_infer_job([vrt], tmp_path / "vrt.gpkg", stub_model, CONFIG, client=client)
    assert _polygons(tmp_path / "vrt.gpkg") == _polygons(tmp_path / "whole.gpkg")
    tile_infer([left, right], tmp_path / "two.gpkg", stub_model, CONFIG)
    tile_infer_job(
        [str(tmp_path / "[lr]*.tif")], tmp_path / "glob.gpkg", stub_model, CONFIG, client=client
    )
    assert _polygons(tmp_path / "glob.gpkg") == _polygons(tmp_path / "two.gpkg")
    assert set(gpd.read_file(tmp_path / "glob.gpkg").source) == {"left.tif", "right.tif"}


def test_a_block_failing_twice_is_named_and_the_rest_is_written(
    client, stub_model, bad_tile_raster, tmp_path
):
    config = TileConfig(min_area=0.0, block_size=64, overlap=0)
    _ready(client)
    events = []
    with pytest.raises(BlocksFailed) as err:
        tile_infer_job(
            [bad_tile_raster],
            tmp_path / "o.gpkg",
            stub_model,
            config,
            JobOptions(job_dir=str(tmp_path / "job")),
            report=events.append,
            client=client,
        )
    name = "bad.tif block (1, 1) rows 64..128 cols 64..128"
    assert err.value.exit_code == 4 and name in str(err.value)
    assert err.value.summary["failed_blocks"] == [name]
    assert any(e["event"] == "warning" and name in e["message"] for e in events)
    assert len(gpd.read_file(tmp_path / "o.gpkg")) > 0  # everything else is there
    with JobManifest.open(tmp_path / "job", _stored_fingerprint(tmp_path / "job")) as manifest:
        assert manifest.failures() == [name] and manifest.count() == 11


def test_interrupted_local_job_resumes_to_the_same_polygons(big, tmp_path):
    raster, model, expected, single = big
    job = JobOptions(job_dir=str(tmp_path / "job"))

    def stop(event):
        if event["event"] == "progress" and event["done"] == 47:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="run the same command again"):
        tile_infer_job([raster], tmp_path / "o.gpkg", model, CONFIG, job, report=stop)
    assert not (tmp_path / "o.gpkg").exists()
    summary = tile_infer_job([raster], tmp_path / "o.gpkg", model, CONFIG, job)
    assert summary["blocks_resumed"] == 47 and summary["blocks_run"] == 130 - 47
    assert _polygons(tmp_path / "o.gpkg") == expected


def _stored_fingerprint(job_dir: Path) -> dict:
    import json
    import sqlite3

    with sqlite3.connect(job_dir / "manifest.sqlite") as conn:
        row = conn.execute("SELECT value FROM job WHERE key = 'fingerprint'").fetchone()
    return json.loads(row[0])


def _vrt(path: Path, parts: list[tuple[Path, int, int]], shape: tuple[int, int]) -> Path:
    """A GDAL VRT mosaic of side-by-side tiles: (file, first column, width) each."""
    import rasterio

    with rasterio.open(parts[0][0]) as ds:
        gt = ds.transform.to_gdal()
        crs = ds.crs.to_wkt()
    height, width = shape
    bands = []
    for b in (1, 2, 3):
        sources = "".join(
            f"<SimpleSource><SourceFilename relativeToVRT='0'>{f}</SourceFilename>"
            f"<SourceBand>{b}</SourceBand>"
            f"<SrcRect xOff='0' yOff='0' xSize='{w}' ySize='{height}'/>"
            f"<DstRect xOff='{c}' yOff='0' xSize='{w}' ySize='{height}'/></SimpleSource>"
            for f, c, w in parts
        )
        bands.append(f"<VRTRasterBand dataType='Byte' band='{b}'>{sources}</VRTRasterBand>")
    path.write_text(
        f"<VRTDataset rasterXSize='{width}' rasterYSize='{height}'>"
        f"<SRS>{crs.replace('<', '&lt;')}</SRS>"
        f"<GeoTransform>{', '.join(repr(v) for v in gt)}</GeoTransform>"
        + "".join(bands)
        + "</VRTDataset>"
    )
    return path


@pytest.fixture(scope="module")
def terraces(tmp_path_factory):
    """The terrace scene tiled 2x2, the contact stub and its single-process polygons."""
    import numpy as np
    from rasters import make_contact_stub_model, terrace_scene

    folder = tmp_path_factory.mktemp("terraces")
    model = make_contact_stub_model(folder / "contact.keras")
    img, _ = terrace_scene()
    raster = write_raster(folder / "terraces.tif", np.tile(img, (1, 2, 2)))
    tile_infer([raster], folder / "single.gpkg", model, CONFIG)
    return raster, model, _polygons(folder / "single.gpkg")


def test_dask_run_with_separation_gives_the_single_process_polygons(client, terraces, tmp_path):
    raster, model, expected = terraces
    assert len(expected) == 4 * 12  # every house of the 2x2 tiled terraces, separated
    _ready(client)
    tile_infer_job([raster], tmp_path / "o.gpkg", model, CONFIG, client=client)
    assert _polygons(tmp_path / "o.gpkg") == expected


def test_interrupted_job_with_separation_resumes_to_the_same_polygons(terraces, tmp_path):
    raster, model, expected = terraces
    job = JobOptions(job_dir=str(tmp_path / "job"))

    def stop(event):
        if event["event"] == "progress" and event["done"] == 9:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        tile_infer_job([raster], tmp_path / "o.gpkg", model, CONFIG, job, report=stop)
    summary = tile_infer_job([raster], tmp_path / "o.gpkg", model, CONFIG, job)
    assert summary["blocks_resumed"] == 9
    assert _polygons(tmp_path / "o.gpkg") == expected
