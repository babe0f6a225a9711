"""Writer behaviour: blob writer states, streaming, append, atomic create, aborts."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import popef
from popef.repair import apply_repair, plan_repair

from .helpers import minimal_model_bytes, read_bytes

F32_4 = popef.TensorDataInfo("t", popef.TensorInfo(popef.DataType.F32, (4,)))


def test_only_one_blob_writer_is_active():
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        opaque = writer.create_opaque_blob("tensorflow", "m")
        opaque.write(b"abc")
        executable = writer.create_executable("m")  # finishes the opaque blob, like Graphcore's
        assert not opaque.active and executable.active
        with pytest.raises(popef.WriterError, match="opaque blob 'tensorflow' is deactivated"):
            opaque.write(b"more")
        executable.write(b"exe")
    reader = read_bytes(stream.getvalue())
    assert reader.opaque_blobs()[0].data() == b"abc"
    assert reader.executables()[0].payload() == b"exe"


def test_closed_blob_writer_refuses_writes():
    with popef.Writer(io.BytesIO()) as writer:
        blob = writer.create_executable("m")
        blob.close()
        blob.close()  # harmless
        with pytest.raises(popef.WriterError, match="is closed"):
            blob.write(b"x")


def test_tensor_written_chunk_by_chunk():
    data = np.arange(1 << 16, dtype=np.float32)
    info = popef.TensorDataInfo("big", popef.TensorInfo.of(data))
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        with writer.create_tensor_data(info) as blob:
            for chunk in np.array_split(data, 7):
                blob.write(chunk)
    np.testing.assert_array_equal(read_bytes(stream.getvalue()).tensors()[0].data(), data)


def test_tensor_size_is_enforced_and_a_short_blob_is_rolled_back():
    stream = io.BytesIO()
    writer = popef.Writer(stream)
    writer.write_tensor("ok", np.ones(2, np.int8))
    blob = writer.create_tensor_data(F32_4)
    with pytest.raises(popef.WriterError, match="takes 16 bytes; writing 20 more"):
        blob.write(bytes(20))
    blob.write(bytes(8))
    with pytest.raises(popef.WriterError, match="takes 16 bytes but 8 were written"):
        blob.close()
    writer.write_tensor("after", np.zeros(3, np.uint16))  # the writer is still usable
    writer.close()
    assert [t.name for t in read_bytes(stream.getvalue()).tensors()] == ["ok", "after"]


def test_large_write_is_pipelined_and_verified(tmp_path):
    data = np.random.default_rng(0).random(3 << 20).astype(np.float32)  # 12 MiB
    path = tmp_path / "big.popef"
    with popef.Writer(path) as writer:
        writer.write_tensor("x", data)
    reader = popef.Reader()
    reader.parse_file(path)
    tensor = reader.tensors()[0]
    tensor.verify()
    np.testing.assert_array_equal(tensor.data(), data)
    assert not tensor.data().flags.writeable


def test_compressed_executable_is_smaller_and_round_trips():
    payload = b"poplar executable " * 5000
    stream = io.BytesIO()
    with popef.Writer(stream) as writer:
        with writer.create_executable("m", compress=True) as blob:
            for i in range(0, len(payload), 1000):
                blob.write(payload[i : i + 1000])
    executable = read_bytes(stream.getvalue()).executables()[0]
    assert executable.compressed and executable.size == len(payload)
    assert executable.blob.payload_size < len(payload) // 10
    assert executable.payload() == payload
    executable.verify()


class _Pipe(io.RawIOBase):
    """A write-only stream that cannot seek, like a pipe or a socket."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += bytes(b)
        return len(b)


def test_non_seekable_stream_gets_identical_bytes():
    seekable = io.BytesIO()
    pipe = _Pipe()
    for target in (seekable, pipe):
        with popef.Writer(target) as writer:
            writer.write_metadata(popef.Metadata("m"))
            with writer.create_executable("m", compress=True) as blob:
                blob.write(b"abc" * 100)
            writer.write_tensor("w", np.arange(5))
    assert bytes(pipe.data) == seekable.getvalue()


def test_create_is_atomic_and_abort_keeps_old_content(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with popef.Writer(path) as writer:
            writer.write_metadata(popef.Metadata("other"))
            assert path.read_bytes() == before  # untouched while writing
            raise RuntimeError("interrupted")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.popef"]  # no temporary file left behind
    writer = popef.Writer(path)
    writer.write_tensor("w", np.ones(3))
    writer.abort()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.popef"]


def test_forgotten_writer_leaves_no_temporary_file(tmp_path):
    writer = popef.Writer(tmp_path / "x.popef")
    writer.write_tensor("w", np.ones(3))
    del writer
    import gc

    gc.collect()
    assert os.listdir(tmp_path) == []


def test_new_file_gets_normal_permissions(tmp_path):
    path = tmp_path / "perm.popef"
    with popef.Writer(path) as writer:
        writer.write_metadata(popef.Metadata("m"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_append_adds_blobs_without_rewriting(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    original = path.read_bytes()
    with popef.Writer(path, mode="a") as writer:
        with writer.create_opaque_blob("poptorch", "m") as blob:
            blob.write(b"pickle")
    data = path.read_bytes()
    assert data.startswith(original)
    reader = read_bytes(data)
    assert reader.opaque_blobs()[0].executable == "m"
    assert reader.models()[0].opaque_blobs[0].name == "poptorch"


def test_failed_append_restores_the_old_size(tmp_path):
    path = tmp_path / "model.popef"
    path.write_bytes(minimal_model_bytes())
    original = path.read_bytes()
    with pytest.raises(KeyError):
        with popef.Writer(path, mode="a") as writer:
            writer.write_tensor("w", np.ones(1000))
            raise KeyError("boom")
    assert path.read_bytes() == original


def test_append_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello")
    with pytest.raises(
        popef.WriterError,
        match="^cannot append to '.*notes.txt': not a PopEF "
        r"file \(it starts with text 'hello'\)",
    ):
        popef.Writer(path, mode="a")
    assert path.read_bytes() == b"hello"


def test_a_blob_being_written_has_a_provisional_header():
    stream = io.BytesIO()
    writer = popef.Writer(stream)
    blob = writer.create_tensor_data(F32_4)
    blob.write(np.ones(2, np.float32))
    head = popef.format.HEADER.parse(stream.getvalue()[: popef.format.HEADER_SIZE])
    info_size = len(popef.format.codec.encode_tensor_data_info(F32_4))
    assert (head.magic, head.version, head.blob_type, head.info_size) == (
        popef.format.MAGIC,
        "1.0",
        popef.BlobType.DATA_TENSOR,
        info_size,
    )
    assert (head.total_size, head.payload_size, head.checksum, head.flags, head.reserved) == (
        0,
        0,
        0,
        0,
        0,
    )
    with pytest.raises(popef.PartialTailError, match="its writer never finished it"):
        read_bytes(stream.getvalue())
    blob.write(np.ones(2, np.float32))
    writer.close()  # the real header replaces it
    assert read_bytes(stream.getvalue()).tensors()[0].data().tolist() == [1, 1, 1, 1]


def partial_append(path) -> bytes:
    """The bytes a writer killed while appending a tensor to ``path`` leaves."""
    writer = popef.Writer(path, mode="a")
    writer.write_tensor("done", np.zeros(3, np.float32))
    writer.create_tensor_data(F32_4).write(np.ones(2, np.float32))
    writer._out.flush()
    data = path.read_bytes()
    writer.abort()
    return data


@pytest.mark.parametrize("unwritten", ["provisional", "zeros"])
def test_append_refuses_a_file_that_ends_in_a_partial_blob(tmp_path, unwritten):
    path = tmp_path / "model.popef"
    original = minimal_model_bytes()
    path.write_bytes(original)
    data = bytearray(partial_append(path))
    done = io.BytesIO()
    with popef.Writer(done) as writer:
        writer.write_tensor("done", np.zeros(3, np.float32))
    partial_at = len(original) + len(done.getvalue())
    if unwritten == "zeros":  # what older writers left
        data[partial_at : partial_at + popef.format.HEADER_SIZE] = bytes(popef.format.HEADER_SIZE)
    path.write_bytes(data)
    with pytest.raises(popef.WriterError) as info:
        popef.Writer(path, mode="a")
    assert str(info.value) == (
        f"cannot append to '{path}': it ends in a partial blob at offset "
        f"{partial_at:#x}; run 'popef repair {path}' first"
    )
    assert path.read_bytes() == data  # untouched: the finished blobs can still be recovered
    plan = plan_repair(path)
    assert plan.kept_bytes == partial_at
    apply_repair(plan)
    with popef.Writer(path, mode="a") as writer:
        writer.write_tensor("retry", np.zeros(3, np.float32))
    assert [t.name for t in read_bytes(path.read_bytes()).tensors()] == ["done", "retry"]


def test_append_refuses_a_file_damaged_in_the_middle(tmp_path):
    path = tmp_path / "model.popef"
    good = minimal_model_bytes()
    data = good + b"NotPopEF" + good[8:]
    path.write_bytes(data)
    with pytest.raises(
        popef.WriterError,
        match=f"^cannot append to '{path}': not a PopEF blob: expected magic .* offset 0x",
    ):
        popef.Writer(path, mode="a")
    assert path.read_bytes() == data


def test_append_to_missing_file_creates_it(tmp_path):
    path = tmp_path / "new.popef"
    with popef.Writer(path, mode="a") as writer:
        writer.write_metadata(popef.Metadata("m"))
    assert len(read_bytes(path.read_bytes()).metadata()) == 1


def test_split_model_across_files(tmp_path):
    md = popef.Metadata(
        "m",
        anchors=(
            popef.Anchor(
                "w",
                "h2d_w",
                popef.TensorInfo(popef.DataType.F32, (2,)),
                (0,),
                False,
                popef.TensorType.INPUT,
            ),
            popef.Anchor(
                "x",
                "h2d_x",
                popef.TensorInfo(popef.DataType.F32, (2,)),
                (5,),
                False,
                popef.TensorType.INPUT,
            ),
        ),
        program_flow=popef.ProgramFlow((0,), (5,)),
    )
    with popef.Writer(tmp_path / "executable.popef") as writer:
        writer.write_metadata(md)
        writer.create_executable("m").close()
    with popef.Writer(tmp_path / "variables.popef") as writer:
        writer.write_tensor("w", np.array([1, 2], np.float32))
    reader = popef.Reader()
    reader.parse_file(tmp_path / "executable.popef")
    reader.parse_file(tmp_path / "variables.popef")
    model = reader.models()[0]
    assert [a.name for a in model.user_input_anchors()] == ["x"]
    assert model.get_tensor_data("w").data().tolist() == [1, 2]
    assert {b.source for b in reader.blobs()} == {
        str(tmp_path / "executable.popef"),
        str(tmp_path / "variables.popef"),
    }


def test_api_misuse_is_a_writer_error(tmp_path):
    with pytest.raises(popef.WriterError, match="mode must be"):
        popef.Writer(tmp_path / "x", mode="r")
    with popef.Writer(io.BytesIO()) as writer:
        with pytest.raises(popef.WriterError, match="non-empty name"):
            writer.create_executable("")
        with pytest.raises(popef.WriterError, match="needs a Metadata"):
            writer.write_metadata({"executable": "m"})
        with pytest.raises(popef.WriterError, match="bytes-like"):
            writer.create_executable("m").write("text")
        with pytest.raises(popef.WriterError, match="exceeds the limit"):
            writer.write_metadata(popef.Metadata("x" * (2 << 20)))
    with pytest.raises(popef.WriterError, match="is closed"):
        writer.write_tensor("late", np.ones(1))
    with pytest.raises(popef.WriterError, match="cannot write"):
        popef.Writer(tmp_path / "missing-dir" / "x.popef")


def test_stream_reader_reads_without_mapping(tmp_path):
    data = minimal_model_bytes()
    stream = io.BytesIO(b"prefix" + data)
    stream.seek(6)
    reader = popef.Reader()
    reader.parse_stream(stream)
    assert reader.metadata()[0].executable == "m"
    with popef.Writer(io.BytesIO()) as writer:
        writer.write_tensor("w", np.arange(4, dtype=np.int32))
        stream2 = writer._out
    reader.parse_stream(io.BytesIO(stream2.getvalue()))
    assert reader.tensors()[0].data().tolist() == [0, 1, 2, 3]
