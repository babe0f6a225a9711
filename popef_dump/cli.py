"""The ``popef_dump`` command (also ``popef dump``) and ``popef check``.

A thin click layer: it reads the files into one :class:`popef.Reader`, asks the pure renderers
of :mod:`popef_dump.render` (text) or :mod:`popef_dump.jsonout` (JSON) for the selected parts,
and prints them. Only click is imported at module level, so that ``--help`` is instant; the
library, numpy and rich are imported when a command runs.
"""

from __future__ import annotations

import sys

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Linking problems a dump warns about before it says how many more there are.
MAX_WARNINGS = 10

# The selections, in the order their sections are printed; --all selects them all.
SELECTIONS = (
    "user_anchors",
    "all_anchors",
    "metadata",
    "blobs",
    "tensors",
    "feeds",
    "executables",
    "opaque",
)

EPILOG = """\b
With no selection: a short summary (blobs per type, total size, models, user anchors).
Selections combine; sections are printed in the order of the options above.
Exit status: 0 success, 1 a malformed file or --verify found problems, 2 a usage error.
See docs/cli.md for every layout and the --json schema."""


def output_options(function):
    """--json, --color/--no-color and --traceback, shared by every command."""
    function = click.option(
        "--traceback", is_flag=True, help="On an error, print the Python traceback too."
    )(function)
    function = click.option(
        "--color/--no-color",
        "color",
        default=None,
        help="Colour and tables (default: only on a terminal).",
    )(function)
    function = click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (schema in docs/cli.md)."
    )(function)
    return function


@click.command("dump", context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument("files", nargs=-1, metavar="FILE...", type=click.Path(dir_okay=False))
@click.option(
    "--user-anchors",
    is_flag=True,
    help="The anchors a caller feeds and reads (Graphcore's layout).",
)
@click.option(
    "--all-anchors",
    is_flag=True,
    help="Every anchor, grouped by type, marking those stored in the file.",
)
@click.option("-m", "--metadata", is_flag=True, help="Every metadata field.")
@click.option("--blobs", is_flag=True, help="One row per blob: offset, size, type, checksum.")
@click.option("--tensors", is_flag=True, help="The tensor data blobs.")
@click.option("--feeds", is_flag=True, help="The feed data blobs.")
@click.option("--executables", is_flag=True, help="The executable blobs.")
@click.option("--opaque", is_flag=True, help="The opaque blobs.")
@click.option(
    "--stats",
    is_flag=True,
    help="Min, max, mean and NaN count of tensor and feed data (reads the data; "
    "implies --tensors when neither --tensors nor --feeds is given).",
)
@click.option("--all", "select_all", is_flag=True, help="Every selection above but --stats.")
@click.option(
    "--verify",
    is_flag=True,
    help="Check every checksum, blob and linking rule; exit 1 on any problem.",
)
@click.option(
    "--diff",
    "diff_files",
    nargs=2,
    metavar="OLD NEW",
    type=click.Path(dir_okay=False),
    help="What changed from OLD to NEW (no FILE then).",
)
@output_options
@click.version_option(package_name="popef", prog_name="popef_dump", message="%(prog)s %(version)s")
@click.pass_context
def dump_command(
    ctx: click.Context,
    files: tuple[str, ...],
    select_all: bool,
    stats: bool,
    verify: bool,
    diff_files: tuple[str, str] | None,
    as_json: bool,
    color: bool | None,
    traceback: bool,
    **selected: bool,
) -> None:
    """Show what the PopEF files FILE... hold.

    The files are read together, as one model may span several (PopART's executable.popef
    and variables.popef). Tensor data is read only for --stats, --verify and --diff.
    """
    chosen = [name for name in SELECTIONS if selected[name] or select_all]
    if diff_files:
        if files:
            raise click.UsageError(
                f"--diff compares its two files: unexpected FILE '{files[0]}'", ctx
            )
        extra = [f"--{name.replace('_', '-')}" for name in SELECTIONS if selected[name]]
        extra += [
            flag
            for flag, on in (("--all", select_all), ("--stats", stats), ("--verify", verify))
            if on
        ]
        if extra:
            raise click.UsageError(f"--diff cannot be combined with {extra[0]}", ctx)
        _run(ctx, traceback, lambda: _diff(*diff_files, as_json, color))
        return
    if not files:
        raise click.UsageError("missing argument 'FILE...': give one or more PopEF files", ctx)
    if stats and not ("tensors" in chosen or "feeds" in chosen):
        chosen.append("tensors")
    _run(ctx, traceback, lambda: _dump(list(files), chosen, stats, verify, as_json, color))


@click.command("check", context_settings=CONTEXT_SETTINGS)
@click.argument(
    "files", nargs=-1, required=True, metavar="FILE...", type=click.Path(dir_okay=False)
)
@output_options
@click.pass_context
def check_command(
    ctx: click.Context, files: tuple[str, ...], as_json: bool, color: bool | None, traceback: bool
) -> None:
    """Check PopEF files: checksums, blobs and linking rules.

    Checks every checksum of FILE..., decodes every blob and checks every linking rule; lists
    each problem and exits 1 if there is any (the same as popef_dump --verify).
    """
    _run(ctx, traceback, lambda: _dump(list(files), [], False, True, as_json, color))


main = dump_command  # the console script popef_dump


# -- running -------------------------------------------------------------------------


def _run(ctx: click.Context, traceback: bool, work) -> None:
    """Run a command body: a library error becomes one ``error:`` line and exit status 1."""
    from popef import PopefError

    from .doc import clean

    try:
        code = work()
    except PopefError as exc:
        if traceback:
            import traceback as tb

            tb.print_exc()
        click.echo(f"error: {clean(str(exc))}", err=True)
        ctx.exit(1)
    # A closed pipe (``| head``) is left to click, which exits quietly.
    ctx.exit(code)


def _warn(message: str) -> None:
    from .doc import clean

    click.echo(f"warning: {clean(message)}", err=True)


def _print_text(doc, color: bool | None) -> None:
    """Plain text, or colour and tables (rich) when asked or when stdout is a terminal."""
    from .doc import to_plain, to_rich

    if color is None:
        color = sys.stdout.isatty()
    if color:
        _console().print(to_rich(doc), crop=False)  # to_rich lays out every line itself
    else:
        click.echo(to_plain(doc), nl=False)


def _console():
    """The rich console of colour output (tests replace it with a fixed-width, colourless one)."""
    from rich.console import Console

    return Console(highlight=False, force_terminal=True, file=sys.stdout)


def _read(paths: list[str]):
    """One reader of all the files (use it as a context manager: it closes them)."""
    import popef

    reader = popef.Reader()
    try:
        for path in paths:
            reader.parse_file(path)
    except BaseException:
        reader.close()
        raise
    return reader


def _dump(
    paths: list[str],
    chosen: list[str],
    stats: bool,
    verify: bool,
    as_json: bool,
    color: bool | None,
) -> int:
    with _read(paths) as reader:
        return _dump_reader(reader, paths, chosen, stats, verify, as_json, color)


def _dump_reader(
    reader,
    paths: list[str],
    chosen: list[str],
    stats: bool,
    verify: bool,
    as_json: bool,
    color: bool | None,
) -> int:
    from popef.model import link_models

    from . import jsonout, render
    from . import verify as verifier
    from .doc import join
    from .views import file_sizes, tensor_stats

    sizes = file_sizes(paths)
    total = sum(size for _, size in sizes)
    summary = not chosen and not verify
    views = None
    if summary or {"user_anchors", "all_anchors", "metadata"} & set(chosen):
        linking = link_models(reader)
        views = list(linking.models)
        if not verify:
            problems = linking.problems
            for problem in problems[:MAX_WARNINGS]:
                _warn(problem)
            if len(problems) > MAX_WARNINGS:
                _warn(
                    f"and {len(problems) - MAX_WARNINGS} more linking problems: "
                    "--verify lists them all"
                )
    report = verifier.verify(reader) if verify else None
    checksums = report.checksums if report else None
    listed = {
        "tensors": reader.tensors() if "tensors" in chosen else None,
        "feeds": reader.feeds() if "feeds" in chosen else None,
    }
    stats_of = None
    if stats:
        stats_of = {r: tensor_stats(r) for items in listed.values() for r in items or ()}

    if as_json:
        parts: dict = {}
        if summary:
            parts["summary"] = jsonout.summary(reader, views, total)
        if views is not None:
            parts["models"] = jsonout.models(
                views,
                user=summary or "user_anchors" in chosen,
                every="all_anchors" in chosen,
                meta="metadata" in chosen,
            )
        if "blobs" in chosen:
            parts["blobs"] = jsonout.blobs(reader, checksums)
        for name, items in listed.items():
            if items is not None:
                parts[name] = [jsonout.tensor(r, stats_of) for r in items]
        if "executables" in chosen:
            parts["executables"] = [jsonout.executable(e) for e in reader.executables()]
        if "opaque" in chosen:
            parts["opaque"] = [jsonout.opaque(o) for o in reader.opaque_blobs()]
        if report is not None:
            parts["verify"] = jsonout.verification(report)
        jsonout.dump(jsonout.document(sizes, **parts), lambda text: click.echo(text, nl=False))
    else:
        sections = []
        if summary:
            sections.append(render.summary(reader, views, total))
        if "user_anchors" in chosen:
            sections.append(render.user_anchors(views))
        if "all_anchors" in chosen:
            sections.append(render.all_anchors(views))
        if "metadata" in chosen:
            sections.append(render.metadata(views))
        if "blobs" in chosen:
            sections.append(render.blobs(reader, checksums))
        if listed["tensors"] is not None:
            sections.append(render.tensors(listed["tensors"], stats_of))
        if listed["feeds"] is not None:
            sections.append(render.feeds(listed["feeds"], stats_of))
        if "executables" in chosen:
            sections.append(render.executables(reader.executables()))
        if "opaque" in chosen:
            sections.append(render.opaque(reader.opaque_blobs()))
        if report is not None:
            sections.append(render.verification(report))
        _print_text(join([render.files_header(paths), join(sections)], separate=False), color)
    return 0 if report is None or report.ok else 1


def _diff(old_path: str, new_path: str, as_json: bool, color: bool | None) -> int:
    from . import jsonout, render
    from .diff import diff

    with _read([old_path]) as old, _read([new_path]) as new:
        report = diff(old, new, old_path, new_path)
        if as_json:
            click.echo(jsonout.dumps(jsonout.document(diff=jsonout.diff(report))), nl=False)
        else:
            _print_text(render.diff(report), color)
    return 0
