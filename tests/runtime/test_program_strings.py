"""The STRINGS attribute kind (graph program version 1.1): round trips, the version a program is
written with, and hostile bytes."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popef.errors import FormatError, PopefError
from popef.format.graph import GRAPH_MAGIC, GRAPH_PROGRAM
from popef.runtime.ops.base import Attr
from popef.runtime.program import (
    Attribute,
    AttributeKind,
    GraphProgram,
    Node,
    Program,
    decode_program,
    encode_program,
)

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def program_with(*attributes: Attribute) -> GraphProgram:
    return GraphProgram(
        (Program(5, "Program", (Node("LSTM", "rec", ("x", "w", "r"), ("y",), attributes),)),)
    )


@SETTINGS
@given(st.lists(st.text(max_size=12), max_size=6))
def test_strings_round_trip_through_both_decoders(values):
    program = program_with(Attribute("activations", AttributeKind.STRINGS, values))
    data = encode_program(program)
    decoded = decode_program(data)
    assert decoded == program
    assert decoded.get_program(5).nodes()[0].get_attribute("activations").value == tuple(values)
    assert encode_program(decoded) == data
    # the construct schema (docs/format.md §9) reads the same bytes
    parsed = GRAPH_PROGRAM.parse(data)
    [attribute] = parsed.programs[0].steps[0].body.attributes
    assert (attribute.kind, list(attribute.value)) == (8, list(values))


def test_strings_are_inferred_and_given_to_ops_as_lists():
    node = Node("Op", "n", (), ("y",), {"names": ["Sigmoid", "Tanh"]})
    [attribute] = node.attributes
    assert attribute.kind is AttributeKind.STRINGS
    assert node.attribute_values() == {"names": ["Sigmoid", "Tanh"]}
    assert Attribute.of("a", ("x",), "strings").kind is AttributeKind.STRINGS
    assert Attr("strings", None).kind == "strings"


@pytest.mark.parametrize(
    "value, message",
    [
        ("Tanh", "must be a sequence, got str"),
        (["Tanh", 3], "must hold str items, got int"),
        ([b"Tanh"], "must hold str items, got bytes"),
    ],
)
def test_strings_hold_only_str(value, message):
    with pytest.raises(PopefError, match=message):
        Attribute("a", AttributeKind.STRINGS, value)


def test_a_program_is_written_with_the_lowest_minor_version_that_holds_it():
    plain = encode_program(program_with(Attribute("hidden_size", AttributeKind.INT, 3)))
    assert struct.unpack_from("<HH", plain, 8) == (1, 0)  # older readers still read it
    strings = encode_program(
        program_with(Attribute("activations", AttributeKind.STRINGS, ("Tanh",)))
    )
    assert struct.unpack_from("<HH", strings, 8) == (1, 1)


def _strings_payload() -> bytes:
    return encode_program(program_with(Attribute("acts", AttributeKind.STRINGS, ("ab", "c"))))


def test_the_exact_bytes_of_a_strings_attribute():
    data = _strings_payload()
    at = data.index(b"acts") - 4
    assert data[at:] == (
        struct.pack("<I", 4)
        + b"acts"
        + b"\x08"
        + struct.pack("<I", 2)
        + struct.pack("<I", 2)
        + b"ab"
        + struct.pack("<I", 1)
        + b"c"
    )


def test_a_1_0_reader_refuses_strings_by_their_kind():
    # what a reader of version 1.0 does with a 1.1 program: kind 8 is not one of its kinds.
    # This library's readers refuse every kind they do not know the same way (here 9).
    data = bytearray(_strings_payload())
    at = data.index(b"acts") + len(b"acts")
    assert data[at] == 8
    data[at] = 9
    with pytest.raises(FormatError, match="unknown attribute kind 9"):
        decode_program(bytes(data))


@pytest.mark.parametrize(
    "patch, message",
    [
        # the item count claims more strings than the bytes can hold
        (
            lambda d, at: d[: at + 1] + struct.pack("<I", 1000) + d[at + 5 :],
            "count 1000 needs at least",
        ),
        (lambda d, at: d[: at + 1] + struct.pack("<I", 2**31) + d[at + 5 :], "exceeds the limit"),
        # the first item's length runs past the end
        (
            lambda d, at: d[: at + 5] + struct.pack("<I", 1 << 20) + d[at + 9 :],
            "string of 1048576 bytes",
        ),
        # an item that is not UTF-8
        (lambda d, at: d[: at + 9] + b"\xff\xfe" + d[at + 11 :], "not valid UTF-8"),
    ],
)
def test_hostile_strings_name_the_problem(patch, message):
    data = _strings_payload()
    at = data.index(b"acts") + len(b"acts")
    with pytest.raises(FormatError, match=message) as info:
        decode_program(patch(data, at), name="m")
    assert "in executable 'm'" in str(info.value)


def test_a_huge_strings_count_allocates_nothing():
    data = _strings_payload()
    at = data.index(b"acts") + len(b"acts")
    lying = data[: at + 1] + struct.pack("<I", (1 << 24) - 1) + bytes(64)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            decode_program(lying)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_strings_payloads_raise_only_popef_errors(data):
    payload = bytearray(_strings_payload())
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_program(bytes(payload))
    except PopefError:
        pass


def test_every_truncation_fails_cleanly():
    data = _strings_payload()
    for end in range(len(data)):
        with pytest.raises(PopefError):
            decode_program(data[:end])
    assert data.startswith(GRAPH_MAGIC)
