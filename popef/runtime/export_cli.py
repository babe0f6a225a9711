"""``popef export-onnx``: write a PopEF model's graph program as a standard ONNX model.

A thin click layer over :func:`popef.runtime.to_onnx.export_onnx`; onnx is imported when the
command runs. Errors are one ``error: …`` line on stderr with exit status 1.
"""

from __future__ import annotations

import os
import sys

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EPILOG = """\b
Examples:
  popef export-onnx mnist.popef -o mnist.onnx
  popef export-onnx executable.popef variables.popef -o model.onnx --dynamic-batch
Needs the onnx package: pip install 'popef[onnxruntime]'.
Exit status: 0 success, 1 an error, 2 a usage error."""


@click.command("export-onnx", context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument(
    "files", nargs=-1, required=True, metavar="FILE...", type=click.Path(dir_okay=False)
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="PATH.onnx",
    help="Where to write the ONNX model (written atomically; "
    "an existing file is replaced, never one of FILE...; "
    "- for standard output).",
)
@click.option(
    "--executable", metavar="NAME", help="The model to export when the files hold several."
)
@click.option(
    "--dynamic-batch",
    is_flag=True,
    help="Make the leading dimension of the inputs and outputs symbolic ('N'); the "
    "graph must keep the rows of that dimension independent.",
)
@click.option(
    "--replica",
    type=int,
    default=0,
    show_default=True,
    help="The replica whose per-replica weights the ONNX model holds.",
)
@click.option(
    "--no-verify", "no_verify", is_flag=True, help="Skip the checksum check of the model's blobs."
)
def export_onnx_command(
    files: tuple[str, ...],
    output: str,
    executable: str | None,
    dynamic_batch: bool,
    replica: int,
    no_verify: bool,
) -> None:
    """Write the model of the PopEF files FILE... as an ONNX model.

    The load and main programs become one ONNX graph: the user inputs and outputs are its
    inputs and outputs (named like the anchors, one step of one replica), the weights its
    initializers, every node the same ONNX operator. The result passes onnx.checker and runs
    in onnxruntime.
    """
    from ..errors import PopefError
    from ..escaping import escape_text
    from .to_onnx import export_onnx

    try:
        for path in files:
            if not os.path.isfile(path):
                raise PopefError(f"'{path}' is not a file")
            if output != "-" and os.path.exists(output) and os.path.samefile(path, output):
                raise PopefError(
                    f"the output '{output}' is the input '{path}': give another "
                    "path with -o (the ONNX model would replace the PopEF file)"
                )
        if output == "-" and sys.stdout is None:  # started with its standard output closed
            raise PopefError("cannot write the ONNX model: standard output is closed")
        if output == "-" and sys.stdout.isatty():
            raise PopefError(
                "not writing a binary ONNX model to a terminal: redirect standard "
                "output or give a file with -o"
            )
        target = sys.stdout.buffer if output == "-" else output
        model = export_onnx(
            list(files),
            target,
            executable=executable,
            replica=replica,
            dynamic_batch=dynamic_batch,
            verify=not no_verify,
        )
        if output == "-":
            sys.stdout.buffer.flush()
    except PopefError as exc:
        click.echo(f"error: {escape_text(str(exc), backslashes=False)}", err=True)
        sys.exit(1)
    except OSError as exc:  # standard output closed or full
        click.echo(f"error: cannot write the ONNX model: {exc.strerror or exc}", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("error: out of memory (the model's weights do not fit this machine)", err=True)
        sys.exit(1)
    graph = model.graph
    where = "standard output" if output == "-" else escape_text(output, backslashes=False)
    click.echo(
        f"wrote {where}: {len(graph.node)} nodes, "
        f"{len(graph.input)} inputs, {len(graph.output)} outputs, "
        f"{len(graph.initializer)} initializers (opset "
        f"{model.opset_import[0].version})",
        err=True,
    )
