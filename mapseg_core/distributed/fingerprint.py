"""What a job directory must match to be resumed: parameters, model and rasters.

A job's *fingerprint* is every TileConfig field but ``overwrite``, the model's
SHA-256 and each raster's identity (path, size, modification time). A rerun
whose fingerprint differs is refused with the names of what changed
(:func:`differences`): its blocks would not fit together with the stored ones.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mapseg_core.config import TileConfig

#: Format marker stored in the manifest.
JOB_FORMAT = "mapseg-job"
#: Version of the manifest schema.
JOB_FORMAT_VERSION = 1
#: TileConfig fields that are no part of the job's identity.
UNFINGERPRINTED = ("overwrite",)


def raster_identity(path: str) -> dict[str, Any]:
    """Path, size and modification time of a raster: cheap, and changes when it is rewritten.

    Hashing terabytes of imagery to recognise them would take longer than the
    job; a rewritten file changes size or mtime. GDAL virtual paths
    (``/vsis3/...``) that are not local files are identified by name only.
    """
    p = Path(path)
    if not p.exists():
        return {"path": path}
    stat = p.stat()
    return {"path": str(p.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def job_fingerprint(
    config: TileConfig, model_sha256: str, rasters: Sequence[str]
) -> dict[str, Any]:
    """What must match for a job directory to be resumed (JSON-ready)."""
    parameters = {k: v for k, v in dataclasses.asdict(config).items() if k not in UNFINGERPRINTED}
    fingerprint = {
        "format": JOB_FORMAT,
        "format_version": JOB_FORMAT_VERSION,
        "parameters": parameters,
        "model_sha256": model_sha256,
        "rasters": [raster_identity(r) for r in rasters],
    }
    return dict(json.loads(json.dumps(fingerprint, default=str)))


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """CLI-style names of what differs between two fingerprints (``--block-size``, ``rasters``)."""
    names = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key == "parameters":
            a, b = old.get(key) or {}, new.get(key) or {}
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            names += [f"--{k.replace('_', '-')}" for k in changed]
        else:
            names.append(key.replace("_", " "))
    return names
