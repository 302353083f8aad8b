"""Show engine progress events: a tqdm bar on stderr, or JSON lines.

``--progress json`` prints every event of :mod:`mapseg_core.progress` as one
JSON object per line on **stdout** (flushed), which is what the QGIS plugin
reads; errors are also emitted as an ``error`` event there. ``--progress bar``
(the default) draws a bar on stderr; ``--progress none`` and ``-q`` stay silent.
"""

from __future__ import annotations

import json
import sys
from types import TracebackType
from typing import Any

import click

from mapseg_core.progress import Event

progress_option = click.option(
    "--progress",
    "progress_mode",
    type=click.Choice(["bar", "json", "none"]),
    default="bar",
    show_default=True,
    help="How to show progress: a bar on stderr, JSON lines on stdout (for tools), or nothing.",
)


class ProgressPrinter:
    """Callable reporter for engine events; a context manager that closes the bar."""

    def __init__(self, mode: str = "bar", desc: str = "", quiet: bool = False):
        self.mode = "none" if quiet and mode == "bar" else mode
        self.desc = desc
        self._bar: Any = None
        self.warnings: list[str] = []
        self.summary: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "warning":
            self.warnings.append(str(event.get("message")))
        if kind == "done":
            self.summary = dict(event.get("summary", {}))
        if self.mode == "json":
            click.echo(json.dumps(event, default=str))
            sys.stdout.flush()
            return
        if kind == "warning":
            self._write(f"mapseg: warning: {event.get('message')}")
        if kind == "epoch" and self.mode == "bar":
            figures = ", ".join(
                f"{k} {v:.4f}"
                for k, v in event.items()
                if k in _EPOCH_KEYS and isinstance(v, float)
            )
            self._write(f"epoch {event.get('epoch')}/{event.get('epochs')}: {figures}")
        if self.mode != "bar":
            return
        if kind == "start":
            from tqdm import tqdm

            self._bar = tqdm(
                total=event.get("total"),
                desc=self.desc,
                unit=event.get("unit", "it"),
                file=sys.stderr,
                dynamic_ncols=True,
            )
        elif kind == "progress" and self._bar is not None:
            self._bar.n = event.get("done", self._bar.n)
            postfix = {k: v for k, v in event.items() if k in _POSTFIX_KEYS}
            if postfix:
                self._bar.set_postfix(
                    {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in postfix.items()},
                    refresh=False,
                )
            self._bar.refresh()
        elif kind == "done":
            self.close()

    def error(self, message: str, exit_code: int) -> None:
        """Emit the ``error`` event (JSON mode only; the CLI prints the line itself)."""
        if self.mode == "json":
            click.echo(json.dumps({"event": "error", "message": message, "exit_code": exit_code}))
            sys.stdout.flush()

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc is not None and self.mode == "json":
            from mapseg_core.errors import MapsegError

            code = exc.exit_code if isinstance(exc, MapsegError) else 70
            if isinstance(exc, KeyboardInterrupt):
                code = 130
            self.error(str(exc) or type(exc).__name__, code)


_EPOCH_KEYS = ("loss", "dice_coef", "iou_coef", "val_loss", "val_dice_coef", "val_iou_coef")
_POSTFIX_KEYS = ("mpx_per_s", "loss", "val_loss", "dice_coef", "val_dice_coef")
