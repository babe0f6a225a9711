"""``popef run`` under hostile arguments and input files: one ``error:`` line, never a hang,
a traceback, a pickle loaded or the model overwritten."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from popef import DataType
from popef.cli import main
from popef.runtime import GraphBuilder
from popef.runtime.cli import RUNNER_KEYWORDS


def run(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)], catch_exceptions=False)


def one_error_line(result, status: int = 1) -> str:
    assert result.exit_code == status and result.stdout == "", (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or status == 2, result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


@pytest.fixture
def model(tmp_path):
    """A Relu over F32[1, 4] whose output name holds an ANSI escape."""
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (1, 4))
    g.add_output(g.add_node("Relu", [x]), "out\x1b[31m")
    path = tmp_path / "m.popef"
    g.save(path, executable_name="m")
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    return path


def test_a_fifo_input_is_refused_before_it_is_opened(model, tmp_path):
    """Reading a FIFO waits for a writer: it is refused from its mode, whatever its suffix."""
    for name in ("in.npy", "in.png"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        # a writer holding the FIFO open with a few bytes: without the check the command reads
        # them (or waits) instead of refusing
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(fd, b"\x93NUMPY" + bytes(10))
            line = one_error_line(run(model, "-i", fifo))
        finally:
            os.close(fd)
        assert line == f"error: input file '{fifo}' is not a regular file (found a FIFO)"


def test_a_folder_or_standard_input_is_not_an_input(model, tmp_path):
    (tmp_path / "dir.npy").mkdir()
    line = one_error_line(run(model, "-i", tmp_path / "dir.npy"))
    assert line == f"error: input file '{tmp_path}/dir.npy' is not a regular file (found a folder)"
    line = one_error_line(run(model, "-i", "-"))
    assert line == "error: inputs are read from files, not standard input: give a path"


def test_the_output_never_replaces_the_model(model, tmp_path):
    before = model.read_bytes()
    os.symlink(model, tmp_path / "link.npz")
    for output in (model, tmp_path / "." / "m.popef", tmp_path / "link.npz"):
        line = one_error_line(run(model, "-i", tmp_path / "x.npy", "-o", output))
        assert line == (
            f"error: the output '{output}' is the model file '{model}': give another path "
            "with -o (the .npz file would replace the model)"
        )
    assert model.read_bytes() == before


def test_output_to_standard_output_is_a_usage_error(model, tmp_path):
    result = run(model, "-i", tmp_path / "x.npy", "-o", "-")
    assert result.exit_code == 2 and "expected a file path, found '-'" in result.stderr
    assert not (tmp_path / "-").exists() and not os.path.exists("-")


@pytest.mark.parametrize("key", sorted(RUNNER_KEYWORDS))
def test_runner_keywords_are_not_executor_options(model, tmp_path, key):
    line = one_error_line(run(model, "-i", tmp_path / "x.npy", "--option", f"{key}=x"))
    assert line.startswith(f"error: --option '{key}' is not an executor option")


def test_pickles_are_never_loaded(model, tmp_path):
    """An object array of the right shape, in an .npy or an .npz, is refused unread."""
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    array = np.empty((1, 4), dtype=object)
    array[0, 0] = Payload()
    with open(tmp_path / "evil.npy", "wb") as f:
        np.lib.format.write_array(f, array, allow_pickle=True, pickle_kwargs={})
    with zipfile.ZipFile(tmp_path / "evil.npz", "w") as archive:
        archive.write(tmp_path / "evil.npy", "x.npy")
    for name in ("evil.npy", "evil.npz"):
        line = one_error_line(run(model, "-i", tmp_path / name))
        assert line.startswith(f"error: cannot read '{tmp_path}/{name}' as .npy or .npz: ")
        assert "allow_pickle=False" in line
    assert not marker.exists()


def test_broken_arrays_are_one_line_errors(model, tmp_path):
    whole = (tmp_path / "x.npy").read_bytes()
    cases = {
        "truncated.npy": whole[:-3],
        "header-cut.npy": whole[:20],
        # a header length of 4 GiB - 1 that the file does not have
        "huge-header.npy": b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr': '<f4', ",
        "version3.npy": b"\x93NUMPY\x03\x00\x14\x00\x00\x00" + b"{}".ljust(20),
        "truncated.npz": b"PK\x03\x04" + bytes(40),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        line = one_error_line(run(model, "-i", tmp_path / name))
        assert line.startswith(f"error: cannot read '{tmp_path}/{name}' as .npy or .npz: "), line
    line = one_error_line(run(model, "-i", tmp_path / "huge-header.npy"))
    assert line.endswith("the .npy header is 4294967295 bytes long, more than 10000"), line


def test_names_from_files_are_escaped(model, tmp_path):
    """Member names and output names with escapes reach the terminal escaped."""
    with zipfile.ZipFile(tmp_path / "names.npz", "w") as archive:
        for member in ("\x1b[2Ja", "\x1b[2Jb"):
            with archive.open(member + ".npy", "w") as stream:
                np.lib.format.write_array(stream, np.ones((1, 4), np.float32))
    line = one_error_line(run(model, "-i", f"x={tmp_path}/names.npz"))
    assert "\x1b" not in line and "'\\x1b[2Ja', '\\x1b[2Jb'" in line
    result = run(model, "-i", tmp_path / "x.npy")
    assert result.exit_code == 0 and "\x1b" not in result.output
    assert result.stdout.startswith("out\\x1b[31m: F32[1, 4]")
