"""Decoding is linear and cheap, whatever the bytes (issue 11, item 7; docs/format.md §2.3).

Hostile infos and graph programs made of the smallest items the encoding allows: decoding
them must stay within a few Python calls per item and ten times the input in memory. No
wall-clock bounds: calls are counted, memory is traced.
"""

from __future__ import annotations

import struct
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from construct import ConstructError

import popef
from popef.format import codec
from popef.format import graph as graph_schema
from popef.format import metadata as metadata_schema
from popef.format.codec import Location
from popef.format.infos import Codec
from popef.format.metadata import METADATA
from popef.runtime import program as prog

from .helpers import read_bytes
from .test_hostile import blob


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def string(text: str) -> bytes:
    data = text.encode()
    return u32(len(data)) + data


_MD_HEAD = string("m") + u32(1) * 3 + b"\x00\x01" + struct.pack("<Q", 1) + u32(1) + string("")


def metadata_with(*, options: int = 0, anchors: int = 0, programs: int = 0) -> bytes:
    """Metadata of the smallest items: empty options, anchors and program names."""
    return (
        _MD_HEAD
        + u32(options)
        + (string("") + string("")) * options
        + u32(0)
        + u32(0) * 3
        + u32(programs)
        + b"".join(u32(i) + string("") for i in range(programs))
        + u32(anchors)
        + (string("") + string("") + b"\x03" + u32(0) + u32(0) + b"\0\0") * anchors
    )


_PREAMBLE = prog.GRAPH_MAGIC + struct.pack("<HH", *prog.GRAPH_VERSION)


def graph_with(
    *, steps: int = 0, nodes: int = 0, attributes: int = 0, per_node: int = 1000
) -> bytes:
    """One program of the smallest steps, nodes and attributes (``per_node`` at most a node)."""
    step = b"\x00" + string("") + string("t")
    node = (
        b"\x01" + string("Relu") + string("") + u32(1) + string("x") + u32(1) + string("y") + u32(0)
    )
    counts = [min(per_node, attributes - start) for start in range(0, attributes, per_node)]
    attribute_nodes = b"".join(
        b"\x01"
        + string("Relu")
        + string("")
        + u32(0)
        + u32(0)
        + u32(count)
        + b"".join(string(f"{i:x}") + b"\x02" + struct.pack("<q", i) for i in range(count))
        for count in counts
    )
    return (
        _PREAMBLE
        + u32(1)
        + u32(5)
        + string("")
        + u32(steps + nodes + len(counts))
        + step * steps
        + node * nodes
        + attribute_nodes
    )


def decode_metadata(data: bytes) -> popef.Metadata:
    return codec.decode_metadata(data, Location("<test>", 0, 0))


# (make n items, decode, most peak memory per input byte)
CASES = {
    "anchors": (lambda n: metadata_with(anchors=n), decode_metadata, 10),
    "options": (lambda n: metadata_with(options=n), decode_metadata, 10),
    # an int key and a str per 8 bytes, in a dict: Python's objects, not copies, set the bound
    "program names": (lambda n: metadata_with(programs=n), decode_metadata, 24),
    "steps": (lambda n: graph_with(steps=n), prog.decode_program, 10),
    "nodes": (lambda n: graph_with(nodes=n), prog.decode_program, 10),
    "attributes": (lambda n: graph_with(attributes=n), prog.decode_program, 24),
}


def count_calls(function, *args) -> int:
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_decoding_takes_a_few_calls_per_item(case):
    # construct took hundreds of calls per item (25 s for 9.5 MB of metadata)
    make, decode, _ = CASES[case]
    small, large = count_calls(decode, make(1000)), count_calls(decode, make(2000))
    assert (large - small) / 1000 <= 40


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_decoding_peak_memory_is_a_small_multiple_of_the_input(case):
    make, decode, bound = CASES[case]
    data = make(20000)
    tracemalloc.start()
    try:
        decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= bound * len(data), f"{peak / len(data):.1f} times the input"


def test_both_decoders_refuse_every_truncation_alike():
    """The cursor decoder and the construct schema (the specification) agree on every prefix."""
    md = popef.Metadata(
        "m",
        anchors=(popef.Anchor("a", "h", popef.TensorInfo(3, (2, 3)), (0, 5), True, 1),),
        engine_options=(popef.Option("k", "v"),),
        programs_map={5: "Program"},
    )
    data = codec.encode_metadata(md)
    assert decode_metadata(data) == md
    for end in range(len(data)):
        with pytest.raises(popef.FormatError):
            decode_metadata(data[:end])
        with pytest.raises(ConstructError):
            METADATA.parse(data[:end])


def test_errors_name_the_field_and_offset():
    data = metadata_with(anchors=3)
    handle = len(data) - 2 * 19 + 4  # the second anchor's handle length
    with pytest.raises(popef.FormatError) as info:
        decode_metadata(data[:handle] + u32(50) + data[handle + 4 :])
    assert info.value.offset == handle + 4
    assert info.value.field == "anchors.[1].handle"
    assert "string of 50 bytes but" in str(info.value)


# -- inflation --------------------------------------------------------------------------------


def compressed_executable(claimed: int, payload: bytes) -> popef.Reader:
    return read_bytes(blob(0, codec.encode_executable_info("m", Codec.ZLIB, claimed), payload))


def test_inflation_is_bounded_by_a_limit_before_anything_is_inflated():
    bomb = zlib.compress(bytes(64 << 20), 9)  # 64 KiB that inflate to 64 MiB
    executable = compressed_executable(64 << 20, bomb).executables()[0]
    tracemalloc.start()
    try:
        with pytest.raises(
            popef.FormatError,
            match="claims 67108864 bytes once decompressed, over the limit of 1048576",
        ) as info:
            executable.payload(max_size=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(bomb) + (1 << 20)
    assert info.value.field == "uncompressed_size"
    assert len(executable.payload()) == 64 << 20  # within the default limit


def test_the_reader_limit_is_documented():
    from popef.reader import MAX_EXECUTABLE_SIZE

    assert MAX_EXECUTABLE_SIZE == 4 << 30
    assert prog.MAX_GRAPH_PROGRAM_SIZE == 16 << 20


def test_a_graph_program_over_its_limit_is_refused(monkeypatch):
    monkeypatch.setattr(prog, "MAX_GRAPH_PROGRAM_SIZE", 100)
    with pytest.raises(
        popef.FormatError, match="graph program of 1012 bytes exceeds the limit of 100"
    ):
        prog.decode_program(_PREAMBLE + u32(0) + bytes(996))


def test_the_runtime_inflates_no_more_than_a_graph_program_may_hold(monkeypatch):
    from popef.runtime import loader

    graph = prog.encode_program(prog.GraphProgram((prog.Program(5, "Program"),)))
    data = blob(
        1, codec.encode_metadata(popef.Metadata("m", program_flow=popef.ProgramFlow(main=(5,))))
    ) + blob(0, codec.encode_executable_info("m", Codec.ZLIB, len(graph)), zlib.compress(graph))
    model = read_bytes(data).models()[0]
    loader.load_model(model)  # within the limit
    monkeypatch.setattr(loader, "MAX_GRAPH_PROGRAM_SIZE", len(graph) - 1)
    with pytest.raises(popef.FormatError, match="over the limit"):
        loader.load_model(model)


# -- shapes of empty tensors (issue 11, item 10) -----------------------------------------------


def test_an_empty_tensor_whose_other_dimensions_overflow_is_refused():
    with pytest.raises(
        popef.PopefError,
        match=r"TensorInfo.shape: \[0, 4611686018427387904\] x "
        r"F32 spans more than 2\*\*63-1 bytes",
    ):
        popef.TensorInfo(popef.DataType.F32, (0, 2**62))
    with pytest.raises(popef.PopefError, match="FeedDataInfo.num_items"):
        popef.FeedDataInfo("f", popef.TensorInfo(popef.DataType.U8, (0, 2**62)), 2)


def test_such_a_shape_in_a_file_is_a_format_error():
    info = codec.TENSOR_DATA_INFO.build(
        {"name": "w", "tensor_info": {"dtype": int(popef.DataType.F32), "shape": [0, 2**62]}}
    )
    with pytest.raises(popef.FormatError, match="spans more than") as error:
        read_bytes(blob(2, info)).tensors()
    assert error.value.blob_index == 0


@pytest.mark.parametrize(
    "dtype, shape",
    [
        (popef.DataType.U8, (0, 2**63 - 1)),
        (popef.DataType.F64, (2**56, 0, 7)),
        (popef.DataType.F32, (0,)),
    ],
)
def test_empty_tensors_within_the_limit_work_end_to_end(tmp_path, dtype, shape):
    path = tmp_path / "empty.popef"
    array = np.empty(shape, dtype.numpy_dtype)
    with popef.Writer(path) as writer:
        writer.write_tensor("w", array)
    with popef.Reader() as reader:
        reader.parse_file(path)
        (tensor,) = reader.tensors()
        assert tensor.info.tensor_info.shape == shape
        assert tensor.data().shape == shape and tensor.data().size == 0


@pytest.mark.parametrize(
    "make, field, limit",
    [
        (lambda n: metadata_with(options=n), "engine_options", metadata_schema.MAX_OPTIONS),
        (lambda n: metadata_with(programs=n), "programs_map", metadata_schema.MAX_PROGRAM_NAMES),
        (lambda n: graph_with(attributes=n, per_node=n), "attributes", graph_schema.MAX_ATTRIBUTES),
    ],
    ids=["options", "program names", "attributes"],
)
def test_small_maps_have_count_limits(make, field, limit):
    """Items that cost far more decoded than encoded are a handful in real models: their
    counts are bounded (docs/format.md §2.3), so their memory is too."""
    decode = prog.decode_program if field == "attributes" else decode_metadata
    decode(make(limit))
    with pytest.raises(
        popef.FormatError, match=f"count {limit + 1} exceeds the limit of {limit}"
    ) as info:
        decode(make(limit + 1))
    assert info.value.field.startswith(field) or field in info.value.field


def test_the_fast_anchor_reader_keeps_the_program_list_limit(monkeypatch):
    """The one-pass anchor reader checks every count the schema checks (here: a limit of 4
    programs, patched, where the real one needs 64 MiB of data to reach)."""
    monkeypatch.setattr(codec, "MAX_ARRAY_ITEMS", 4)
    anchor = popef.Anchor("a", "h", popef.TensorInfo(3, ()), tuple(range(5)))
    data = codec.encode_metadata(popef.Metadata("m", anchors=(anchor,)))
    with pytest.raises(popef.FormatError) as info:
        decode_metadata(data)
    assert info.value.field.startswith("anchors.[0]")
