"""The protobuf wire walker of popef/importers/wire.py against hostile bytes: varint and length
limits, forged self-references, and mutated files where the walker and the ordinary parse must
agree (the walk is an optimisation, never a second opinion)."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")

import popef
from popef.importers.onnx import convert
from popef.importers.source import load_source
from popef.importers.wire import (
    MIN_INLINE_BYTES,
    find_inline_weights,
    split_inline_weights,
)

from .test_hostile_onnx import refused
from .test_inline_weights import chain_model

WIDTH = MIN_INLINE_BYTES // 4 + 1


def _model():
    rng = np.random.default_rng(3)
    return chain_model([rng.standard_normal(WIDTH).astype(np.float32) for _ in range(2)])


def _raw_spans(data: bytes) -> list[tuple[int, int]]:
    found = find_inline_weights(data)
    assert found is not None
    spans = []
    for tensor in onnx.ModelProto.FromString(found.skeleton).graph.initializer:
        info = {e.key: e.value for e in tensor.external_data}
        spans.append((int(info["offset"]), int(info["offset"]) + int(info["length"])))
    return spans


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


@pytest.mark.parametrize(
    "data",
    [
        b"\x0b\x00",  # wire type 3 (start group)
        b"\x0c\x00",  # wire type 4 (end group)
        b"\x0e\x00",
        b"\x0f\x00",  # wire types 6 and 7 do not exist
        b"\x02\x00",  # field number 0
        b"\x80" * 10 + b"\x01",  # a tag varint of 11 bytes
        b"\x08" + b"\xff" * 10 + b"\x01",  # a value varint of 11 bytes
        b"\x3a" + _varint(2**64),  # the graph's length: 2**64
        b"\x3a" + _varint(2**63 - 1) + b"\x00",  # the graph's length runs past the end
        b"\x39" + b"\x00" * 7,  # a fixed64 cut short
        b"\x3d" + b"\x00" * 3,  # a fixed32 cut short
        b"\x08",  # a varint with no bytes
        b"\x08\x80",  # a varint cut short
    ],
)
def test_malformed_wire_bytes_give_up(data):
    assert find_inline_weights(data) is None
    assert split_inline_weights(data) is None


def test_ten_byte_varints_are_read():
    # field 1 (ir_version) as a 10-byte varint, then nothing to rewrite: None, not malformed
    assert find_inline_weights(b"\x08" + _varint(2**64 - 1)) is None
    model = _model().SerializeToString()
    found = find_inline_weights(b"\x08" + _varint(2**64 - 1) + model)
    assert found is not None and found.count == 2


@pytest.mark.parametrize(
    "extra",
    [
        {"offset": "abc", "length": "4"},
        {"offset": "-5"},
        {},
        {"offset": "0", "length": str(4 * WIDTH)},
    ],
)
def test_a_file_cannot_forge_a_reference_into_itself(tmp_path, extra):
    model = _model()
    tensor = model.graph.initializer[1]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="\x00inline")
    for key, value in extra.items():
        tensor.external_data.add(key=key, value=value)
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    refused(
        str(tmp_path / "m.onnx"),
        tmp_path,
        r"initializer 'w1': external data location '\\x00inline' is not a file name",
    )


def test_each_reading_has_its_own_self_location(tmp_path):
    (tmp_path / "m.onnx").write_bytes(_model().SerializeToString())
    first, second = load_source(str(tmp_path / "m.onnx")), load_source(str(tmp_path / "m.onnx"))
    assert first.inline_location and second.inline_location
    assert first.inline_location != second.inline_location


def _outcome(source):
    """What the importer makes of ``source``: its weights and nodes, or the error class."""
    try:
        graph = convert(source)
    except popef.PopefError:
        return "refused"
    return ({k: np.asarray(v).tobytes() for k, v in graph.weights.items()}, graph.nodes)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_mutated_structure_gives_what_the_ordinary_parse_gives(tmp_path, data):
    """Mutations of the bytes around the weights (tags, lengths, names, dims): the walker
    either gives up or gives a skeleton smaller than the file, in bounded memory; and the
    import from the file (walked) agrees with the import from the bytes (parsed whole)."""
    original = _model().SerializeToString()
    spans = _raw_spans(original)
    structure = [i for i in range(len(original)) if not any(a <= i < b for a, b in spans)]
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.sampled_from(structure))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(MIN_INLINE_BYTES, len(raw)))]
    mutated = bytes(raw)
    tracemalloc.start()
    try:
        found = find_inline_weights(mutated)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 + 2 * len(mutated)  # a small multiple of the file, whatever it holds
    if found is not None:
        assert len(found.skeleton) <= len(mutated) - found.count * (MIN_INLINE_BYTES - 128)
    path = tmp_path / "m.onnx"
    path.write_bytes(mutated)
    try:
        walked = _outcome(str(path))
    except Exception as exc:  # noqa: BLE001 - anything but a PopefError fails the test
        pytest.fail(f"not a PopefError: {type(exc).__name__}: {exc}")
    assert walked == _outcome(mutated)
    out = io.BytesIO()
    if walked != "refused":
        popef.import_onnx(str(path), out)
