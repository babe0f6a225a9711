"""Hostile use of the commands that write files: special files, links, output == input,
absurd option values, closed standard output, an interrupt mid-write.

Special files are FIFOs made in a temporary folder: no test ever points a writer at a real
device node (a regression would replace it, and the tests run as root).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import popef
from popef.atomic import PrivateFile
from popef.cli import main as popef_main

MINIMAL = Path(__file__).parent / "data" / "minimal.popef"
POPEF_COMMAND = [sys.executable, "-c", "from popef.cli import main; main()"]

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


def _invoke(*args: str):
    return CliRunner().invoke(popef_main, list(args))


def _one_error_line(result, status: int = 1) -> str:
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


# ---- a special file is never replaced by a regular one
def test_private_file_refuses_a_fifo_and_a_link_to_one(fifo: Path, tmp_path: Path):
    link = tmp_path / "link"
    link.symlink_to(fifo)
    for target in (fifo, link):
        with pytest.raises(OSError, match=r"not a regular file \(found a FIFO\)"):
            PrivateFile(target)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()


def test_writer_refuses_a_fifo(fifo: Path):
    with pytest.raises(popef.WriterError, match=r"cannot write '.*pipe': not a regular file"):
        popef.Writer(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_rewrite_to_a_fifo_is_one_error_line(fifo: Path):
    line = _one_error_line(_invoke("rewrite", str(MINIMAL), "-o", str(fifo)))
    assert "not a regular file (found a FIFO)" in line
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_import_to_a_fifo_is_one_error_line(onnx_model: Path, fifo: Path):
    line = _one_error_line(_invoke("import", str(onnx_model), "-o", str(fifo), "--batch-size", "1"))
    assert "not a regular file (found a FIFO)" in line
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@needs_fifo
def test_import_from_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path):
    pytest.importorskip("onnx")
    source = tmp_path / "model.onnx"
    os.mkfifo(source)
    # a subprocess with a generous deadline: a regression blocks in open() forever
    done = subprocess.run(
        [*POPEF_COMMAND, "import", str(source), "-o", str(tmp_path / "out.popef")],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot read '{source}': not a regular file (found a FIFO), expected an .onnx file"
    ]
    assert not (tmp_path / "out.popef").exists()


# ---- links and output == input
def test_import_refuses_to_replace_its_own_model(onnx_model: Path, tmp_path: Path):
    before = onnx_model.read_bytes()
    link = tmp_path / "link.onnx"
    link.symlink_to(onnx_model)
    for source, output in ((onnx_model, onnx_model), (link, onnx_model), (onnx_model, link)):
        line = _one_error_line(
            _invoke("import", str(source), "-o", str(output), "--batch-size", "1")
        )
        assert "give another path with -o" in line
    assert onnx_model.read_bytes() == before and link.is_symlink()


def test_rewrite_through_a_link_replaces_the_target_not_the_link(tmp_path: Path):
    target = tmp_path / "model.popef"
    target.write_bytes(MINIMAL.read_bytes())
    link = tmp_path / "link.popef"
    link.symlink_to(target)
    result = _invoke("rewrite", str(link), "-o", str(link), "--compress")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    with popef.Reader() as reader:
        reader.parse_file(str(target))
        reader.verify()


def test_import_through_a_link_replaces_the_target_not_the_link(onnx_model: Path, tmp_path: Path):
    link = tmp_path / "out.popef"
    link.symlink_to(tmp_path / "real.popef")  # dangling: the target is created
    result = _invoke("import", str(onnx_model), "-o", str(link), "--batch-size", "1", "-q")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (tmp_path / "real.popef").stat().st_size > 0


# ---- option values
@pytest.mark.parametrize(
    "text, expected",
    [
        ("x=100000000000000000000,4", "dimensions must be below 2**63"),
        ("x=" + "9" * 5000, "dimensions must be integers"),
    ],
)
def test_import_refuses_absurd_input_shapes_in_one_bounded_line(
    onnx_model: Path, tmp_path: Path, text: str, expected: str
):
    output = tmp_path / "out.popef"
    line = _one_error_line(
        _invoke("import", str(onnx_model), "-o", str(output), "--input-shape", text)
    )
    assert expected in line and len(line) < 500
    assert not output.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--batch-size", "100000000000000000000"],
        ["--batch-size", "0"],
        ["--batch-size", "1", "--name", ""],
    ],
)
def test_import_usage_errors_exit_2(onnx_model: Path, tmp_path: Path, args: list[str]):
    output = tmp_path / "out.popef"
    result = _invoke("import", str(onnx_model), "-o", str(output), *args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert not output.exists()


# ---- standard output closed; an interrupt mid-write
def test_export_onnx_to_a_closed_standard_output_is_one_error_line(tmp_path: Path):
    pytest.importorskip("onnx")
    done = subprocess.run(
        ["sh", "-c", '"$@" >&-', "sh", *POPEF_COMMAND, "export-onnx", str(MINIMAL), "-o", "-"],
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: cannot write the ONNX model: standard output is closed"
    ]


def test_import_interrupted_mid_write_leaves_no_output(
    onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(popef.Writer, "write_tensor", interrupt)
    output = tmp_path / "out.popef"
    result = _invoke("import", str(onnx_model), "-o", str(output), "--batch-size", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
