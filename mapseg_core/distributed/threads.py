"""How many threads each worker's backend (TensorFlow, OpenMP, MKL, ONNX Runtime) may use.

Dask starts worker processes that would each take every core of the host;
``--workers N`` and remote ``dask worker --nworkers N`` hosts share the cores
instead: :class:`BackendThreads` (a worker plugin) sets each process's pools
once, before the backend's runtime starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

#: Threads this process's backend was limited to (None: not set here).
_backend_threads: int | None = None


def set_backend_threads(threads: int, import_backend: bool = True) -> None:
    """Limit the backend's thread pools (TensorFlow, OpenMP, MKL) in this process.

    TensorFlow only accepts it before its runtime starts; a later call is a
    no-op (the first setting stays). ``import_backend=False`` (an ONNX job)
    records the count for ONNX Runtime and sets TensorFlow's only if it is
    already loaded: a worker that runs an ``.onnx`` model never imports it.
    """
    global _backend_threads
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    if _backend_threads is None:
        _backend_threads = threads
    if not import_backend and "tensorflow" not in sys.modules:
        return
    try:
        import tensorflow as tf
    except ImportError:
        return
    with contextlib.suppress(RuntimeError):  # runtime already initialised: too late, harmless
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def backend_threads() -> dict[str, Any]:
    """What this process's backend runs with (for checks: ``client.run(backend_threads)``)."""
    info: dict[str, Any] = {"set": _backend_threads}
    with contextlib.suppress(ImportError):
        import tensorflow as tf

        info["intra_op"] = tf.config.threading.get_intra_op_parallelism_threads()
        info["inter_op"] = tf.config.threading.get_inter_op_parallelism_threads()
    return info


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class BackendThreads:
    """Dask worker plugin: size the backend's thread pools on every worker, local or remote.

    Registered once per job on the client (``client.register_plugin``), it runs
    on each current worker and on every worker that joins later. ``threads``
    (``--tf-threads``, or cores // workers for ``--workers``) is used as given;
    None shares the host's cores among the worker processes the scheduler knows
    on that host, so ``dask worker --nworkers 4 --nthreads 2`` does not start
    4 x all-cores TensorFlow pools. Model calls of one process take turns
    (:func:`~mapseg_core.distributed.cluster.worker_predictor`), so a worker's
    threads need no share of their own.
    """

    name = "mapseg-backend-threads"

    def __init__(self, threads: int | None = None, import_backend: bool = True):
        self.threads = threads
        self.import_backend = import_backend

    async def setup(self, worker: Any) -> None:
        threads = self.threads
        if not threads:
            processes = 1
            with contextlib.suppress(Exception):  # an old scheduler: assume one per host
                info = await worker.scheduler.identity()
                host = worker.address.rsplit(":", 1)[0]
                processes = max(
                    1, sum(1 for a in info.get("workers", {}) if a.rsplit(":", 1)[0] == host)
                )
            threads = max(1, usable_cores() // processes)
        set_backend_threads(threads, self.import_backend)


def register_backend_threads(client: Any, threads: int | None, import_backend: bool = True) -> None:
    """Install :class:`BackendThreads` on ``client``'s cluster (current and future workers).

    ``import_backend=False`` for ONNX models: the workers' thread count is set
    without importing TensorFlow.
    """
    from distributed import WorkerPlugin

    plugin = type("MapsegBackendThreads", (BackendThreads, WorkerPlugin), {})(
        threads, import_backend
    )
    client.register_plugin(plugin, name=BackendThreads.name)


def recorded_threads() -> int | None:
    """The thread count :func:`set_backend_threads` recorded in this process (None: none)."""
    return _backend_threads


def local_tf_threads(workers: int) -> int:
    """TensorFlow threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // workers)
