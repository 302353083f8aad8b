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

A worker may run several threads (``dask worker --nthreads 2``): the cache
loads the model once under a lock, and model calls of one process take turns
(the other threads read and vectorize meanwhile, as the single-process
pipeline overlaps them). The backend's thread pools are sized on every worker
that joins, local or remote, by the :class:`BackendThreads` plugin: the
host's cores shared by its worker processes, never all of them per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import rasterio

from mapseg_core.distributed.threads import (
    local_tf_threads,
    recorded_threads,
    register_backend_threads,
    set_backend_threads,
)
from mapseg_core.errors import ConfigError, MapsegError, ModelError
from mapseg_core.inference.blocks import process_block
from mapseg_core.inference.engine import GDAL_CACHE_BYTES
from mapseg_core.inference.plan import RasterPlan
from mapseg_core.inference.predictor import Predictor
from mapseg_core.inference.runner import BlockOutcome, outcome_of
from mapseg_core.inference.windows import Block

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
    # Raster outputs the job writes ("probability", "mask"): their block values come back too.
    raster_kinds: tuple[str, ...] = ()


class _SerialModel:
    """A Keras model whose predict calls take turns across the threads of a process.

    A worker with ``--nthreads 2`` runs two blocks at once; their reads and
    polygons overlap, their model calls queue (the backend already spreads one
    call over the cores, and Keras builds its predict function lazily, which two
    first calls would race on).
    """

    def __init__(self, model: Any):
        self.wrapped = model
        self._lock = threading.Lock()

    def predict_on_batch(self, x: Any) -> Any:
        with self._lock:
            return self.wrapped.predict_on_batch(x)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


_cache: dict[tuple[str, str, int, int | None], Predictor] = {}
_cache_lock = threading.Lock()


def worker_predictor(
    model_path: str, model_sha256: str, batch_size: int, tf_threads: int | None
) -> Predictor:
    """The model of ``model_path``, loaded once per process (and per batch size).

    Thread-safe: concurrent first calls (several threads per worker) load it
    once; later calls return the cached predictor without waiting.

    Raises:
        ModelError: the file is missing here or is not the one the client hashed.
    """
    key = (model_path, model_sha256, batch_size, tf_threads)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    with _cache_lock:
        cached = _cache.get(key)
        if cached is None:
            cached = _load_predictor(*key)
            if len(_cache) >= 2:  # a worker serving a new job: drop the oldest model
                _cache.pop(next(iter(_cache)))
            _cache[key] = cached
        return cached


def _load_predictor(
    model_path: str, model_sha256: str, batch_size: int, tf_threads: int | None
) -> Predictor:
    from mapseg_core.inference.onnx_runtime import is_onnx, load_onnx
    from mapseg_core.models.artifact import file_sha256, load_artifact

    onnx = is_onnx(model_path)
    if tf_threads:
        set_backend_threads(tf_threads, import_backend=not onnx)
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
        model, _ = load_onnx(model_path, threads=tf_threads or recorded_threads())
    else:
        model, _ = load_artifact(model_path)
    return Predictor(_SerialModel(model), batch_size)


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
        result = process_block(plan, block, predictor, keep_probability=bool(spec.raster_kinds))
    seconds = time.perf_counter() - start
    return outcome_of(result, plan, spec.raster_kinds, seconds, _worker_name())


def _worker_name() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def warm_up(client: Any, spec: WorkerSpec) -> None:
    """Size the backend on every worker and load the model on the current ones now.

    The thread plugin also reaches workers that join later; the model load is
    optional (tasks load it on demand).
    """
    from mapseg_core.inference.onnx_runtime import is_onnx

    register_backend_threads(client, spec.tf_threads, import_backend=not is_onnx(spec.model_path))
    client.run(_load_here, spec.model_path, spec.model_sha256, spec.batch_size, spec.tf_threads)


def _load_here(model_path: str, model_sha256: str, batch_size: int, tf_threads: int | None) -> None:
    """Fill this worker's cache (returns nothing: a model is not sent back to the client)."""
    worker_predictor(model_path, model_sha256, batch_size, tf_threads)


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
