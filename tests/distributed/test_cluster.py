"""Workers with several threads: one model load, turn-taking model calls, sized backend pools."""

from __future__ import annotations

import importlib
import threading
import time

import geopandas as gpd
import pytest
from conftest import tiled_scene
from rasters import canonical, make_stub_model

from mapseg_core.config import TileConfig
from mapseg_core.distributed import cluster
from mapseg_core.distributed import threads as threads_module
from mapseg_core.distributed.scheduler import tile_infer_job
from mapseg_core.inference.engine import tile_infer

distributed = pytest.importorskip("distributed")

CONFIG = TileConfig(min_area=0.0, block_size=32, overlap=4)


def test_concurrent_first_calls_load_the_model_once(monkeypatch):
    loads: list[int] = []

    def slow_load(*key):
        loads.append(1)
        time.sleep(0.2)  # long enough for every thread to arrive during the load
        return object()

    monkeypatch.setattr(cluster, "_load_predictor", slow_load)
    monkeypatch.setattr(cluster, "_cache", {})
    results: list[object] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cluster.worker_predictor("m.keras", "ab", 4, None))
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(results) == 8 and len({id(r) for r in results}) == 1


def test_model_calls_of_one_process_take_turns():
    active = {"now": 0, "most": 0}
    lock = threading.Lock()

    class Model:
        def predict_on_batch(self, x):
            with lock:
                active["now"] += 1
                active["most"] = max(active["most"], active["now"])
            time.sleep(0.02)
            with lock:
                active["now"] -= 1
            return x

    serial = cluster._SerialModel(Model())
    threads = [threading.Thread(target=serial.predict_on_batch, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert active["most"] == 1


def test_two_threads_per_worker_give_the_single_process_polygons(tmp_path):
    model = make_stub_model(tmp_path / "stub.keras")
    raster = tiled_scene(tmp_path / "big.tif", (2, 2))
    tile_infer([raster], tmp_path / "single.gpkg", model, CONFIG)
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            dashboard_address=None,
            env={"TF_CPP_MIN_LOG_LEVEL": "2"},
        ) as local,
        distributed.Client(local) as client,
    ):
        summary = tile_infer_job([raster], tmp_path / "dask.gpkg", model, CONFIG, client=client)
        threads = list(client.run(threads_module.backend_threads).values())
        cores = list(client.run(threads_module.usable_cores).values())
        client.run(importlib.import_module, "tensorflow")
    single = gpd.read_file(tmp_path / "single.gpkg")
    dask = gpd.read_file(tmp_path / "dask.gpkg")
    assert canonical(dask.geometry) == canonical(single.geometry)
    assert sorted(dask["area_m2"]) == sorted(single["area_m2"])
    assert summary["blocks_run"] == 130 and summary["workers"] == 1
    # the plugin sized the one worker's pools to the host's cores, not TF's default
    assert threads[0]["set"] == cores[0] and threads[0]["intra_op"] == cores[0]
    assert threads[0]["inter_op"] == 1
