"""The ``popef`` command: one entry point for inspecting, checking and running PopEF files.

Subcommands live next to what they drive and are imported only when invoked, so that
``popef --help`` stays instant.
"""

from __future__ import annotations

import importlib

import click

from ._version import __version__

# name -> "module:attribute" of a click command
SUBCOMMANDS = {
    "dump": "popef_dump.cli:dump_command",
    "check": "popef_dump.cli:check_command",
    "run": "popef.runtime.cli:run_command",
    "serve": "popef.serving.cli:serve_command",
    "triton-config": "popef.serving.cli:triton_config_command",
    "triton": "popef.triton.cli:triton_group",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in SUBCOMMANDS:
            return command
        module, _, attribute = SUBCOMMANDS[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            return None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="popef")
def main() -> None:
    """Inspect, check and run PopEF (Poplar Exchange Format) model files."""
