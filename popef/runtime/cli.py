"""``popef run``: run a PopEF model on inputs from files and print (or save) its outputs.

A thin click layer over :class:`popef.runtime.ModelRunner`, :mod:`popef.runtime.inputs` and
the pure renderers below. Only click is imported at module level; numpy and the runtime are
imported when the command runs. Data goes to stdout; errors are one ``error: …`` line on
stderr with exit status 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import click

from ..cli import file_path_only
from ..escaping import escape_text

if TYPE_CHECKING:
    import numpy as np

    from .runner import TensorDesc

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EPILOG = """\b
Examples:
  popef run mnist.popef --input digit.png
  popef run mnist.popef --input input=batch.npy --output out.npz
  popef run model.popef --executor ipu-model --option tiles_per_ipu=16 -i x=x.npy
An input is an .npy file, an .npz file (its array named like the input, or its only array)
or an image (PNG, JPEG, PGM..., needs Pillow) converted to the input's shape with pixels
scaled to [0, 1]. Exit status: 0 success, 1 an error, 2 a usage error."""


class CommandError(Exception):
    """A problem to report as one ``error:`` line."""


# -- pure renderers ------------------------------------------------------------------------------


def safe(text: str) -> str:
    """A name read from a file, with control characters escaped for the terminal."""
    return escape_text(text, backslashes=False)


def is_probability(values: np.ndarray) -> bool:
    """Whether the last axis holds probability vectors (in [0, 1], summing to 1)."""
    import numpy as np

    if values.dtype.kind != "f" or values.ndim == 0 or values.shape[-1] < 2 or not values.size:
        return False
    # no float64 copy of a large output: min and max are NaN when any value is
    if not (values.min() >= 0 and values.max() <= 1):
        return False
    sums = values.sum(axis=-1, dtype=np.float64)
    return bool(np.all(np.abs(sums - 1) <= 1e-3))


def render_outputs(outputs: Mapping[str, np.ndarray], descs: Sequence[TensorDesc]) -> str:
    """Each output's name, dtype and shape, its values, and the argmax of probabilities."""
    import numpy as np

    lines = []
    by_name = {d.name: d for d in descs}
    for name, values in outputs.items():
        desc = by_name.get(name)
        dtype = desc.dtype.name if desc is not None else str(values.dtype)
        lines.append(f"{safe(name)}: {dtype}{list(values.shape)}")
        with np.printoptions(threshold=200, edgeitems=4, linewidth=100, precision=6, suppress=True):
            lines.extend("  " + line for line in np.array2string(values).splitlines())
        if is_probability(values):
            best = values.argmax(axis=-1)
            if values.ndim == 1 or values.size == values.shape[-1]:
                flat = values.reshape(-1)
                index = int(best.reshape(-1)[0])
                lines.append(f"  argmax: {index} (probability {float(flat[index]):.4f})")
            else:
                lines.append(f"  argmax: {best.tolist()}")
    return "\n".join(lines)


def render_executors(rows: Sequence[tuple[str, str]]) -> str:
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {text}" for name, text in rows)


# -- reading inputs ------------------------------------------------------------------------------


def _split_input(text: str, names: Sequence[str]) -> tuple[str | None, str]:
    """``NAME=PATH`` (NAME one of the model's inputs, longest first) or a bare ``PATH``."""
    for name in sorted(names, key=len, reverse=True):
        if text.startswith(name + "="):
            return name, text[len(name) + 1 :]
    if "=" in text and not os.path.exists(text):
        name, _, path = text.partition("=")
        return name, path
    return None, text


#: keywords of ModelRunner itself, never executor options (``executable`` has --executable)
RUNNER_KEYWORDS = frozenset({"source", "executor", "executable", "verify", "limits"})


def _parse_option(text: str) -> tuple[str, object]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise CommandError(f"--option takes KEY=VALUE, got '{text}'")
    key = key.strip().replace("-", "_")
    if key in RUNNER_KEYWORDS:
        instead = {"executable": " (use --executable)", "executor": " (use --executor)"}
        raise CommandError(f"--option '{key}' is not an executor option{instead.get(key, '')}")
    value = value.strip()
    try:
        return key, int(value)
    except ValueError:
        return key, value


def gather_inputs(specs: Sequence[str], descs: Sequence[TensorDesc]) -> dict[str, np.ndarray]:
    """The ``--input`` arguments read and fitted to the model's inputs."""
    from ..errors import ExecutionError
    from .inputs import (
        IMAGE_SUFFIXES,
        fit_to_input,
        fits_input,
        image_to_array,
        load_array_file,
        load_image,
    )

    names = [d.name for d in descs]
    by_name = {d.name: d for d in descs}
    listing = ", ".join(f"'{safe(d.name)}' {d.dtype.name}{list(d.shape)}" for d in descs) or "none"
    raw: dict[str, object] = {}
    given: dict[str, str] = {}  # input name -> the --input that gave it

    def take(name: str, value: object, spec: str) -> None:
        if name in given:
            raise CommandError(
                f"input '{safe(name)}' is given twice (--input {safe(given[name])} and --input "
                f"{safe(spec)}); one run takes one value per input: to run several steps, "
                "stack them on the leading axis in one .npy file"
            )
        given[name] = spec
        raw[name] = value

    for spec in specs:
        name, path = _split_input(spec, names)
        if name is not None and name not in by_name:
            raise CommandError(f"the model has no input '{safe(name)}' (inputs: {listing})")
        _check_input_file(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix in IMAGE_SUFFIXES:
            if name is None:
                if len(descs) != 1:
                    raise CommandError(
                        f"the model takes {len(descs)} inputs ({listing}): "
                        f"say which one '{path}' is with NAME={path}"
                    )
                name = names[0]
            desc = by_name[name]
            take(name, image_to_array(load_image(path), desc.shape, desc.dtype, name), spec)
            continue

        def check(member: str | None, shape: tuple[int, ...], dtype, name=name, path=path) -> None:
            # refused before numpy allocates it: a few bytes can declare any size
            wanted = name or (member if member in by_name else None)
            candidates = [by_name[wanted]] if wanted else descs
            if not any(fits_input(shape, d.shape) for d in candidates):
                array = f"array '{safe(member)}'" if member is not None else "the array"
                raise CommandError(
                    f"'{safe(path)}': {array} of shape {list(shape)} fits no "
                    f"input of the model (inputs: {listing})"
                )

        loaded = load_array_file(path, check)
        if isinstance(loaded, dict):
            if name is not None:
                if name in loaded:
                    take(name, loaded[name], spec)
                elif len(loaded) == 1:
                    take(name, next(iter(loaded.values())), spec)
                else:
                    raise CommandError(
                        f"'{path}' holds no array named '{safe(name)}' (it holds "
                        + ", ".join(f"'{safe(k)}'" for k in loaded)
                        + ")"
                    )
            else:
                matching = {k: v for k, v in loaded.items() if k in by_name}
                if not matching and len(loaded) == 1 and len(descs) == 1:
                    matching = {names[0]: next(iter(loaded.values()))}
                if not matching:
                    raise CommandError(
                        f"'{path}' holds no array named like an input (inputs: {listing})"
                    )
                for key, value in matching.items():
                    take(key, value, spec)
        else:
            if name is None:
                if len(descs) != 1:
                    raise CommandError(
                        f"the model takes {len(descs)} inputs ({listing}): give each as NAME=PATH"
                    )
                name = names[0]
            take(name, loaded, spec)
    missing = [n for n in names if n not in raw]
    if missing:
        raise CommandError(f"no --input for '{safe(missing[0])}' (inputs: {listing})")
    try:
        return {
            n: fit_to_input(raw[n], by_name[n].shape, by_name[n].dtype, n)  # type: ignore[arg-type]
            for n in names
        }
    except ExecutionError as exc:
        raise CommandError(str(exc)) from exc


def _check_input_file(path: str) -> None:
    """Refuse what is not a regular file before opening it: reading a FIFO would wait for a
    writer forever, and a device may never end."""
    import stat

    if path == "-":
        raise CommandError("inputs are read from files, not standard input: give a path")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CommandError(f"input file '{path}' does not exist") from None
    except OSError as exc:
        raise CommandError(f"cannot read input file '{path}': {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        from ..blob import file_kind

        raise CommandError(f"input file '{path}' is not a regular file (found {file_kind(mode)})")


def _check_output_path(output: str, files: Sequence[str]) -> None:
    """Refuse an output that is one of the model's files: the .npz would replace the model."""
    if not os.path.exists(output):
        return
    for path in files:
        if os.path.samefile(path, output):
            raise CommandError(
                f"the output '{output}' is the model file '{path}': give another path with -o "
                "(the .npz file would replace the model)"
            )


def _input_hint(source: str | None) -> str:
    """A hint when a file given as a model looks like an input: ``--input`` was forgotten."""
    from .inputs import ARRAY_SUFFIXES, IMAGE_SUFFIXES

    if source is None or os.path.splitext(source)[1].lower() not in IMAGE_SUFFIXES | ARRAY_SUFFIXES:
        return ""
    return f"; if it is an input of the model, give it with --input {source}"


def save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``numpy.savez``, for any names (``np.savez`` reserves ``file`` and ``allow_pickle``)."""
    import zipfile

    import numpy as np

    from ..atomic import PrivateFile

    # a failed save loses nothing: the file takes the destination's place only when whole
    with (
        PrivateFile(path) as private,
        zipfile.ZipFile(private.file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


# -- the command ---------------------------------------------------------------------------------


@click.command("run", context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.argument("files", nargs=-1, metavar="FILE...", type=click.Path(dir_okay=False))
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="[NAME=]PATH",
    help="An input (repeat for each); NAME= may be left out for a model with one input.",
)
@click.option(
    "-e",
    "--executor",
    default="cpu",
    show_default=True,
    help="The executor that runs the model (see --executors).",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An executor option, e.g. tiles_per_ipu=16 for ipu-model (repeatable).",
)
@click.option("--executable", metavar="NAME", help="The model to run when the files hold several.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    callback=file_path_only(
        "the outputs are printed on standard output, and the .npz file needs a path"
    ),
    metavar="PATH.npz",
    help="Also save the outputs, by name, to an .npz file.",
)
@click.option(
    "--no-verify",
    "no_verify",
    is_flag=True,
    help="Skip the checksum check of the model's blobs at load (faster, unsafe).",
)
@click.option(
    "--executors", "list_only", is_flag=True, help="List the installed executors and exit."
)
def run_command(
    files: tuple[str, ...],
    inputs: tuple[str, ...],
    executor: str,
    options: tuple[str, ...],
    executable: str | None,
    output: str | None,
    no_verify: bool,
    list_only: bool,
) -> None:
    """Run the model of the PopEF files FILE... and print its outputs.

    The files are read together, as one model may span several. Each output is printed with
    its name, type and shape, its values, and the argmax when it holds probabilities.
    """
    from ..errors import PopefError

    try:
        if list_only:
            from .executors import executor_descriptions

            click.echo(render_executors(executor_descriptions()))
            return
        if not files:
            raise click.UsageError("give the PopEF file(s) to run (or --executors)")
        _run(files, inputs, executor, options, executable, output, verify=not no_verify)
    except (PopefError, CommandError) as exc:
        click.echo(f"error: {safe(str(exc))}", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo(
            "error: out of memory (the model's tensors, inputs or outputs do not fit this machine)",
            err=True,
        )
        sys.exit(1)


def _run(
    files: tuple[str, ...],
    inputs: tuple[str, ...],
    executor: str,
    options: tuple[str, ...],
    executable: str | None,
    output: str | None,
    verify: bool = True,
) -> None:
    from ..errors import FormatError
    from .runner import ModelRunner

    for path in files:
        if not os.path.isfile(path):
            raise CommandError(f"'{safe(path)}' is not a file")
    if output:
        _check_output_path(output, files)
    executor_options = dict(_parse_option(text) for text in options)
    try:
        runner = ModelRunner(
            list(files), executor, executable=executable, verify=verify, **executor_options
        )
    except FormatError as exc:
        hint = _input_hint(exc.source)
        raise CommandError(f"{exc}{hint}") from exc
    with runner:
        descs = runner.get_execute_inputs()
        arrays = gather_inputs(inputs, descs)
        outputs = runner.execute(arrays)
        click.echo(render_outputs(outputs, runner.get_execute_outputs()))
    if output:
        try:
            save_npz(output, outputs)
        except OSError as exc:
            raise CommandError(f"cannot write '{output}': {exc.strerror or exc}") from exc
        click.echo(f"outputs saved to {output}", err=True)
