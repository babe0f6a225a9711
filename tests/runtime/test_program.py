"""The graph program: typed dataclasses, encoding round trips and hostile payloads."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import popef
from popef.errors import (
    ExecutionError,
    FormatError,
    PopefError,
    UnsupportedVersionError,
)
from popef.runtime.program import (
    GRAPH_MAGIC,
    Attribute,
    AttributeKind,
    DeviceToHost,
    GraphProgram,
    HostToDevice,
    Node,
    Program,
    decode_program,
    encode_program,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.text(max_size=8)
tensor_names = st.text(min_size=1, max_size=8)
int64 = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(allow_nan=False, width=64)
attribute_values = {
    AttributeKind.INT: int64,
    AttributeKind.FLOAT: floats,
    AttributeKind.STRING: names,
    AttributeKind.INTS: st.lists(int64, max_size=4).map(tuple),
    AttributeKind.FLOATS: st.lists(floats, max_size=4).map(tuple),
    AttributeKind.STRINGS: st.lists(names, max_size=4).map(tuple),
}


@st.composite
def attributes(draw):
    keys = draw(st.lists(tensor_names, max_size=4, unique=True))
    result = []
    for key in keys:
        kind = draw(st.sampled_from(list(AttributeKind)))
        result.append(Attribute(key, kind, draw(attribute_values[kind])))
    return tuple(result)


steps = st.one_of(
    st.builds(HostToDevice, names, tensor_names),
    st.builds(DeviceToHost, tensor_names, names),
    st.builds(
        Node,
        tensor_names,
        names,
        st.lists(names, max_size=4).map(tuple),
        st.lists(names, max_size=3).map(tuple),
        attributes(),
    ),
)


@st.composite
def graph_programs(draw):
    indices = draw(st.lists(st.integers(0, 2**32 - 1), max_size=4, unique=True))
    return GraphProgram(
        tuple(Program(i, draw(names), tuple(draw(st.lists(steps, max_size=5)))) for i in indices)
    )


def sample() -> GraphProgram:
    return GraphProgram(
        (
            Program(0, "WeightsFromHost", (HostToDevice("h2d_w", "w"),)),
            Program(
                5,
                "Program",
                (
                    HostToDevice("h2d_x", "x"),
                    Node(
                        "Gemm",
                        "fc",
                        ("x", "w", ""),
                        ("y",),
                        {"transB": 1, "alpha": 0.5, "perm": [1, 0], "scales": [1.5], "mode": "x"},
                    ),
                    DeviceToHost("y", "anchor_d2h_y"),
                ),
            ),
        )
    )


# -- round trips -----------------------------------------------------------------------------


@SETTINGS
@given(graph_programs())
def test_decode_of_encode_gives_the_same_program_and_bytes(program):
    data = encode_program(program)
    decoded = decode_program(data, name="m")
    assert decoded == program
    assert encode_program(decoded) == data


def test_the_encoding_starts_with_magic_and_version():
    data = encode_program(sample())
    assert data[:8] == GRAPH_MAGIC
    assert struct.unpack_from("<HH", data, 8) == (1, 0)
    assert struct.unpack_from("<I", data, 12) == (2,)  # two programs


def test_attribute_kinds_are_inferred_and_normalised():
    node = Node(
        "Op",
        "n",
        (),
        ("y",),
        {"i": 3, "f": 2.0, "s": "a", "is": [1, 2], "fs": [1, 2.5], "empty": [], "b": True},
    )
    kinds = {a.name: a.kind for a in node.attributes}
    assert kinds == {
        "i": AttributeKind.INT,
        "f": AttributeKind.FLOAT,
        "s": AttributeKind.STRING,
        "is": AttributeKind.INTS,
        "fs": AttributeKind.FLOATS,
        "empty": AttributeKind.INTS,
        "b": AttributeKind.INT,
    }
    assert node.attribute_values() == {
        "i": 3,
        "f": 2.0,
        "s": "a",
        "is": [1, 2],
        "fs": [1.0, 2.5],
        "empty": [],
        "b": 1,
    }
    assert Attribute.of("alpha", 1, "float").value == 1.0
    assert Attribute.of("alpha", 1, "float").kind is AttributeKind.FLOAT


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Node("", "n"), "Node.op_type must not be empty"),
        (lambda: Node("Relu", "n", "x"), "must be a sequence of str"),
        (
            lambda: Node("Relu", "n", (), (), (Attribute("a", 2, 1), Attribute("a", 2, 2))),
            "attribute 'a' twice",
        ),
        (lambda: Attribute("a", AttributeKind.INT, 2**63), "does not fit in 64 bits"),
        (lambda: Attribute("a", AttributeKind.FLOAT, "x"), "must be a float"),
        (lambda: Attribute("a", 9, 1), "unknown kind 9"),
        (lambda: Attribute.of("a", {"x": 1}), "cannot store a value of type dict"),
        (lambda: Program(-1, "p"), "Program.index must be an int"),
        (lambda: GraphProgram((Program(1, "a"), Program(1, "b"))), "program 1 is defined twice"),
        (lambda: HostToDevice("h", ""), "HostToDevice.tensor must not be empty"),
    ],
)
def test_invalid_values_are_refused(make, message):
    with pytest.raises(PopefError, match=message):
        make()


def test_get_program():
    program = sample()
    assert program.indices == (0, 5)
    assert program.get_program(5).name == "Program"
    assert program.has_program(0) and not program.has_program(7)
    with pytest.raises(KeyError):
        program.get_program(7)


# -- hostile payloads ------------------------------------------------------------------------


def test_a_poplar_executable_is_not_a_graph_program():
    with pytest.raises(
        ExecutionError,
        match=r"executable 'ir-hash' is not a graph program: it "
        r"starts with 7f 45 4c 46",
    ):
        decode_program(b"\x7fELF\x02\x01\x01\x00" + bytes(64), name="ir-hash")
    with pytest.raises(ExecutionError, match="starts with nothing"):
        decode_program(b"", name="m")


def test_an_unknown_major_version_is_named():
    data = bytearray(encode_program(sample()))
    data[8:10] = (2).to_bytes(2, "little")
    with pytest.raises(UnsupportedVersionError, match=r"graph program version 2\.0"):
        decode_program(bytes(data), name="m")


def test_a_newer_minor_version_may_append_bytes():
    data = bytearray(encode_program(sample()))
    with pytest.raises(FormatError, match="3 unexpected bytes after it"):
        decode_program(bytes(data) + b"xyz")
    data[10:12] = (2).to_bytes(2, "little")  # newer than the 1.1 this library reads
    assert decode_program(bytes(data) + b"xyz") == sample()


@pytest.mark.parametrize(
    "patch, message",
    [
        # the program count claims more programs than the bytes can hold
        (lambda d: d[:12] + struct.pack("<I", 1000) + d[16:], "count 1000 needs at least"),
        (lambda d: d[:12] + struct.pack("<I", 2**31) + d[16:], "exceeds the limit"),
        # the first step's kind byte (program 0: index, name 'WeightsFromHost', 1 step)
        (
            lambda d: d[: 16 + 4 + 4 + 15 + 4] + b"\x09" + d[16 + 4 + 4 + 15 + 4 + 1 :],
            "unknown step kind 9",
        ),
    ],
)
def test_malformed_payloads_name_the_problem(patch, message):
    data = encode_program(sample())
    with pytest.raises(FormatError, match=message) as info:
        decode_program(patch(data), name="m")
    assert "in executable 'm'" in str(info.value)


def test_an_unknown_attribute_kind_is_named():
    data = encode_program(sample())
    at = data.index(b"transB") + len(b"transB")
    with pytest.raises(FormatError, match="unknown attribute kind 4"):
        decode_program(data[:at] + b"\x04" + data[at + 1 :])


def test_every_truncation_fails_cleanly():
    data = encode_program(sample())
    for end in range(len(data)):
        with pytest.raises(PopefError):
            decode_program(data[:end])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_mutations_raise_only_popef_errors(data):
    payload = bytearray(encode_program(sample()))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(payload) - 1))
        payload[position] = data.draw(st.integers(0, 255))
    try:
        decode_program(bytes(payload))
    except PopefError:
        pass


def test_huge_claims_allocate_nothing():
    # a string length of 1 MiB and an array of 16 Mi items, both past the end of the data
    lying = (
        GRAPH_MAGIC
        + struct.pack("<HHI", 1, 0, 1)
        + struct.pack("<I", 0)
        + struct.pack("<I", 1 << 20)
    )
    lying_steps = (
        GRAPH_MAGIC
        + struct.pack("<HHI", 1, 0, 1)
        + struct.pack("<II", 0, 0)
        + struct.pack("<I", 1 << 24)
        + bytes(32)
    )
    tracemalloc.start()
    try:
        for payload in (lying, lying_steps):
            with pytest.raises(FormatError):
                decode_program(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_encoding_limits_are_reported():
    huge = Program(0, "x" * ((1 << 20) + 1))
    with pytest.raises(FormatError, match="cannot encode graph program"):
        encode_program(GraphProgram((huge,)))
    with pytest.raises(PopefError, match="needs a GraphProgram"):
        encode_program("nope")  # type: ignore[arg-type]


def test_the_public_api_reexports_nothing_new():
    # the runtime's program module is reached as popef.runtime.program (or its documented
    # re-export popef.program), not from popef's namespace
    assert not hasattr(popef, "GraphProgram")


def test_popef_program_reexports_the_runtime_program_module():
    import popef.program
    import popef.runtime.program

    assert popef.program.__all__ == popef.runtime.program.__all__
    for name in popef.runtime.program.__all__:
        assert getattr(popef.program, name) is getattr(popef.runtime.program, name)


def test_the_example_of_docs_format_md_section_9_3():
    program = GraphProgram(
        (
            Program(
                5,
                "Program",
                (
                    HostToDevice("h2d_x", "x"),
                    Node("Relu", "relu", ("x",), ("y",)),
                    DeviceToHost("y", "anchor_d2h_y"),
                ),
            ),
        )
    )
    expected = bytes.fromhex(
        "50 6f 70 45 46 67 70 00 01 00 00 00"  # magic, version 1.0
        "01 00 00 00"  # 1 program
        "05 00 00 00 07 00 00 00" + b"Program".hex() + "03 00 00 00"
        "00 05 00 00 00"
        + b"h2d_x".hex()
        + "01 00 00 00"
        + b"x".hex()
        + "01 04 00 00 00"
        + b"Relu".hex()
        + "04 00 00 00"
        + b"relu".hex()
        + "01 00 00 00 01 00 00 00"
        + b"x".hex()
        + "01 00 00 00 01 00 00 00"
        + b"y".hex()
        + "00 00 00 00"
        + "02 01 00 00 00"
        + b"y".hex()
        + "0c 00 00 00"
        + b"anchor_d2h_y".hex()
    )
    assert encode_program(program) == expected
    assert len(expected) == 111
    assert [expected.index(bytes([k]), at) for k, at in ((0, 0x23), (1, 0x32), (2, 0x59))] == [
        0x23,
        0x32,
        0x59,
    ]  # the step offsets the document shows
