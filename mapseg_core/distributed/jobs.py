"""The job directory: which blocks are done, and their polygons, in one SQLite file.

A tile-infer job over thousands of rasters runs for hours; a killed client
(SIGKILL, reboot), a dead worker or a bad block must not cost the blocks that
were finished. ``--job-dir DIR`` keeps ``DIR/manifest.sqlite``:

``job``
    key/value rows: the format marker and the job's *fingerprint* (every
    TileConfig field but ``overwrite``, the model's SHA-256, and each raster's
    absolute path, size and modification time). A rerun whose fingerprint
    differs is refused: its blocks would not fit together with the stored ones.
``blocks``
    one row per finished block: raster number, block row/col, valid pixels,
    seconds and the worker that ran it.
``polygons``
    the block's :class:`~mapseg_core.vectorize.polygons.BlockPolygons`, one row
    per polygon: ``kind`` (0 complete building, 1 border piece), the geometry as
    WKB in global *pixel* coordinates, pixel count, probability sum, and for
    pieces their border slots and neighbour blocks (JSON). Pixel coordinates are
    integers, exact in WKB's float64, so a resumed run merges stored pieces with
    new ones exactly as if both had just been computed.
``rasters``
    for jobs that write ``--save-probabilities`` / ``--save-mask``: each
    block's uint8 values of those GeoTIFFs (zlib-compressed), one row per block
    and kind, so a resumed run writes the GeoTIFFs whole without re-predicting.
``failures``
    blocks that failed after their retry, with the error; they are retried by
    the next run.

A block, its polygons and its raster values are written in one transaction, so a SIGKILL
leaves either the whole block or nothing (SQLite's rollback journal,
``synchronous=FULL``). The file is written only by the client that merges;
workers never touch it, so it may live on a local disk of the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import shapely
from numpy.typing import NDArray

from mapseg_core.distributed.fingerprint import differences
from mapseg_core.errors import ConfigError, MapsegError, OutputError
from mapseg_core.inference.windows import Block
from mapseg_core.vectorize.polygons import BlockPolygons, Building, Piece

#: File name of the manifest inside the job directory.
MANIFEST = "manifest.sqlite"
#: Lock file that keeps two runs out of one job directory.
LOCK = "lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    raster INTEGER NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL,
    valid_pixels INTEGER NOT NULL, seconds REAL, worker TEXT, done_at REAL,
    PRIMARY KEY (raster, row, col)
);
CREATE TABLE IF NOT EXISTS polygons (
    raster INTEGER NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL,
    kind INTEGER NOT NULL, geometry BLOB NOT NULL, pixels INTEGER NOT NULL,
    prob_sum REAL NOT NULL, slots TEXT, neighbours TEXT
);
CREATE INDEX IF NOT EXISTS polygons_block ON polygons (raster, row, col);
CREATE TABLE IF NOT EXISTS rasters (
    raster INTEGER NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL, kind TEXT NOT NULL,
    height INTEGER NOT NULL, width INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (raster, row, col, kind)
);
CREATE TABLE IF NOT EXISTS failures (
    raster INTEGER NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL,
    name TEXT NOT NULL, message TEXT NOT NULL, at REAL,
    PRIMARY KEY (raster, row, col)
);
"""


class BlocksFailed(MapsegError):
    """Some blocks failed twice; the rest of the job was written.

    ``summary`` holds the run's summary (with ``failed_blocks``); the CLI
    exits with :attr:`exit_code` 4 after writing the GeoPackage.
    """

    exit_code = 4

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


class JobMismatchError(ConfigError):
    """The job directory holds a job with other parameters, model or rasters."""


class JobBusyError(MapsegError, OSError):
    """Another run holds the job directory."""

    exit_code = 3


def block_name(raster_name: str, block: Block) -> str:
    """How a block is named to users: raster, block row/col and its pixel window."""
    i, j = block.index
    return (
        f"{raster_name} block ({i}, {j}) rows {block.row_off}..{block.row_off + block.height} "
        f"cols {block.col_off}..{block.col_off + block.width}"
    )


class JobManifest:
    """The manifest of one job directory, opened for one run (holds its lock).

    Use :meth:`open`; close with :meth:`close` or as a context manager.
    """

    def __init__(self, job_dir: Path, conn: sqlite3.Connection, lock: IO[str] | None):
        self.job_dir = job_dir
        self._conn = conn
        self._lock = lock

    @classmethod
    def open(
        cls, job_dir: str | os.PathLike[str], fingerprint: dict[str, Any], overwrite: bool = False
    ) -> JobManifest:
        """Open (or create) the job directory for a run with ``fingerprint``.

        A directory holding the same job is resumed whatever ``overwrite``
        says (rerunning the exact command must continue, not restart); one
        holding another job is refused unless ``overwrite``, which empties it.

        Raises:
            JobMismatchError: another job's manifest, without ``overwrite``.
            JobBusyError: another run holds the directory.
            OutputError: the directory is a file, is not writable, or holds other files.
        """
        job_dir = Path(job_dir)
        if job_dir.exists() and not job_dir.is_dir():
            raise OutputError(f"--job-dir {job_dir} is a file; pass a folder")
        manifest = job_dir / MANIFEST
        if job_dir.is_dir() and not manifest.exists():
            others = [p.name for p in job_dir.iterdir() if p.name != LOCK]
            if others:
                raise OutputError(
                    f"--job-dir {job_dir} is not empty and holds no mapseg job; "
                    "choose a new --job-dir"
                )
        try:
            job_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create --job-dir {job_dir}: {exc.strerror}") from None
        lock = _acquire_lock(job_dir)
        try:
            conn = _connect(manifest)
            stored = _read_fingerprint(conn)
            if stored is not None and stored != fingerprint:
                if not overwrite:
                    raise JobMismatchError(
                        f"--job-dir {job_dir} holds a job with other "
                        f"{', '.join(differences(stored, fingerprint))}; pass --overwrite "
                        "to start it again, or choose a new --job-dir"
                    )
                conn.close()
                for suffix in ("", "-journal", "-wal", "-shm"):
                    Path(f"{manifest}{suffix}").unlink(missing_ok=True)
                conn = _connect(manifest)
                stored = None
            if stored is None:
                with conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO job VALUES ('fingerprint', ?)",
                        (json.dumps(fingerprint),),
                    )
                    conn.execute(
                        "INSERT OR REPLACE INTO job VALUES ('created', ?)", (str(time.time()),)
                    )
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        return cls(job_dir, conn, lock)

    # === Reading ===

    def done(self, raster: int) -> set[tuple[int, int]]:
        """Block indices of ``raster`` already recorded."""
        rows = self._conn.execute("SELECT row, col FROM blocks WHERE raster = ?", (raster,))
        return {(int(r), int(c)) for r, c in rows}

    def count(self) -> int:
        """Blocks recorded, all rasters."""
        return int(self._conn.execute("SELECT count(*) FROM blocks").fetchone()[0])

    def stored(self, raster: int) -> Iterator[tuple[tuple[int, int], BlockPolygons, int]]:
        """``(block index, polygons, valid pixels)`` of every recorded block of ``raster``."""
        blocks = self._conn.execute(
            "SELECT row, col, valid_pixels FROM blocks WHERE raster = ? ORDER BY row, col",
            (raster,),
        ).fetchall()
        for row, col, valid in blocks:
            yield (int(row), int(col)), self._polygons(raster, (int(row), int(col))), int(valid)

    def _polygons(self, raster: int, index: tuple[int, int]) -> BlockPolygons:
        rows = self._conn.execute(
            "SELECT kind, geometry, pixels, prob_sum, slots, neighbours FROM polygons "
            "WHERE raster = ? AND row = ? AND col = ? ORDER BY rowid",
            (raster, *index),
        ).fetchall()
        geoms = shapely.from_wkb([r[1] for r in rows]) if rows else []
        complete: list[Building] = []
        pieces: list[Piece] = []
        for (kind, _, pixels, prob_sum, slots, neighbours), geom in zip(rows, geoms, strict=True):
            if kind == 0:
                complete.append(Building(geom, int(pixels), float(prob_sum)))
                continue
            pieces.append(
                Piece(
                    geometry=geom,
                    block=index,
                    pixels=int(pixels),
                    prob_sum=float(prob_sum),
                    slots=tuple(
                        ((b, int(r), int(c)), int(p), int(s)) for b, r, c, p, s in json.loads(slots)
                    ),
                    neighbours=frozenset((int(r), int(c)) for r, c in json.loads(neighbours)),
                )
            )
        return BlockPolygons(index, tuple(complete), tuple(pieces))

    def stored_rasters(self, raster: int, index: tuple[int, int]) -> dict[str, NDArray[np.uint8]]:
        """The raster-output values recorded with a block, by kind (empty without them)."""
        rows = self._conn.execute(
            "SELECT kind, height, width, data FROM rasters "
            "WHERE raster = ? AND row = ? AND col = ?",
            (raster, *index),
        ).fetchall()
        return {
            str(kind): np.frombuffer(zlib.decompress(data), np.uint8).reshape(int(h), int(w))
            for kind, h, w, data in rows
        }

    def failures(self) -> list[str]:
        """Names of the blocks whose last attempt failed."""
        return [r[0] for r in self._conn.execute("SELECT name FROM failures ORDER BY rowid")]

    # === Writing ===

    def record(
        self,
        raster: int,
        polygons: BlockPolygons,
        valid_pixels: int,
        seconds: float | None = None,
        worker: str | None = None,
        rasters: Sequence[tuple[str, NDArray[np.uint8]]] = (),
    ) -> None:
        """Store one finished block, its polygons and its raster-output values, atomically."""
        index = polygons.block
        geoms = [b.geometry for b in polygons.complete] + [p.geometry for p in polygons.pieces]
        blobs = shapely.to_wkb(geoms) if geoms else []
        rows: list[tuple[Any, ...]] = []
        for k, b in enumerate(polygons.complete):
            rows.append((raster, *index, 0, blobs[k], b.pixels, b.prob_sum, None, None))
        offset = len(polygons.complete)
        for k, p in enumerate(polygons.pieces):
            slots = json.dumps([[b[0], b[1], b[2], pos, side] for b, pos, side in p.slots])
            neighbours = json.dumps(sorted(p.neighbours))
            rows.append(
                (raster, *index, 1, blobs[offset + k], p.pixels, p.prob_sum, slots, neighbours)
            )
        with self._conn:
            self._conn.execute(
                "DELETE FROM polygons WHERE raster = ? AND row = ? AND col = ?", (raster, *index)
            )
            self._conn.executemany("INSERT INTO polygons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._conn.executemany(
                "INSERT OR REPLACE INTO rasters VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (raster, *index, kind, *values.shape, zlib.compress(values.tobytes(), 1))
                    for kind, values in rasters
                ],
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (raster, *index, valid_pixels, seconds, worker, time.time()),
            )
            self._conn.execute(
                "DELETE FROM failures WHERE raster = ? AND row = ? AND col = ?", (raster, *index)
            )

    def record_failure(self, raster: int, index: tuple[int, int], name: str, message: str) -> None:
        """Remember a block that failed (the next run retries it)."""
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                (raster, *index, name, message, time.time()),
            )

    def set(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` in the ``job`` table (status, last summary)."""
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO job VALUES (?, ?)", (key, json.dumps(value, default=str))
            )

    def close(self) -> None:
        """Close the database and release the directory."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> JobManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level="DEFERRED")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise OutputError(
            f"{path} is not a readable job manifest ({exc}); pass --overwrite or a new --job-dir"
        ) from None
    return conn


def _read_fingerprint(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT value FROM job WHERE key = 'fingerprint'").fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _acquire_lock(job_dir: Path) -> IO[str] | None:
    """An exclusive ``flock`` on ``job_dir/lock`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run per job dir is the user's job
        return None
    handle = open(job_dir / LOCK, "a+")  # noqa: SIM115  (held open for the run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise JobBusyError(
            f"--job-dir {job_dir} is in use by another mapseg run (pid {owner}); "
            "wait for it to end or choose another --job-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
