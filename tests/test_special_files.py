"""Only regular files are read, repaired or appended to: a device, a FIFO, a folder or a /proc
pseudo-file is refused with a clear PopefError, and none of them blocks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import popef
from popef.cli import main as popef_main
from popef.repair import RepairPlan, apply_repair, plan_repair

needs_posix = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev")


@needs_posix
@pytest.mark.parametrize(
    "path, kind", [("/dev/zero", "a character device"), ("/dev/null", "a character device")]
)
def test_a_device_is_not_read(path, kind):
    with pytest.raises(popef.PopefError) as caught:
        popef.Reader().parse_file(path)
    assert str(caught.value) == f"cannot read '{path}': not a regular file (found {kind})"


def test_a_folder_is_not_read(tmp_path):
    with pytest.raises(popef.PopefError, match=r"not a regular file \(found a folder\)"):
        popef.Reader().parse_file(tmp_path)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_a_proc_pseudo_file_is_not_read():
    with pytest.raises(popef.PopefError, match="claims 0 bytes but has content"):
        popef.Reader().parse_file("/proc/self/status")


def test_an_empty_regular_file_is_still_read(tmp_path):
    empty = tmp_path / "empty.popef"
    empty.write_bytes(b"")
    reader = popef.Reader()
    reader.parse_file(empty)
    assert reader.blobs() == []


@needs_posix
def test_check_and_repair_refuse_a_device():
    runner = CliRunner()
    for args in (["check", "/dev/zero"], ["repair", "/dev/zero"]):
        result = runner.invoke(popef_main, args)
        assert result.exit_code == 1, result.output
        assert "'/dev/zero': not a regular file" in result.output
        assert "Result: OK" not in result.output and "nothing to repair" not in result.output


@needs_posix
def test_repair_and_append_refuse_a_device(tmp_path):
    with pytest.raises(popef.PopefError, match="cannot repair '/dev/null': not a regular file"):
        plan_repair("/dev/null")
    with pytest.raises(popef.PopefError, match="cannot repair '/dev/null': not a regular file"):
        apply_repair(RepairPlan("/dev/null", 64, 0, 0))
    with pytest.raises(popef.WriterError, match="cannot append to '/dev/null': not a regular file"):
        popef.Writer("/dev/null", "a")


# Run in a child with a deadline: before the fix, opening a FIFO waited for a writer forever.
FIFO_SCRIPT = textwrap.dedent("""
    import sys
    import popef
    from popef.repair import RepairPlan, apply_repair, plan_repair
    fifo = sys.argv[1]
    attempts = [
        lambda: popef.Reader().parse_file(fifo),
        lambda: plan_repair(fifo),
        lambda: apply_repair(RepairPlan(fifo, 64, 0, 0)),
        lambda: popef.Writer(fifo, "a"),
    ]
    for attempt in attempts:
        try:
            attempt()
        except popef.PopefError as exc:
            print(type(exc).__name__, exc)
        else:
            print("accepted")
""")


@needs_posix
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.popef"
    os.mkfifo(fifo)
    try:
        result = subprocess.run(
            [sys.executable, "-c", FIFO_SCRIPT, str(fifo)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("opening a FIFO blocked")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"PopefError cannot read '{fifo}': not a regular file (found a FIFO)",
        f"PopefError cannot repair '{fifo}': not a regular file",
        f"PopefError cannot repair '{fifo}': not a regular file",
        f"WriterError cannot append to '{fifo}': not a regular file",
    ]


def test_append_to_a_regular_file_still_works(tmp_path):
    path = tmp_path / "model.popef"
    with popef.Writer(path) as writer:
        writer.write_tensor("a", np.arange(3, dtype=np.float32))
    with popef.Writer(path, "a") as writer:
        writer.write_tensor("b", np.arange(4, dtype=np.float32))
    reader = popef.Reader()
    reader.parse_file(path)
    assert [t.name for t in reader.tensors()] == ["a", "b"]
