"""Graphcore's ``popef`` module, used the way its public callers use it: PopART's
executable_serialization_test field reads, compress_popef.py's rewrite loop, TensorFlow's
anchor reads; round trips against this library's reader."""

from __future__ import annotations

import gc
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import popef as ours
from popef.graphcore import popef

from ..helpers import models_bytes
from ..strategies import model_sets
from .scripts import compress_popef

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

ENGINE_OPTIONS = (
    ours.Option("target.syncReplicasIndependently", "true"),
    ours.Option("opt.enableInlining", "false"),
    ours.Option("debug.instrument", "true"),
)


def popart_like_file(path) -> ours.Metadata:
    """A file laid out as PopART saves an executable: metadata, executable, a 'popart'
    opaque blob, then the weights and the seed as tensor data."""
    f32 = ours.DataType.F32
    anchors = (
        ours.Anchor("x", "h2d_x", ours.TensorInfo(f32, (4, 3)), (5,), True, ours.TensorType.INPUT),
        ours.Anchor(
            "y", "anchor_d2h_y", ours.TensorInfo(f32, (4, 2)), (5,), True, ours.TensorType.OUTPUT
        ),
        ours.Anchor("w", "h2d_w", ours.TensorInfo(f32, (3, 2)), (0,), False, ours.TensorType.INPUT),
        ours.Anchor(
            "randomSeed",
            "h2d_randomSeed",
            ours.TensorInfo(ours.DataType.U32, (2,)),
            (2,),
            False,
            ours.TensorType.INPUT,
        ),
    )
    md = ours.Metadata(
        executable="1234567890",
        anchors=anchors,
        program_flow=ours.ProgramFlow(load=(0, 2), main=(5,), save=(3,)),
        programs_map={i: ours.POPART_PROGRAM_NAMES[i] for i in (0, 2, 3, 5)},
        replication_factor=4,
        num_ipus=4,
        ipu_version=21,
        is_pod=True,
        num_processes=1,
        is_inference=True,
        seed_handle="h2d_randomSeed",
        engine_options=ENGINE_OPTIONS,
        device_options=(ours.Option("numIPUs", "4"),),
        device_iterations=16,
    )
    with ours.Writer(path) as writer:
        writer.write_metadata(md)
        with writer.create_executable(md.executable) as blob:
            blob.write(b"poplar executable bytes" * 50)
        with writer.create_opaque_blob("popart", md.executable) as blob:
            blob.write(b"capnp executablex")
        writer.write_tensor("w", np.arange(6, dtype=np.float32).reshape(3, 2))
        writer.write_tensor("randomSeed", np.array([7, 9], np.uint32))
        writer.write_feed("x", np.ones((3, 4, 3), np.float32))
    return md


def test_popart_executable_serialization_reads(tmp_path):
    """The field reads of PopART's executable_serialization_test, on a PopART-like file."""
    path = tmp_path / "executable.popef"
    expected = popart_like_file(path)
    reader = popef.Reader()
    reader.parseFile(str(path))
    [md] = reader.metadata()
    assert md.executable() == reader.executables()[0].name == "1234567890"
    assert (
        md.replicationFactor(),
        md.numProcesses(),
        md.isInference(),
        md.ipuVersion(),
        md.isPOD(),
        md.numIpus(),
        md.deviceIterations(),
    ) == (4, 1, True, 21, True, 4, 16)
    assert [(o.name(), o.value()) for o in md.engineOptions()] == [
        (o.name, o.value) for o in ENGINE_OPTIONS
    ]  # in order: a list, not a map
    assert [(o.name(), o.value()) for o in md.deviceOptions()] == [("numIPUs", "4")]
    assert md.programFlow().load() == [0, 2] and md.programFlow().main() == [5]
    assert md.programFlow().save() == [3]
    assert md.programsMap()[5] == "Program"
    anchors = {a.name(): a for a in md.anchors()}
    assert [a.name() for a in md.anchors()] == [a.name for a in expected.anchors]
    # checkTensorsAndAnchorsConsistency: tensor data matches an INPUT anchor by name, shape, type
    for tensor in reader.tensors():
        anchor = anchors[tensor.info.name]
        assert anchor.type() == popef.TensorType.INPUT
        assert anchor.name() in anchor.handle()
        assert tensor.info.tensorInfo() == anchor.tensorInfo()
        assert tensor.info.tensorInfo().shape() == anchor.tensorInfo().shape()
        assert tensor.info.tensorInfo().dataType() == anchor.tensorInfo().dataType()
    [seed] = [a for a in md.anchors() if a.handle() == md.seedHandle()]
    assert seed.name() == "randomSeed"
    assert seed.tensorInfo().dataType() == popef.DataType.U32
    x = anchors["x"]
    assert (x.programs(), x.isPerReplica(), x.tensorInfo().sizeInBytes()) == ([5], True, 48)
    assert anchors["y"].type() == popef.TensorType.OUTPUT
    [opaque] = reader.opaqueBlobs()
    assert (opaque.name, opaque.executable, opaque.data()) == (
        "popart",
        "1234567890",
        b"capnp executablex",
    )
    assert opaque.getAvailableReadSize() == len(b"capnp executablex")
    data = reader.tensors()[0].data()
    np.testing.assert_array_equal(data, np.arange(6, dtype=np.float32).reshape(3, 2))
    assert data.flags.writeable  # a new array the caller owns
    [feed] = reader.feeds()
    assert feed.info.name == feed.info.name() == "x"
    assert feed.data().shape == (3, 4, 3)


def test_names_read_as_attribute_and_as_call(tmp_path):
    path = tmp_path / "m.popef"
    popart_like_file(path)
    reader = popef.Reader()
    reader.parseFile(str(path))
    executable = reader.executables()[0]
    tensor = reader.tensors()[0]
    assert executable.name == executable.name() == "1234567890"
    assert tensor.info.name == tensor.info.name() == "w"
    assert type(tensor.info.name()) is str
    assert executable.getStandaloneExecutableStream().read() == executable.executable()


def test_compress_popef_rewrite_gives_the_same_models(tmp_path):
    source, target = tmp_path / "in.popef", tmp_path / "in.popef_compressed.popef"
    popart_like_file(source)
    compress_popef(popef, str(source), str(target))
    before, after = ours.Reader(), ours.Reader()
    before.parse_file(source)
    after.parse_file(target)
    assert after.metadata() == before.metadata()
    [old], [new] = before.executables(), after.executables()
    assert (new.name, new.compressed, old.compressed) == (old.name, True, False)
    assert new.payload() == old.payload()
    assert new.blob.payload_size < old.blob.payload_size
    assert [(t.info, t.data().tobytes()) for t in after.tensors()] == [
        (t.info, t.data().tobytes()) for t in before.tensors()
    ]
    assert [(f.info, f.data().tobytes()) for f in after.feeds()] == [
        (f.info, f.data().tobytes()) for f in before.feeds()
    ]
    assert [(o.info, o.data()) for o in after.opaque_blobs()] == [
        (o.info, o.data()) for o in before.opaque_blobs()
    ]
    assert [m.name for m in after.models()] == ["1234567890"]
    after.verify()


@SETTINGS
@given(model_sets())
def test_any_models_survive_the_rewrite_loop(tmp_path, model_list):
    source, target = tmp_path / "drawn.popef", tmp_path / "rewritten.popef"
    source.write_bytes(models_bytes(model_list))
    compress_popef(popef, str(source), str(target))
    before, after = ours.Reader(), ours.Reader()
    before.parse_file(source)
    after.parse_file(target)
    assert after.metadata() == before.metadata()
    assert [(e.name, e.payload()) for e in after.executables()] == [
        (e.name, e.payload()) for e in before.executables()
    ]
    assert all(e.compressed for e in after.executables())
    assert [(t.info, t.read().tobytes()) for t in after.tensors()] == [
        (t.info, t.read().tobytes()) for t in before.tensors()
    ]
    assert [(o.info, o.data()) for o in after.opaque_blobs()] == [
        (o.info, o.data()) for o in before.opaque_blobs()
    ]
    before.close()
    after.close()


def test_metadata_built_with_setters_reads_back_as_set():
    """libpopef's setters, as PopART's serializePopefMetadata calls them."""
    info = popef.TensorInfo()
    info.setDataType(popef.DataType.F16)
    info.setShape([2, 3])
    assert info.sizeInBytes() == 12
    anchor = popef.Anchor()
    anchor.setName("x")
    anchor.setHandle("h2d_x")
    anchor.setTensorInfo(info)
    anchor.setPrograms([5])
    anchor.setIsPerReplica(False)
    anchor.setType(popef.TensorType.INPUT)
    anchor.tensorInfo().shape().append(4)  # the returned objects are the stored ones
    flow = popef.ProgramFlow()
    flow.setLoad([0])
    flow.setMain([5])
    md = popef.Metadata()
    md.setExecutable("exe")
    md.setReplicationFactor(2)
    md.setNumIpus(2)
    md.setIpuVersion(2)
    md.setIsPOD(False)
    md.setNumProcesses(1)
    md.setIsInference(True)
    md.setSeedHandle("")
    md.setDeviceIterations(8)
    md.setProgramFlow(flow)
    md.setProgramsMap({0: "WeightsFromHost", 5: "Program"})
    md.setEngineOptions([popef.Option("a", "1"), popef.Option("b", "2")])
    md.anchors().append(anchor)
    stream = io.BytesIO()
    writer = popef.Writer(stream)
    writer.writeMetadata(md)
    blob = writer.createExecutable("exe", False)
    blob.write(b"abc", 3)
    writer.close()
    reader = ours.Reader()
    reader.parse_bytes(stream.getvalue())
    assert reader.metadata() == [
        ours.Metadata(
            executable="exe",
            anchors=(
                ours.Anchor(
                    "x",
                    "h2d_x",
                    ours.TensorInfo(ours.DataType.F16, (2, 3, 4)),
                    (5,),
                    False,
                    ours.TensorType.INPUT,
                ),
            ),
            program_flow=ours.ProgramFlow(load=(0,), main=(5,)),
            programs_map={0: "WeightsFromHost", 5: "Program"},
            replication_factor=2,
            num_ipus=2,
            ipu_version=2,
            is_inference=True,
            device_iterations=8,
            engine_options=(ours.Option("a", "1"), ours.Option("b", "2")),
        )
    ]
    again = popef.Reader()
    again.parseStream(io.BytesIO(stream.getvalue()))
    assert again.metadata() == [md]


def test_blob_writer_writes_the_first_size_bytes():
    stream = io.BytesIO()
    writer = popef.Writer(stream)
    writer.writeMetadata(popef.Metadata._of(ours.Metadata(executable="e")))
    blob = writer.createExecutable("e")
    blob.write(b"abcdef", 4)
    blob.write("é")  # a str is written as UTF-8, as pybind11 takes a std::string
    blob.write(np.array([1, 2], np.uint16), 4)
    with pytest.raises(ours.WriterError, match="asked for 9 bytes but the data holds 3"):
        blob.write(b"xyz", 9)
    with pytest.raises(ours.WriterError, match="size in bytes >= 0, got -1"):
        blob.write(b"xyz", -1)
    with pytest.raises(ours.WriterError, match="got object"):
        blob.write(object(), 1)
    writer.close()
    reader = ours.Reader()
    reader.parse_bytes(stream.getvalue())
    assert reader.executables()[0].payload() == b"abcd" + "é".encode() + b"\x01\x00\x02\x00"


def test_popef_type_to_numpy_dtype_covers_every_type():
    for dtype in popef.DataType:
        np_dtype = popef.popefTypeToNumpyDType(dtype)
        assert np_dtype.itemsize == dtype.item_size
        assert np.zeros(2, np_dtype).dtype == np_dtype
    assert popef.popefTypeToNumpyDType(popef.DataType.F32) == np.float32
    assert popef.popefTypeToNumpyDType(popef.DataType.F8143) == np.uint8
    assert [t.name for t in popef.TensorType] == ["UNKNOWN", "INPUT", "OUTPUT"]
    assert [t.name for t in popef.DataType] == [
        "BOOL",
        "F8",
        "F16",
        "F32",
        "F64",
        "S8",
        "U8",
        "S16",
        "U16",
        "S32",
        "U32",
        "S64",
        "U64",
        "F8143",
        "F8152",
    ]


def test_a_forgotten_writer_still_writes_its_file(tmp_path):
    path = tmp_path / "forgotten.popef"
    writer = popef.Writer(str(path))
    writer.writeMetadata(popef.Metadata._of(ours.Metadata(executable="e")))
    writer.createExecutable("e").write(b"x", 1)
    del writer
    gc.collect()
    reader = ours.Reader()
    reader.parse_file(path)
    assert [m.name for m in reader.models()] == ["e"]


# ---- bad input: PopefError naming what and where


def test_garbage_is_refused_like_popart_expects(tmp_path):
    path = tmp_path / "cache.popef"
    path.write_bytes(b"This is not cache")
    with pytest.raises(ours.FormatError):
        popef.Reader().parseFile(str(path))
    with pytest.raises(ours.PopefError, match="cannot read"):
        popef.Reader().parseFile(str(tmp_path / "missing.popef"))


def test_bad_values_are_named_when_written():
    writer = popef.Writer(io.BytesIO())
    md = popef.Metadata()
    md.setExecutable("e")
    md.setReplicationFactor(-1)
    with pytest.raises(ours.PopefError, match="replication_factor must be in"):
        writer.writeMetadata(md)
    md.setReplicationFactor(1)
    md.anchors().append("not an anchor")
    with pytest.raises(ours.PopefError, match="Metadata.anchors must hold a popef.Anchor, got str"):
        writer.writeMetadata(md)
    with pytest.raises(ours.PopefError, match="writeMetadata\\(\\) must hold a popef.Metadata"):
        writer.writeMetadata({"executable": "e"})
    info = popef.TensorDataInfo("t", popef.TensorInfo(popef.DataType.F32, ["two"]))
    with pytest.raises(ours.PopefError, match="TensorInfo.shape must be an int, got str"):
        writer.createTensorData(info)
    with pytest.raises(ours.WriterError, match="non-empty name"):
        writer.createExecutable("")
    writer.close()


@pytest.mark.parametrize(
    "kind, ours_kind",
    [
        (popef.DataType, ours.DataType),
        (popef.TensorType, ours.TensorType),
        (popef.BlobType, ours.BlobType),
    ],
)
def test_enums_print_as_pybind11_enums_and_stand_for_ours(kind, ours_kind):
    """``print(info.dataType())`` shows ``DataType.F32``, as Graphcore's module prints it;
    the member is still equal to this library's, hashes as it does and converts to it."""
    assert list(kind.__members__) == list(ours_kind.__members__)
    for member in kind:
        mine = ours_kind[member.name]
        name = f"{kind.__name__}.{member.name}"
        assert (str(member), f"{member}", f"{member:>30}".strip()) == (name, name, name)
        assert repr(member) == f"<{name}: {int(mine)}>"
        assert member == mine == int(mine) and hash(member) == hash(mine)
        assert {mine: "found"}[member] == "found" and ours_kind(member) is mine
        assert kind(int(mine)) is member and kind[member.name] is member


def test_enums_read_back_as_graphcore_enums_and_feed_our_library(tmp_path):
    from popef.runtime import GraphBuilder

    path = tmp_path / "m.popef"
    g = GraphBuilder()  # a script mixing both APIs passes Graphcore's DataType to ours
    x = g.add_input("x", popef.DataType.F16, (2,))
    g.add_output(g.add_node("Relu", [x]), "y")
    g.save(path, executable_name="m")
    reader = popef.Reader()
    reader.parseFile(str(path))
    [md] = reader.metadata()
    anchor = md.anchors()[0]
    assert type(anchor.type()) is popef.TensorType and str(anchor.type()) == "TensorType.INPUT"
    assert type(anchor.tensorInfo().dataType()) is popef.DataType
    assert str(anchor.tensorInfo().dataType()) == "DataType.F16"
    info = popef.TensorInfo()
    info.setDataType(ours.DataType.S32)  # this library's member is taken and converted
    info.setShape([3])
    assert type(info.dataType()) is popef.DataType and info.sizeInBytes() == 12
    assert ours.TensorInfo(popef.DataType.F32, (2,)).dtype is ours.DataType.F32


def test_popef_type_to_numpy_dtype_refuses_what_is_not_a_type():
    for bad in (99, "F32", None, True):
        with pytest.raises(
            ours.PopefError, match="popefTypeToNumpyDType\\(\\) needs a popef.DataType"
        ):
            popef.popefTypeToNumpyDType(bad)
