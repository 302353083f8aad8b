"""Dask clusters for tile inference: connecting, and what runs on a worker.

The client never ships the Keras model. A task carries the model's *path*
and SHA-256 (:class:`WorkerSpec`); each worker process loads the model the
first time it needs it and keeps it (:func:`worker_predictor`, a per-process
cache), so a worker pays the load once per job whatever the number of
blocks, and a worker restarted by its nanny simply loads it again. The hash
is checked on the worker: a cluster whose nodes see different files under
the same path fails loudly instead of mixing two models in one layer.

Rasters and the model must be readable at the same path on every worker (a
shared file system, or GDAL virtual paths such as ``/vsis3/...``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import rasterio

from mapseg_core.errors import ConfigError, MapsegError, ModelError
from mapseg_core.inference.engine import GDAL_CACHE_BYTES, Predictor, RasterPlan, process_block
from mapseg_core.inference.windows import Block
from mapseg_core.vectorize.polygons import BlockPolygons

log = logging.getLogger("mapseg")


class SchedulerError(MapsegError, ConnectionError):
    """The Dask scheduler cannot be reached or the cluster cannot start."""

    exit_code = 2


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to run blocks: small, pickled with every task."""

    # Model file, readable at this path on every worker.
    model_path: str
    # Its SHA-256; the worker refuses a file that differs.
    model_sha256: str
    # Windows per predict call.
    batch_size: int
    # TensorFlow (or ONNX Runtime) intra-op threads per worker (None: the default, all cores).
    tf_threads: int | None = None


@dataclass(frozen=True)
class BlockOutcome:
    """What a worker sends back for one block: polygons, not pixels."""

    # Complete buildings and border pieces of the block.
    polygons: BlockPolygons
    # Pixels of the block holding data.
    valid_pixels: int
    # Seconds the worker spent on the block (model load excluded).
    seconds: float
    # Worker that ran it (host:pid).
    worker: str


def _set_tf_threads(threads: int) -> None:
    """Limit TensorFlow's thread pools (only possible before its runtime starts)."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    try:
        import tensorflow as tf
    except ImportError:
        return
    with contextlib.suppress(RuntimeError):  # runtime already initialised: too late, harmless
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


@functools.lru_cache(maxsize=2)
def worker_predictor(
    model_path: str, model_sha256: str, batch_size: int, tf_threads: int | None
) -> Predictor:
    """The model of ``model_path``, loaded once per process (and per batch size).

    Raises:
        ModelError: the file is missing here or is not the one the client hashed.
    """
    from mapseg_core.inference.onnx_runtime import is_onnx, load_onnx
    from mapseg_core.models.artifact import file_sha256, load_artifact

    onnx = is_onnx(model_path)
    if tf_threads and not onnx:
        _set_tf_threads(tf_threads)
    if not os.path.isfile(model_path):
        raise ModelError(
            f"model file {model_path} not found on worker {_worker_name()}; "
            "put the model on a path every worker can read"
        )
    if file_sha256(model_path) != model_sha256:
        raise ModelError(
            f"model file {model_path} on worker {_worker_name()} differs from the client's; "
            "give every worker the same model file"
        )
    if onnx:  # ONNX Runtime, its own thread pool: no TensorFlow on the worker
        model, metadata = load_onnx(model_path, threads=tf_threads)
    else:
        model, metadata = load_artifact(model_path)
    return Predictor(model, metadata, batch_size)


def run_block_task(plan: RasterPlan, block: Block, spec: WorkerSpec) -> BlockOutcome:
    """The Dask task: one block of one raster, read from its path, to polygons.

    Exceptions propagate to the scheduler (Dask retries the task once, then
    the client records the block as failed and goes on with the others).
    """
    predictor = worker_predictor(
        spec.model_path, spec.model_sha256, spec.batch_size, spec.tf_threads
    )
    start = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        result = process_block(plan, block, predictor)
    return BlockOutcome(
        result.polygons, result.valid_pixels, time.perf_counter() - start, _worker_name()
    )


def _worker_name() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def warm_up(client: Any, spec: WorkerSpec) -> None:
    """Load the model on every current worker now (optional: tasks load it on demand)."""
    client.run(
        worker_predictor, spec.model_path, spec.model_sha256, spec.batch_size, spec.tf_threads
    )


@contextlib.contextmanager
def connect(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on a running scheduler (``address``) or a new LocalCluster.

    Args:
        address: a scheduler address such as ``tcp://host:8786`` (``--dask``).
        workers: start a ``LocalCluster`` of this many worker processes, one
            thread each (``--workers``); TensorFlow in each gets
            ``cpu_count // workers`` threads so the workers do not oversubscribe
            the cores.

    Raises:
        ConfigError: dask.distributed is not installed, or both/neither given.
        SchedulerError: the scheduler cannot be reached, or the cluster fails to start.
    """
    if (address is None) == (workers is None):
        raise ConfigError("pass either --dask ADDRESS or --workers N, not both")
    with _quiet_dask():
        with _client(address, workers) as client:
            yield client


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Keep Dask's INFO chatter (scheduler start, nanny, worker registration) off stderr.

    Shown again with ``-v`` (the ``mapseg`` logger at DEBUG).
    """
    if log.getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("distributed", "bokeh", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _client(address: str | None, workers: int | None) -> Iterator[Any]:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "--dask and --workers need dask.distributed; pip install 'mapseg[distributed]'"
        ) from None
    if address is not None:
        try:
            client = distributed.Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(
                f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}); "
                "start one with `dask scheduler` or check the address"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    assert workers is not None
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    import dask

    # The nanny's default MALLOC_TRIM_THRESHOLD_ switches off glibc's dynamic mmap
    # threshold: every numpy temporary of a block becomes an mmap + page faults + munmap,
    # which made blocks ~30 % slower than in a plain process (bench/bench_dask.py).
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    threads = str(local_tf_threads(workers))
    environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                env={"TF_CPP_MIN_LOG_LEVEL": "2", "NO_ALBUMENTATIONS_UPDATE": "1"},
            )
    except Exception as exc:  # distributed raises many kinds when processes cannot start
        raise SchedulerError(
            f"cannot start {workers} local Dask workers ({type(exc).__name__}: {exc}); "
            "try fewer --workers"
        ) from None
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def local_tf_threads(workers: int) -> int:
    """TensorFlow threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)
