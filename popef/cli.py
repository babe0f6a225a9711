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
    "export-onnx": "popef.runtime.export_cli:export_onnx_command",
    "import": "popef.importers.cli:import_command",
    "serve": "popef.serving.cli:serve_command",
    "triton-config": "popef.serving.cli:triton_config_command",
    "triton": "popef.triton.cli:triton_group",
    "rewrite": "popef.rewrite_cli:rewrite_command",
}


def file_path_only(why: str):
    """A click callback refusing ``-`` (standard output) for an option that takes a file path;
    ``why`` says why that file cannot be standard output."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value == "-":
            raise click.BadParameter(
                f"expected a file path, found '-' ({why}; write ./- for a file named '-')",
                ctx,
                param,
            )
        return value

    return callback


#: for the commands that write a PopEF file
not_standard_output = file_path_only("a PopEF file cannot go to standard output")


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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole first sentence, wrapped rather than cut short."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="popef", message="%(prog)s %(version)s")
def main() -> None:
    """Inspect, check and run PopEF (Poplar Exchange Format) model files."""


@main.command("repair", context_settings={"max_content_width": 100})
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-n", "--dry-run", is_flag=True, help="Say what would be kept and dropped; change nothing."
)
@click.option(
    "--force",
    is_flag=True,
    help="Also drop a tail longer than the reader looks through for a following "
    "blob (1 GiB), unread, or one in which a blob header follows the unfinished "
    "blob.",
)
def repair_command(file: str, dry_run: bool, force: bool) -> None:
    """Drop the partial blob an interrupted write left at the end of FILE.

    Keeps every complete blob before it, byte for byte, and says what it keeps and drops
    before truncating. A file whose defect is anything else is refused unchanged.
    """
    from .errors import PopefError
    from .escaping import escape_text
    from .repair import apply_repair, plan_repair

    shown = escape_text(file, backslashes=False)  # a path may hold control characters

    try:
        plan = plan_repair(file, force=force)
        if not plan.needed:
            click.echo(
                f"'{shown}' has nothing to repair: {_blobs(plan.kept_blobs)}, {plan.size} bytes"
            )
            return
        tail = "a partial or damaged blob" if plan.unread_bytes else "a partial blob"
        click.echo(
            f"'{shown}' ends in {tail} (an interrupted write?): keeping "
            f"{_blobs(plan.kept_blobs)} ({plan.kept_bytes} bytes), dropping "
            f"{plan.dropped_bytes} bytes from offset {plan.kept_bytes:#x}"
            + (f", {plan.unread_bytes} of them unread (--force)" if plan.unread_bytes else "")
        )
        if dry_run:
            click.echo("nothing changed (--dry-run)")
            return
        apply_repair(plan)
    except PopefError as exc:
        click.echo(f"error: {escape_text(str(exc), backslashes=False)}", err=True)
        raise SystemExit(1) from None
    click.echo(f"truncated '{shown}' to {plan.kept_bytes} bytes")


def _blobs(count: int) -> str:
    return f"{count} complete blob{'' if count == 1 else 's'}"
