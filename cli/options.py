"""Options shared by several ``mapseg`` commands, defined once."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def config_default(config_class: type, name: str) -> Any:
    """The documented default of a config dataclass field, the one source of option defaults.

    CLI options named after ``TileConfig``/``ModelConfig``/``TrainConfig`` fields
    take their default from here, so the CLI, Python and (through its test,
    tests/test_defaults.py) the QGIS plugin cannot drift apart.
    """
    import dataclasses

    for f in dataclasses.fields(config_class):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            break
    raise KeyError(f"{config_class.__name__} has no field {name!r} with a default")


def verbosity(func: F) -> F:
    """``-v/--verbose`` and ``-q/--quiet``, applied to the ``mapseg`` logger."""

    def callback(ctx: click.Context, param: click.Parameter, value: int) -> int:
        ctx.ensure_object(dict)
        ctx.obj[param.name] = value
        level = ctx.obj.get("verbose", 0) - ctx.obj.get("quiet", 0)
        if ctx.obj.get("verbose", 0) > 0:
            # Let the deep-learning backend's start-up notices through (mapseg_core.backend).
            os.environ["MAPSEG_BACKEND_NOTICES"] = "1"
        logging.basicConfig(format="mapseg: %(levelname)s: %(message)s")
        logging.getLogger("mapseg").setLevel(
            logging.DEBUG if level > 0 else logging.WARNING if level == 0 else logging.ERROR
        )
        return value

    func = click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=callback,
        help="More output; -v also shows tracebacks of internal errors.",
    )(func)
    func = click.option(
        "-q",
        "--quiet",
        count=True,
        expose_value=False,
        callback=callback,
        help="Less output (no progress bars).",
    )(func)
    return func


overwrite = click.option(
    "--overwrite", is_flag=True, help="Replace an existing output instead of refusing."
)
json_output = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON for machines."
)


def is_quiet() -> bool:
    """True when -q was given to the current command."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.obj and ctx.obj.get("quiet", 0) > 0)


def is_verbose() -> bool:
    """True when -v was given to the current command."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.obj and ctx.obj.get("verbose", 0) > 0)


def band_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    """Click callback: ``"1,2,3"`` -> ``(1, 2, 3)`` (1-based raster band numbers)."""
    if value is None:
        return None
    try:
        bands = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(
            "give 1-based band numbers separated by commas, e.g. 1,2,3"
        ) from None
    return bands or None
