"""A killed writer: what survives, what is left behind, and `popef repair`.

Each kill is of a real child process (SIGKILL), synchronised through its stdout: the child
says where it is, then blocks on its stdin until it is killed.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import popef
from popef import writer as writer_module
from popef.cli import main as popef_main
from popef.repair import plan_repair

from .helpers import minimal_model_bytes, read_bytes

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kills with SIGKILL")

# The child writes three whole tensors, then (``inside``) starts a fourth and writes part of
# it, says "ready" and waits to be killed.
CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import popef

    path, mode, where = sys.argv[1:]
    writer = popef.Writer(path, mode)
    for i in range(3):
        writer.write_tensor(f"t{i}", np.full(1000 + i, i, np.float32))
    if where == "inside":
        blob = writer.create_tensor_data(popef.TensorDataInfo(
            "unfinished", popef.TensorInfo(popef.DataType.F32, (1 << 20,))))
        blob.write(np.ones(5000, np.float32))
    print("ready", flush=True)
    sys.stdin.read()
""")


def kill_while_writing(path, mode: str, where: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode, where],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()  # the child blocks after this line until killed
        assert line == "ready\n", f"the child ended early (exit {child.poll()})"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()
        child.stdout.close()


def check_three_tensors(reader: popef.Reader) -> None:
    tensors = {t.name: t.data() for t in reader.tensors()}
    assert sorted(tensors) == ["t0", "t1", "t2"]
    for i in range(3):
        np.testing.assert_array_equal(tensors[f"t{i}"], np.full(1000 + i, i, np.float32))
    reader.verify()


# -- item: a killed append keeps every finished blob -------------------------------------------

def test_killed_append_keeps_finished_blobs_and_repair_drops_the_partial_one(tmp_path):
    path = tmp_path / "model.popef"
    original = minimal_model_bytes()
    path.write_bytes(original)
    kill_while_writing(path, "a", "inside")

    data = path.read_bytes()
    assert data.startswith(original)  # the old bytes are untouched
    old_blobs = len(read_bytes(original).blobs())
    with pytest.raises(popef.PartialTailError) as info:
        popef.Reader().parse_file(path)
    error = info.value
    assert error.complete_blobs == old_blobs + 3
    assert f"run 'popef repair {path}' to drop it" in str(error)
    assert str(error).startswith("partial blob at the end of the file (an interrupted write?)")
    partial_at = error.offset
    assert f"before offset {partial_at:#x}" in str(error)

    dry = CliRunner().invoke(popef_main, ["repair", "--dry-run", str(path)])
    assert dry.exit_code == 0, dry.output
    assert f"keeping {old_blobs + 3} complete blobs ({partial_at} bytes)" in dry.output
    assert f"dropping {len(data) - partial_at} bytes from offset {partial_at:#x}" in dry.output
    assert "nothing changed (--dry-run)" in dry.output
    assert path.read_bytes() == data

    done = CliRunner().invoke(popef_main, ["repair", str(path)])
    assert done.exit_code == 0, done.output
    assert f"truncated '{path}' to {partial_at} bytes" in done.output
    assert path.read_bytes() == data[:partial_at]
    reader = popef.Reader()
    reader.parse_file(path)
    check_three_tensors(reader)
    assert data[:partial_at].startswith(original)  # the original model is still there

    again = CliRunner().invoke(popef_main, ["repair", str(path)])
    assert again.exit_code == 0
    assert f"has nothing to repair: {old_blobs + 3} complete blobs" in again.output


def test_append_killed_between_blobs_leaves_a_valid_file(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    kill_while_writing(path, "a", "between")
    reader = popef.Reader()
    reader.parse_file(path)
    check_three_tensors(reader)


def test_finished_blobs_reach_the_destination_before_the_writer_closes(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    with popef.Writer(path, "a") as writer:
        writer.write_tensor("t", np.arange(10, dtype=np.int32))
        assert [t.name for t in read_bytes(path.read_bytes()).tensors()] == ["t"]
    stream = _Stream()
    with popef.Writer(stream) as writer:
        writer.write_tensor("t", np.arange(10, dtype=np.int32))
        assert stream.flushed is not None
        assert [t.name for t in read_bytes(stream.flushed).tensors()] == ["t"]


class _Stream:
    """A seekable stream that remembers what was in it at its last flush."""

    def __init__(self):
        import io

        self._buffer = io.BytesIO()
        self.flushed: bytes | None = None
        for name in ("write", "seek", "tell", "seekable", "truncate"):
            setattr(self, name, getattr(self._buffer, name))

    def flush(self) -> None:
        self.flushed = self._buffer.getvalue()


def test_repair_refuses_a_defect_that_is_not_a_partial_tail(tmp_path):
    good = minimal_model_bytes()
    path = tmp_path / "bad.popef"
    path.write_bytes(good + b"NotPopEF" + good[8:])  # bad magic in the middle
    before = path.read_bytes()
    result = CliRunner().invoke(popef_main, ["repair", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot repair: not a PopEF blob")
    assert "only a partial blob at the end of a file can be dropped" in result.output
    assert path.read_bytes() == before
    with pytest.raises(popef.BadMagicError):
        plan_repair(path)


# -- item: a killed "w" leaves nothing, and writes are durable -----------------------------------

def unnamed_files_work(folder) -> bool:
    fd = writer_module._open_unnamed(str(folder))
    if fd is None:
        return False
    os.close(fd)
    return True


@pytest.mark.parametrize("existing", [False, True], ids=["new", "rewrite"])
def test_killed_create_leaves_no_file_behind(tmp_path, existing):
    if not unnamed_files_work(tmp_path):
        pytest.skip("no O_TMPFILE here: the named temporary file is left behind by a kill")
    path = tmp_path / "model.popef"
    if existing:
        path.write_bytes(minimal_model_bytes())
    before = sorted(os.listdir(tmp_path))
    kill_while_writing(path, "w", "inside")
    assert sorted(os.listdir(tmp_path)) == before
    if existing:
        assert path.read_bytes() == minimal_model_bytes()


def test_an_unnamed_file_is_invisible_until_close(tmp_path):
    if not unnamed_files_work(tmp_path):
        pytest.skip("no O_TMPFILE here")
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    os.chmod(path, 0o640)
    with popef.Writer(path) as writer:
        writer.write_tensor("t0", np.zeros(3, np.float32))
        assert os.listdir(tmp_path) == ["model.popef"]
        assert path.read_bytes() == minimal_model_bytes()
    assert os.listdir(tmp_path) == ["model.popef"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the destination's mode is kept
    assert [t.name for t in read_bytes(path.read_bytes()).tensors()] == ["t0"]


def test_without_unnamed_files_a_named_temporary_is_used(tmp_path, monkeypatch):
    real_open = os.open
    tmpfile = getattr(os, "O_TMPFILE", 0)

    def open_without_tmpfile(path, flags, *args, **kwargs):
        if tmpfile and flags & tmpfile == tmpfile:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_without_tmpfile)
    path = tmp_path / "model.popef"
    with popef.Writer(path) as writer:
        writer.write_tensor("t0", np.zeros(3, np.float32))
        hidden = [n for n in os.listdir(tmp_path) if n != "model.popef"]
        assert len(hidden) == 1 and hidden[0].startswith(".model.popef.")
    assert os.listdir(tmp_path) == ["model.popef"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    writer = popef.Writer(path)
    writer.write_tensor("t1", np.zeros(3, np.float32))
    writer.abort()
    assert os.listdir(tmp_path) == ["model.popef"]
    assert [t.name for t in read_bytes(path.read_bytes()).tensors()] == ["t0"]


@pytest.mark.parametrize("mode", ["w", "a"])
def test_close_syncs_the_data_and_the_folder(tmp_path, monkeypatch, mode):
    path = tmp_path / "model.popef"
    if mode == "a":
        path.write_bytes(minimal_model_bytes())
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        info = os.fstat(fd)
        synced.append("folder" if stat.S_ISDIR(info.st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with popef.Writer(path, mode) as writer:
        writer.write_tensor("t0", np.zeros(3, np.float32))
        assert synced == []
    assert synced == (["file", "folder"] if mode == "w" else ["file"])
