"""Running tile inference on many processes or machines, resumably.

* :mod:`~mapseg_core.distributed.jobs`: the job directory's manifest (which
  blocks are done, and their polygons), so a killed run continues where it stopped.
* :mod:`~mapseg_core.distributed.cluster`: connecting to a Dask scheduler or
  starting a ``LocalCluster``, and the worker-side block task with its model cache.
* :mod:`~mapseg_core.distributed.scheduler`: :func:`tile_infer_job`, the driver
  that sends blocks to workers (or runs them here), merges their polygons with
  the same :class:`~mapseg_core.vectorize.merge.BorderMerger` as the
  single-process path and writes the same GeoPackage.

Dask is optional (``pip install mapseg[distributed]``); a job directory
without a cluster needs nothing beyond the core.
"""
