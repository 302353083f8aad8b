"""The list of ``mapseg`` subcommands, one module each."""

from __future__ import annotations

import importlib

import click

#: Module in mapseg_cli holding each command (the command object has the module's name).
COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "evaluate",
    "tile_infer",
    "chips",
    "evaluate_vectors",
    "preview",
    "info",
    "export",
)


def all_commands() -> list[click.Command]:
    """Each command module's command; modules import the engine lazily, so this is cheap."""
    commands = []
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"mapseg_cli.{name}")
        commands.append(getattr(module, name))
    return commands
