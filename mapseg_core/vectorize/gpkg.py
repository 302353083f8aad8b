"""Vector I/O only: an atomic, streaming GeoPackage writer with provenance metadata.

Features are buffered and appended in chunks (memory does not grow with the
number of buildings) to a temporary file *next to* the target, so the final
``os.replace`` is a rename on the same file system: the target either does
not exist or is complete (and durable: the file is ``fsync``-ed before the
rename, the folder after it). An interrupted run removes the temporary file; an
existing target is refused unless ``overwrite`` is set. A run that writes
other outputs with the layer calls :meth:`GpkgWriter.stage` and commits them
all together (:func:`mapseg_core.atomic.commit_all`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from rasterio.crs import CRS
from shapely.geometry import Polygon

from mapseg_core.atomic import check_output, replace_durably
from mapseg_core.errors import OutputError
from mapseg_core.raster import reproject_geometries

#: Attribute columns of the building layer, in order.
COLUMNS: tuple[str, ...] = ("id", "area_m2", "score", "source")


def temporary_sibling(path: Path) -> Path:
    """A hidden, unique name next to ``path`` with the same suffix."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


class GpkgWriter:
    """Write building polygons to one GeoPackage layer, atomically.

    Use as a context manager: leaving it with an exception deletes the
    temporary file; :meth:`commit` renames it onto the target.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        layer: str,
        crs: Any,
        metadata: dict[str, Any],
        overwrite: bool = False,
        chunk: int = 5000,
    ):
        """Args:
        path: target ``.gpkg``.
        layer: layer name.
        crs: CRS of the layer (anything pyproj understands); features in other
            CRSs are reprojected to it.
        metadata: layer metadata; values that are not strings are stored as JSON.
        overwrite: replace an existing target.
        chunk: features buffered before each append.
        """
        self.path = check_output(path, overwrite)
        self.layer = layer
        self.crs = crs
        self.metadata = {
            k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in metadata.items()
        }
        self.chunk = chunk
        self.count = 0
        self._tmp = temporary_sibling(self.path)
        self._created = False
        self._rows: list[dict[str, Any]] = []
        self._geoms: list[Polygon] = []
        self._crs_of_buffer: Any = None

    def add(self, geometry: Polygon, attributes: dict[str, Any], crs: Any) -> int:
        """Queue one feature (its ``id`` is assigned here); returns the id."""
        if self._geoms and crs != self._crs_of_buffer:
            self.flush()
        self._crs_of_buffer = crs
        self.count += 1
        self._rows.append({"id": self.count, **attributes})
        self._geoms.append(geometry)
        if len(self._geoms) >= self.chunk:
            self.flush()
        return self.count

    def flush(self) -> None:
        """Append the buffered features to the temporary file."""
        if not self._geoms and self._created:
            return
        crs = CRS.from_user_input(self.crs)
        geoms = np.asarray(self._geoms, dtype=object)
        if self._geoms and self._crs_of_buffer is not None and self._crs_of_buffer != self.crs:
            geoms = reproject_geometries(geoms, CRS.from_user_input(self._crs_of_buffer), crs)
        columns = [
            np.array([r["id"] for r in self._rows], dtype=np.int64),
            np.array([r.get("area_m2") for r in self._rows], dtype=np.float64),
            np.array([r.get("score") for r in self._rows], dtype=np.float64),
            np.array([r.get("source") for r in self._rows], dtype=object),
        ]
        try:
            # pyogrio's raw writer takes WKB and plain arrays: no pandas/geopandas
            # on the tile-infer path (the light ONNX install has neither).
            pyogrio.raw.write(
                self._tmp,
                shapely.to_wkb(geoms),
                columns,
                list(COLUMNS),
                layer=self.layer,
                driver="GPKG",
                geometry_type="Polygon",
                crs=crs.to_wkt(),
                append=self._created,
                layer_metadata=None if self._created else self.metadata,
            )
        except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise OutputError(
                f"cannot write {self.path}: {str(exc).splitlines()[0]}; check disk space"
            ) from None
        self._created = True
        self._rows, self._geoms = [], []

    def stage(self) -> Path:
        """Write what is buffered and return the complete temporary file (not yet in place).

        For runs that commit several outputs at once; :meth:`abort` still deletes it.
        """
        self.flush()
        return self._tmp

    def commit(self) -> Path:
        """Write what is buffered and rename the temporary file onto the target, durably."""
        self.stage()
        try:
            replace_durably(self._tmp, self.path)
        except OSError as exc:
            raise OutputError(f"cannot move the result to {self.path}: {exc.strerror}") from None
        return self.path

    def abort(self) -> None:
        """Delete the temporary file and its SQLite side files."""
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{self._tmp}{suffix}").unlink()

    def __enter__(self) -> GpkgWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.abort()
