"""``popef import``: an ONNX model into a PopEF file (docs/import.md, docs/cli.md).

A thin click layer over :func:`popef.importers.onnx.import_onnx`; the result is printed with
``popef_dump``'s renderer of user anchors. Only click is imported at module level. Progress on
large models goes to stderr, data to stdout; errors are one ``error: …`` line, exit status 1.
"""

from __future__ import annotations

import os
import sys

import click

from ..cli import not_standard_output

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EPILOG = """\b
Examples:
  popef import resnet18.onnx -o resnet18.popef --batch-size 8
  popef import bert.onnx -o bert.popef --input-shape input_ids=1,128 \\
      --input-shape attention_mask=1,128
Symbolic dimensions (a batch or sequence length) must be fixed at import."""

_PROGRESS_BYTES = 64 << 20  # show progress when the weights are at least this large


@click.command("import", context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    callback=not_standard_output,
    metavar="PATH.popef",
    help="The PopEF file to write (created atomically).",
)
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=D1,D2,...",
    help="Fix an input's shape, e.g. input=1,3,224,224 (repeatable).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=2**63 - 1),
    metavar="N",
    help="The leading dimension of every input whose leading dimension is symbolic.",
)
@click.option(
    "--name",
    "executable_name",
    metavar="NAME",
    help="The executable's name (default: the model file's stem).",
)
@click.option("--compress", is_flag=True, help="Compress the graph program (zlib).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def import_command(
    model: str,
    output: str,
    input_shapes: tuple[str, ...],
    batch_size: int | None,
    executable_name: str | None,
    compress: bool,
    quiet: bool,
) -> None:
    """Import the ONNX model MODEL into a PopEF file that `popef run` and `popef serve` run.

    Shape arithmetic is folded at import; the file keeps the data path, with the ONNX input
    and output names as anchors. Prints the model's user anchors, as `popef_dump
    --user-anchors` does.
    """
    from ..errors import PopefError
    from ..escaping import escape_text

    try:
        result = _import(model, output, input_shapes, batch_size, executable_name, compress, quiet)
    except PopefError as exc:
        click.echo(f"error: {escape_text(str(exc), backslashes=False)}", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("error: out of memory while importing the model", err=True)
        sys.exit(1)
    if not quiet:
        _print_result(result, output)


def _import(
    model: str,
    output: str,
    input_shapes: tuple[str, ...],
    batch_size: int | None,
    executable_name: str | None,
    compress: bool,
    quiet: bool,
):
    from ..errors import ExecutionError
    from ..escaping import escape_text
    from .onnx import import_onnx, parse_input_shape

    if os.path.exists(output) and os.path.exists(model) and os.path.samefile(model, output):
        raise ExecutionError(
            f"the output '{escape_text(output)}' is the model "
            f"'{escape_text(model)}': give another path with -o (the PopEF "
            "file would replace the ONNX model)"
        )
    if executable_name == "":
        raise click.BadParameter("must not be empty", param_hint="'--name'")
    shapes: dict[str, tuple[int, ...]] = {}
    for text in input_shapes:
        name, shape = parse_input_shape(text)
        if name in shapes:
            raise ExecutionError(f"--input-shape given twice for '{name}'")
        shapes[name] = shape
    progress = None if quiet or not sys.stderr.isatty() else _Progress()
    try:
        # a symbolic link's target is replaced, not the link, as export-onnx does
        return import_onnx(
            model,
            os.path.realpath(output),
            input_shapes=shapes,
            batch_size=batch_size,
            executable_name=executable_name,
            compress=compress,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()


class _Progress:
    """One line on stderr, rewritten: nodes converted, then weights written."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "weights" and total < _PROGRESS_BYTES:
            return
        if stage == "nodes":
            text = f"converting nodes: {done}/{total}"
        else:
            text = f"writing weights: {done / 2**20:.0f}/{total / 2**20:.0f} MiB"
        click.echo(f"\r{text:<60}", nl=False, err=True)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo("\r" + " " * 60 + "\r", nl=False, err=True)


def _print_result(result, output: str) -> None:
    import popef
    from popef_dump import render
    from popef_dump.doc import join, to_plain
    from popef_dump.views import model_views

    with popef.Reader() as reader:
        reader.parse_file(output)
        doc = join(
            [render.files_header([output]), render.user_anchors(model_views(reader))],
            separate=False,
        )
        click.echo(to_plain(doc), nl=False)
    click.echo(
        f"imported {result.onnx_nodes} nodes (opset {result.opset}): "
        f"{result.kept_nodes} kept, {result.folded_nodes} folded at import; "
        f"{result.weights} weights, {result.weight_bytes} bytes"
    )
