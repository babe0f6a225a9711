"""The fast decoders of the reader agree with the construct schemas, the specification.

Opening a file reads its headers a window at a time and decodes tensor and feed infos with a
few ``struct`` calls (``popef.format.codec.fast_tensor_data_info``); these property tests
check both against the schemas on valid bytes, on mutated bytes and on arbitrary bytes.
"""

from __future__ import annotations

import io

import construct as c
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import popef
from popef import format as fmt
from popef.format import codec
from popef.types import FeedDataInfo, TensorDataInfo, TensorInfo

from . import strategies


def _by_schema(schema, data: bytes, convert):
    """What the schema makes of ``data`` taken entirely: a typed value, or None when it
    refuses the bytes (an error, trailing bytes or a value the dataclasses refuse)."""
    stream = io.BytesIO(data)
    try:
        container = schema.parse_stream(stream)
    except c.ConstructError:
        return None
    if stream.tell() != len(data):
        return None
    try:
        return convert(container)
    except popef.PopefError:
        return None


def _tensor_info(ct) -> TensorInfo:
    return TensorInfo(ct.dtype, tuple(ct.shape))


def tensor_data_by_schema(data: bytes) -> TensorDataInfo | None:
    return _by_schema(
        fmt.TENSOR_DATA_INFO, data, lambda ct: TensorDataInfo(ct.name, _tensor_info(ct.tensor_info))
    )


def feed_data_by_schema(data: bytes) -> FeedDataInfo | None:
    return _by_schema(
        fmt.FEED_DATA_INFO,
        data,
        lambda ct: FeedDataInfo(ct.name, _tensor_info(ct.tensor_info), ct.num_items),
    )


def _tensor_bytes(name: str, info: TensorInfo) -> bytes:
    return fmt.TENSOR_DATA_INFO.build(
        {"name": name, "tensor_info": {"dtype": int(info.dtype), "shape": list(info.shape)}}
    )


@st.composite
def mutated(draw, encoded: bytes) -> bytes:
    """``encoded`` with a few bytes changed, cut short or extended."""
    data = bytearray(encoded)
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=4)) if draw(st.booleans()) else bytes(data)


@settings(max_examples=300, deadline=None)
@given(strategies.names, strategies.tensor_infos)
def test_the_fast_tensor_info_decoder_gives_the_schemas_values(name, info):
    data = _tensor_bytes(name, info)
    decoded = codec.fast_tensor_data_info(data)
    assert decoded == tensor_data_by_schema(data) == TensorDataInfo(name, info)


@settings(max_examples=500, deadline=None)
@given(st.data(), strategies.names, strategies.tensor_infos)
def test_the_fast_tensor_info_decoder_accepts_exactly_what_the_schema_accepts(data, name, info):
    raw = data.draw(st.one_of(mutated(_tensor_bytes(name, info)), st.binary(max_size=64)))
    assert codec.fast_tensor_data_info(raw) == tensor_data_by_schema(raw)


@settings(max_examples=500, deadline=None)
@given(st.data(), strategies.names, strategies.tensor_infos, st.integers(0, 2**64 - 1))
def test_the_fast_feed_info_decoder_accepts_exactly_what_the_schema_accepts(
    data, name, info, items
):
    encoded = fmt.FEED_DATA_INFO.build(
        {
            "name": name,
            "tensor_info": {"dtype": int(info.dtype), "shape": list(info.shape)},
            "num_items": items,
        }
    )
    raw = data.draw(st.one_of(st.just(encoded), mutated(encoded), st.binary(max_size=64)))
    assert codec.fast_feed_data_info(raw) == feed_data_by_schema(raw)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\0\0\0w",  # a name, then nothing
        b"\x01\0\0\0\xff" + bytes([int(popef.DataType.F32)]) + b"\0\0\0\0",  # not UTF-8
        b"\x01\0\0\0w\xee\0\0\0\0",  # an unknown data type
        b"\x01\0\0\0w" + bytes([int(popef.DataType.F32)]) + b"\x21\0\0\0",  # rank 33
        b"\xff\xff\xff\xffw",  # a name longer than the data
    ],
)
def test_irregular_infos_are_left_to_the_decoder_that_names_the_field(data):
    assert codec.fast_tensor_data_info(data) is None
    with pytest.raises(popef.FormatError, match="bad tensor data info"):
        codec.decode_tensor_data_info(data, codec.Location("<test>", 0, 0))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0, 16, 1000, 20_000, 70_000]), min_size=1, max_size=12))
def test_headers_read_a_window_at_a_time_agree_with_the_schema(sizes):
    """Small and large blobs in any order: the windows of headers end anywhere, and every
    blob's fields are what the header schema reads at its offset."""
    buffer = io.BytesIO()
    with popef.Writer(buffer) as writer:
        for i, size in enumerate(sizes):
            writer.write_tensor(f"t{i}", np.full(size, i, np.uint8))
    data = buffer.getvalue()
    for parse in ("parse_bytes", "parse_stream"):
        reader = popef.Reader()
        getattr(reader, parse)(data if parse == "parse_bytes" else io.BytesIO(data))
        blobs = reader.blobs()
        assert [b.offset for b in blobs] == _offsets(data)
        for blob in blobs:
            header = fmt.HEADER.parse(data[blob.offset : blob.offset + fmt.HEADER_SIZE])
            assert (
                blob.size,
                int(blob.type),
                blob.version,
                blob.info_size,
                blob.payload_size,
                blob.checksum,
            ) == (
                header.total_size,
                header.blob_type,
                header.version,
                header.info_size,
                header.payload_size,
                header.checksum,
            )
        assert [t.name for t in reader.tensors()] == [f"t{i}" for i in range(len(sizes))]
        for tensor, size in zip(reader.tensors(), sizes):
            assert tensor.read().shape == (size,)


def _offsets(data: bytes) -> list[int]:
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += fmt.HEADER.parse(data[offset : offset + fmt.HEADER_SIZE]).total_size
    return offsets


def test_blobs_stay_frozen():
    buffer = io.BytesIO()
    with popef.Writer(buffer) as writer:
        writer.write_tensor("w", np.zeros(2, np.float32))
    reader = popef.Reader()
    reader.parse_bytes(buffer.getvalue())
    with pytest.raises(AttributeError):
        reader.blobs()[0].size = 0  # type: ignore[misc]
