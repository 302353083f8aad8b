"""The list of ``mapseg`` subcommands, one module each."""

from __future__ import annotations

import importlib

import click

#: module name in mapseg_cli -> click command attribute
COMMAND_MODULES: dict[str, str] = {
    "train": "train",
    "evaluate": "evaluate",
    "tile_infer": "tile_infer",
    "preview": "preview",
    "info": "info",
    "chips": "chips",
    "evaluate_vectors": "evaluate_vectors",
}


def all_commands() -> list[click.Command]:
    """Import each command module that exists and return its command."""
    found = []
    for module_name, attr in COMMAND_MODULES.items():
        try:
            module = importlib.import_module(f"mapseg_cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mapseg_cli.{module_name}":
                raise
            continue
        found.append(getattr(module, attr))
    return found
