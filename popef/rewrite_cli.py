"""``popef rewrite``: copy a PopEF file blob by blob, optionally compressing its executables.

A thin click layer over :func:`popef.rewrite.rewrite`. Errors are one ``error: …`` line on
stderr with exit status 1.
"""

from __future__ import annotations

import os
import sys

import click

from .cli import not_standard_output

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EPILOG = """\b
Examples:
  popef rewrite model.popef -o model.small.popef --compress
  popef rewrite model.popef -o model.popef --compress    (in place, atomically)
Exit status: 0 success, 1 an error, 2 a usage error."""


@click.command("rewrite", context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    callback=not_standard_output,
    metavar="PATH",
    help="Where to write the copy (written atomically: replaced only "
    "once complete; may be FILE itself).",
)
@click.option(
    "--compress",
    is_flag=True,
    help="Compress the executables stored uncompressed (zlib; lossless). Other "
    "blobs are copied byte for byte.",
)
def rewrite_command(file: str, output: str, compress: bool) -> None:
    """Copy every blob of the PopEF file FILE to PATH.

    Every blob's checksum and info are checked first: a damaged FILE is refused and PATH is
    left as it was (a file cut short by an interrupted write: see 'popef repair').
    """
    from .errors import PopefError
    from .escaping import escape_text
    from .rewrite import rewrite

    try:
        # a symbolic link's target is replaced, not the link, as export-onnx does
        summary = rewrite(file, os.path.realpath(output), compress=compress)
    except PopefError as exc:
        click.echo(f"error: {escape_text(str(exc), backslashes=False)}", err=True)
        sys.exit(1)
    shown = escape_text(output, backslashes=False)
    compressed = (
        f", {summary.compressed} executable{'' if summary.compressed == 1 else 's'} compressed"
        if compress
        else ""
    )
    click.echo(
        f"wrote '{shown}': {summary.blobs} blob{'' if summary.blobs == 1 else 's'}"
        f"{compressed}, {summary.bytes_in} -> {summary.bytes_out} bytes"
    )
