"""Entry point: the ``mapseg`` command group and its error translation.

Every command module imports the engine lazily, so ``mapseg --help`` answers
without loading TensorFlow. Errors the engine raises on purpose
(:class:`MapsegError`) become one line on stderr and the error's exit code;
anything else is an internal error: one line too, with the traceback only
under ``-v``.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Any

import click

from mapseg_cli import commands

# TensorFlow's C++ start-up chatter (CPU features, oneDNN) is noise to a user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: Optional packages -> the pyproject.toml extra that installs them (the light
#: ``mapseg[onnx]`` install has none of ``train``'s).
EXTRA_OF = {
    "keras": "train",
    "albumentations": "train",
    "matplotlib": "train",
    "geopandas": "train",
    "pandas": "train",
    "scipy": "train",
    "onnxruntime": "onnx",
    "tf2onnx": "export",
    "onnx": "export",
    "dask": "distributed",
    "distributed": "distributed",
}


def missing_extra(exc: ImportError) -> str | None:
    """The one-line fix for an optional package this install lacks, or None.

    A missing module (``ModuleNotFoundError``), or a library saying it needs one
    (pyogrio: "geopandas is required to use ..."); not a package that is there
    but broken.
    """
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or name not in EXTRA_OF:
        said = re.match(r"(\w+) is required\b", str(exc))
        name = said.group(1) if said else ""
    if name not in EXTRA_OF:
        return None
    return (
        f"this command needs {name}, which this install lacks: "
        f"pip install 'mapseg[{EXTRA_OF[name]}]'"
    )


class MapsegGroup(click.Group):
    """A click group that turns engine errors into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        from mapseg_core.errors import MapsegError

        try:
            return super().invoke(ctx)
        except MapsegError as exc:
            click.echo(f"mapseg: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("mapseg: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line unless -v
            fix = missing_extra(exc) if isinstance(exc, ImportError) else None
            if fix is not None:  # not a bug: an optional package this install lacks
                click.echo(f"mapseg: error: {fix}", err=True)
                sys.exit(2)
            if any(a in ("-v", "--verbose", "-vv") for a in sys.argv):
                traceback.print_exc()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(
                f"mapseg: internal error: {type(exc).__name__}: {first} "
                "(run again with -v for the traceback and report it)",
                err=True,
            )
            sys.exit(70)


@click.group(cls=MapsegGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mapseg", prog_name="mapseg")
def cli() -> None:
    """Building footprints from aerial and satellite imagery.

    \b
    $ mapseg train annotation.json images/ -o run --preset b0 --epochs 20
    $ mapseg evaluate run/model.keras annotation.json images/ --split-file run/splits.json
    $ mapseg tile-infer orthophoto.tif -o buildings.gpkg --model run/model.keras
    """


for _command in commands.all_commands():
    cli.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    cli()
