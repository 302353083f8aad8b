"""tile-infer on a Dask LocalCluster: scaling 1 -> 2 workers, and the overhead of Dask itself.

    .venv/bin/python bench/bench_dask.py --size 4096

One synthetic orthophoto (0.3 m, one roof per 48x48 px) and one model (the
roof detector with the compute of three 3x3x32 convolutions, as in
bench_tile_infer.py), measured in one run:

* ``single``: :func:`~mapseg_core.inference.engine.tile_infer` in this
  process (TensorFlow with its default threads: all cores), model loaded in the run.
* ``dask 1 worker``: :func:`~mapseg_core.distributed.scheduler.tile_infer_job`
  on a LocalCluster of one worker with as many TensorFlow threads as cores:
  the same compute as ``single``, so ``dask / single`` is the cost of Dask
  (task round trips, pickling polygons, the model load on the worker).
* ``dask 1 vs 2 workers, 1 thread each``: the scaling of the Dask path with
  the number of worker processes (ideal: 2.0 on two free cores).
* ``--workers 2`` as the CLI runs it (cores // 2 threads each).

Clusters are started and the model loaded (in this process for ``single``,
on every worker for Dask) before the clock starts: a long job pays that once,
and it is not scheduling. Each timing is the whole job, read to GeoPackage.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import GSD, heavy_stub, say, write_scene

from mapseg_core.config import TileConfig
from mapseg_core.distributed.cluster import WorkerSpec, connect, warm_up
from mapseg_core.distributed.scheduler import JobOptions, tile_infer_job
from mapseg_core.inference.engine import tile_infer
from mapseg_core.models.artifact import file_sha256, load_artifact


def _spin(seconds: float) -> int:
    """Loop iterations of pure Python in ``seconds`` of wall time."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def cpu_scaling(seconds: float = 3.0) -> float:
    """Work two busy processes get done, relative to one: what 2 workers can gain here.

    On a machine with two free cores this is ~2.0; a shared VM may give much less.
    """
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        pool.submit(_spin, 0.1).result()
        one = pool.submit(_spin, seconds).result()
        two = sum(pool.map(_spin, [seconds, seconds]))
    return two / one


def dask_run(workers: int, threads: int, raster: Path, out: Path, model: Path, config: TileConfig):
    """Seconds of one job on a fresh LocalCluster of ``workers`` x ``threads`` TF threads."""
    with connect(workers=workers) as client:
        client.wait_for_workers(workers)
        spec = WorkerSpec(str(model), file_sha256(model), config.batch_size, threads)
        warm_up(client, spec)  # model loaded on every worker, as `loaded_model` for single
        start = time.perf_counter()
        summary = tile_infer_job(
            [raster], out, model, config, JobOptions(tf_threads=threads), client=client
        )
        return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="raster side in pixels")
    parser.add_argument("--tile", type=int, default=512, help="model input size")
    parser.add_argument("--margin", type=int, default=16, help="overlap (cropped px per side)")
    parser.add_argument("--block", type=int, default=480, help="block size")
    parser.add_argument("--batch", type=int, default=4, help="windows per predict call")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmpdir = Path(tmp)
        raster = write_scene(tmpdir / "scene.tif", args.size)
        model = heavy_stub(tmpdir / "heavy.keras", args.tile, args.margin)
        config = TileConfig(
            block_size=args.block, batch_size=args.batch, min_area=0.0, overwrite=True
        )
        out = tmpdir / "out.gpkg"
        scaling = cpu_scaling()
        loaded, _ = load_artifact(model)
        start = time.perf_counter()
        single = tile_infer([raster], out, model, config, loaded_model=loaded)
        t_single = time.perf_counter() - start
        t_d1, s_d1 = dask_run(1, cores, raster, out, model, config)
        t_w1, _ = dask_run(1, 1, raster, out, model, config)
        t_w2, s_w2 = dask_run(2, 1, raster, out, model, config)
        cli_threads = max(1, cores // 2)
        t_cli2 = (
            t_w2 if cli_threads == 1 else dask_run(2, cli_threads, raster, out, model, config)[0]
        )

    mpx = args.size**2 / 1e6
    blocks = single["blocks"]
    same = single["features"] == s_d1["features"] == s_w2["features"]
    say(
        f"raster {args.size}x{args.size} px ({mpx:.1f} Mpx, {mpx * GSD**2:.2f} km2 at {GSD} m), "
        f"{blocks} blocks of {args.block} px, window {args.tile}, overlap {args.margin}, "
        f"{cores} cores"
    )
    rows = [
        (f"single process ({cores} TF threads)", t_single),
        (f"dask, 1 worker x {cores} TF threads", t_d1),
        ("dask, 1 worker x 1 TF thread", t_w1),
        ("dask, 2 workers x 1 TF thread", t_w2),
        (f"dask, --workers 2 ({max(1, cores // 2)} TF thread(s) each)", t_cli2),
    ]
    for label, seconds in rows:
        say(f"{label:<42} {seconds:7.2f} s  {mpx / seconds:5.2f} Mpx/s")
    say(f"same buildings in every run: {same} ({single['features']})")
    say(f"ratio dask 1 worker / single process      {t_d1 / t_single:7.3f}  (goal <= 1.10)")
    say(f"throughput 2 workers / 1 worker (1 thread) {t_w1 / t_w2:6.3f}  (ideal 2.0 on 2 cores)")
    say(f"machine: 2 busy processes / 1 busy process  {scaling:6.3f}  (CPU the 2nd worker can get)")
    say(f"throughput --workers 2 / single process   {t_single / t_cli2:7.3f}")
    say(
        f"km2/h at {GSD} m: single {mpx * GSD**2 / t_single * 3600:.1f}, "
        f"2 workers {mpx * GSD**2 / t_w2 * 3600:.1f}"
    )


if __name__ == "__main__":
    main()
