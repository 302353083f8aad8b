"""Progress events: how long-running engine work reports without printing.

Engine functions take a ``report`` callable and call it with plain dicts.
The doors decide how to show them (a tqdm bar in the CLI, JSON lines for the
QGIS plugin, ``QgsProcessingFeedback`` there). The schema, one dict per event:

``{"event": "start", "total": N, "unit": "block"|"epoch", ...}``
    work begins; ``total`` units are expected. Extra keys describe the job.
``{"event": "progress", "done": k, "total": N, "fraction": k / N, ...}``
    ``k`` units are finished; extra keys are rates or metrics (``mpx_per_s``, ``loss``).
``{"event": "epoch", "epoch": e, "epochs": E, "loss": ..., "val_loss": ...}``
    a training epoch finished, with its metrics (training only).
``{"event": "warning", "message": "..."}``
    something the user should know; the work goes on.
``{"event": "done", "summary": {...}}``
    work finished; ``summary`` holds the figures of the run.
``{"event": "error", "message": "...", "exit_code": n}``
    emitted by the doors only, when the work failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
Reporter = Callable[[Event], None]


def null_reporter(event: Event) -> None:
    """A reporter that ignores every event."""


def progress_event(done: int, total: int, **extra: Any) -> Event:
    """Build a ``progress`` event with its fraction."""
    return {
        "event": "progress",
        "done": done,
        "total": total,
        "fraction": (done / total) if total else 1.0,
        **extra,
    }
