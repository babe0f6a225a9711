"""A killed writer: what survives, what is left behind, and `popef repair`.

Each kill is of a real child process (SIGKILL), synchronised through its stdout: the child
says where it is, then blocks on its stdin until it is killed.
"""

from __future__ import annotations

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
from popef.atomic import open_unnamed
from popef.cli import main as popef_main
from popef.format import HEADER, HEADER_SIZE, MAGIC
from popef.repair import apply_repair, plan_repair

from .helpers import minimal_model_bytes, read_bytes, without_unnamed_files

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="kills with SIGKILL")

# The child writes three whole tensors, then (``inside``) starts a fourth and writes part of
# it, says "ready" and waits to be killed. With ``nested`` the part written is a PopEF file
# several times over (an archived model stored as a uint8 tensor): whole blob headers at
# aligned offsets of the unfinished payload.
CHILD = textwrap.dedent("""
    import io
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
    if where == "nested":
        inner = io.BytesIO()
        with popef.Writer(inner) as model:
            model.write_tensor("x", np.ones(1000, np.float32))
        archive = np.frombuffer(inner.getvalue(), np.uint8)
        blob = writer.create_tensor_data(popef.TensorDataInfo(
            "unfinished", popef.TensorInfo(popef.DataType.U8, (archive.size * 100,))))
        blob.write(np.tile(archive, 10))
    print("ready", flush=True)
    sys.stdin.read()
""")


def kill_while_writing(path, mode: str, where: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode, where],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
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


@pytest.mark.parametrize("where", ["inside", "nested"])
def test_killed_append_keeps_finished_blobs_and_repair_drops_the_partial_one(tmp_path, where):
    path = tmp_path / "model.popef"
    original = minimal_model_bytes()
    path.write_bytes(original)
    kill_while_writing(path, "a", where)

    data = path.read_bytes()
    assert data.startswith(original)  # the old bytes are untouched
    old_blobs = len(read_bytes(original).blobs())
    with pytest.raises(popef.PartialTailError) as info:
        popef.Reader().parse_file(path)
    error = info.value
    assert error.complete_blobs == old_blobs + 3
    remedy = (
        f"'popef repair --force {path}' drops it and all that follows"
        if where == "nested"
        else f"run 'popef repair {path}' to drop it"
    )
    assert remedy in str(error)
    assert str(error).startswith("partial blob at the end of the file (an interrupted write?)")
    partial_at = error.offset
    assert f"before offset {partial_at:#x}" in str(error)
    # the unfinished blob has its provisional header: no need to look at what follows it
    assert "its writer never finished it" in str(error)
    head = HEADER.parse(data[partial_at : partial_at + HEADER_SIZE])
    assert (head.magic, head.total_size, head.blob_type) == (MAGIC, 0, popef.BlobType.DATA_TENSOR)

    force = []
    if where == "nested":  # the PopEF data in the unfinished payload looks like a blob
        assert error.follower is not None and error.follower > partial_at
        refused = CliRunner().invoke(popef_main, ["repair", "--dry-run", str(path)])
        assert refused.exit_code == 1
        assert refused.stderr.startswith("error: cannot repair without --force: partial blob")
        assert f"a blob header follows at offset {error.follower:#x}" in refused.stderr
        force = ["--force"]
    else:
        assert error.follower is None
    dry = CliRunner().invoke(popef_main, ["repair", "--dry-run", *force, str(path)])
    assert dry.exit_code == 0, dry.output
    assert f"keeping {old_blobs + 3} complete blobs ({partial_at} bytes)" in dry.output
    assert f"dropping {len(data) - partial_at} bytes from offset {partial_at:#x}" in dry.output
    assert "nothing changed (--dry-run)" in dry.output
    assert path.read_bytes() == data

    done = CliRunner().invoke(popef_main, ["repair", *force, str(path)])
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


def test_append_after_a_killed_append_is_refused_until_the_file_is_repaired(tmp_path):
    # A retried job appending again would leave the partial blob in the middle, out of
    # repair's reach: the finished blobs before it would be lost.
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    kill_while_writing(path, "a", "inside")
    data = path.read_bytes()
    partial_at = plan_repair(path).kept_bytes
    with pytest.raises(popef.WriterError) as info:
        popef.Writer(path, "a")
    assert str(info.value) == (
        f"cannot append to '{path}': it ends in a partial blob at "
        f"offset {partial_at:#x}; run 'popef repair {path}' first"
    )
    assert path.read_bytes() == data
    assert CliRunner().invoke(popef_main, ["repair", str(path)]).exit_code == 0
    with popef.Writer(path, "a") as writer:
        writer.write_tensor("t3", np.zeros(3, np.float32))
    reader = popef.Reader()
    reader.parse_file(path)
    assert [t.name for t in reader.tensors()] == ["t0", "t1", "t2", "t3"]


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


# -- damage in the middle of a file is not a partial tail ----------------------------------------


def four_tensors(path) -> list[popef.Blob]:
    with popef.Writer(path, "w") as writer:
        for i in range(4):
            writer.write_tensor(f"t{i}", np.full(1000, i, np.float32))
    return read_bytes(path.read_bytes()).blobs()


def zero_header(data: bytearray, blob: popef.Blob) -> None:
    data[blob.offset : blob.offset + HEADER_SIZE] = bytes(HEADER_SIZE)


def flip_total_size(data: bytearray, blob: popef.Blob) -> None:
    field = blob.offset + 16
    total = int.from_bytes(data[field : field + 8], "little")
    data[field : field + 8] = (total | 1 << 40).to_bytes(8, "little")


@pytest.mark.parametrize(
    "damage, error_type, field",
    [
        (zero_header, popef.BadMagicError, "magic"),
        (flip_total_size, popef.FormatError, "total_size"),
    ],
    ids=["zeroed header", "total_size bit flip"],
)
def test_repair_keeps_the_blobs_after_a_damaged_header(tmp_path, damage, error_type, field):
    path = tmp_path / "model.popef"
    blobs = four_tensors(path)
    data = bytearray(path.read_bytes())
    damage(data, blobs[1])
    path.write_bytes(data)

    for parse in (lambda r: r.parse_file(path), lambda r: r.parse_bytes(bytes(data))):
        with pytest.raises(error_type) as info:
            parse(popef.Reader())
        assert not isinstance(info.value, popef.PartialTailError)
        assert info.value.field == field and info.value.blob_index == 1
        assert (
            f"a valid blob header follows at offset {blobs[2].offset:#x}: the file is "
            "damaged in the middle, not cut short by an interrupted write"
        ) in str(info.value)

    result = CliRunner().invoke(popef_main, ["repair", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot repair: ")
    assert "only a partial blob at the end of a file can be dropped" in result.output
    assert path.read_bytes() == data  # blobs #2 and #3 are still there
    with pytest.raises(error_type):
        plan_repair(path)


def test_several_unwritten_headers_at_the_end_are_still_a_partial_tail(tmp_path):
    # The old writer wrote the headers of an append only on close: a kill left all of them zero.
    path = tmp_path / "model.popef"
    blobs = four_tensors(path)
    data = bytearray(path.read_bytes())
    for blob in blobs[1:]:
        zero_header(data, blob)
    path.write_bytes(data)
    with pytest.raises(popef.PartialTailError) as info:
        popef.Reader().parse_file(path)
    assert info.value.complete_blobs == 1 and info.value.offset == blobs[1].offset
    assert plan_repair(path).kept_bytes == blobs[1].offset


def test_a_blob_header_inside_a_payload_is_found_at_aligned_offsets_only(tmp_path):
    # A magic at an unaligned offset of a tail is not a following blob: still a partial tail.
    good = minimal_model_bytes()
    tail = bytes(HEADER_SIZE) + bytes(3) + good + bytes(61)
    with pytest.raises(popef.PartialTailError):
        popef.Reader().parse_bytes(good + tail)
    tail = bytes(HEADER_SIZE) + bytes(16) + good
    with pytest.raises(popef.BadMagicError, match=f"follows at offset {len(good) + 64:#x}"):
        popef.Reader().parse_bytes(good + tail)


@pytest.mark.parametrize(
    "damage", [zero_header, flip_total_size], ids=["zeroed header", "total_size bit flip"]
)
def test_the_look_for_a_following_header_is_bounded(tmp_path, monkeypatch, damage):
    # Past SCAN_LIMIT the reader stops looking: what it did not read may hold whole blobs
    # (here blob #3), so repair drops it only when forced.
    monkeypatch.setattr(popef.blob, "SCAN_LIMIT", 2 * 4096)
    path = tmp_path / "model.popef"
    blobs = four_tensors(path)
    assert blobs[3].offset > blobs[1].offset + 64 + 2 * 4096  # past the window
    data = bytearray(path.read_bytes())
    damage(data, blobs[1])
    data[blobs[2].offset : blobs[2].offset + HEADER_SIZE] = bytes(HEADER_SIZE)
    path.write_bytes(data)
    unread = len(data) - (blobs[1].offset + 64 + 2 * 4096)
    with pytest.raises(popef.UncheckedTailError) as info:
        popef.Reader().parse_file(path)
    error = info.value
    assert not isinstance(error, popef.PartialTailError)
    assert (error.complete_blobs, error.unread_bytes, error.offset) == (1, unread, blobs[1].offset)
    assert (
        f"no valid blob header follows in the next 8192 bytes (as far as the reader looks; "
        f"{unread} bytes after that were not read)"
    ) in str(error)
    assert f"'popef repair --force {path}' drops it unread" in str(error)

    refused = CliRunner().invoke(popef_main, ["repair", str(path)])
    assert refused.exit_code == 1
    assert refused.output.startswith("error: cannot repair: ")
    assert path.read_bytes() == data
    forced = CliRunner().invoke(popef_main, ["repair", "--force", str(path)])
    assert forced.exit_code == 0, forced.output
    assert f"{unread} of them unread (--force)" in forced.output
    assert path.read_bytes() == data[: blobs[1].offset]


# -- appends are exclusive between writers --------------------------------------------------------


def test_a_second_appender_in_the_same_process_is_refused_until_the_first_closes(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    first = popef.Writer(path, "a")
    first.write_tensor("t0", np.zeros(3, np.float32))
    with pytest.raises(
        popef.WriterError, match=f"^cannot append to '{path}': another writer is appending to it$"
    ):
        popef.Writer(path, "a")
    first.close()
    second = popef.Writer(path, "a")  # the lock went with the first writer's file
    second.write_tensor("t1", np.zeros(3, np.float32))
    second.abort()
    with popef.Writer(path, "a") as third:  # and with an aborted one's
        third.write_tensor("t2", np.zeros(3, np.float32))
    assert [t.name for t in read_bytes(path.read_bytes()).tensors()] == ["t0", "t2"]


def test_repair_refuses_a_file_that_is_being_appended_to(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    writer = popef.Writer(path, "a")
    blob = writer.create_tensor_data(
        popef.TensorDataInfo("unfinished", popef.TensorInfo(popef.DataType.F32, (1000,)))
    )
    blob.write(np.ones(10, np.float32))
    writer._out.flush()
    before = path.read_bytes()
    plan = plan_repair(path)  # a reader sees the blob being written as a partial tail
    assert plan.needed
    with pytest.raises(
        popef.PopefError, match=f"^cannot repair '{path}': a writer is appending to it$"
    ):
        apply_repair(plan)
    assert path.read_bytes() == before
    writer.abort()


APPENDER = textwrap.dedent("""
    import sys
    import numpy as np
    import popef

    with popef.Writer(sys.argv[1], "a") as writer:
        writer.write_tensor("child", np.zeros(3, np.float32))
        print("ready", flush=True)
        sys.stdin.read()
""")


def test_appenders_in_two_processes_exclude_each_other(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    child = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "ready\n", f"the child ended early ({child.poll()})"
        with pytest.raises(popef.WriterError, match="another writer is appending to it"):
            popef.Writer(path, "a")
        # A reader is not locked out: it sees the blobs finished so far.
        assert [t.name for t in read_bytes(path.read_bytes()).tensors()] == ["child"]
        child.stdin.close()  # the child closes its writer and exits
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pipe in (child.stdin, child.stdout):
            pipe.close()
    with popef.Writer(path, "a") as writer:
        writer.write_tensor("parent", np.zeros(3, np.float32))
    assert [t.name for t in read_bytes(path.read_bytes()).tensors()] == ["child", "parent"]


# -- item: a killed "w" leaves nothing, and writes are durable -----------------------------------


def unnamed_files_work(folder) -> bool:
    fd = open_unnamed(str(folder))
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
    without_unnamed_files(monkeypatch)
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


def test_repair_asks_for_force_when_a_blob_follows_a_provisional_header(tmp_path):
    """A system crash may leave an earlier blob's header provisional while a later blob is
    whole: truncating there would drop that blob, so repair says so and asks for --force."""
    path = tmp_path / "m.popef"
    with popef.Writer(path) as writer:
        for name in "abc":
            writer.write_tensor(name, np.full(1000, ord(name), np.float32))
    reader = popef.Reader()
    reader.parse_file(path)
    b, c = reader.blobs()[1:]
    reader.close()
    data = bytearray(path.read_bytes())
    # b's header as a writer leaves it before the blob closes: sizes and checksum zero
    head = HEADER.parse(bytes(data[b.offset : b.offset + HEADER_SIZE]))
    head.total_size = head.payload_size = head.checksum = 0
    data[b.offset : b.offset + HEADER_SIZE] = HEADER.build(head)
    path.write_bytes(data)

    with pytest.raises(popef.PartialTailError) as info:
        popef.Reader().parse_file(path)
    assert (info.value.complete_blobs, info.value.offset, info.value.follower) == (
        1,
        b.offset,
        c.offset,
    )
    assert f"'popef repair --force {path}' drops it and all that follows" in str(info.value)
    refused = CliRunner().invoke(popef_main, ["repair", str(path)])
    assert refused.exit_code == 1 and "cannot repair without --force" in refused.stderr
    assert path.read_bytes() == data
    forced = CliRunner().invoke(popef_main, ["repair", "--force", str(path)])
    assert forced.exit_code == 0, forced.output
    assert path.read_bytes() == data[: b.offset]
