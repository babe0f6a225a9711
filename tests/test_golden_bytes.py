"""Golden bytes: any change of the layout shows up as a diff of a committed file."""

from __future__ import annotations

import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import popef
from popef import format as fmt

from . import strategies
from .helpers import minimal_model_bytes, read_bytes

GOLDEN = Path(__file__).parent / "data" / "minimal.popef"


def test_minimal_file_matches_golden_bytes():
    assert minimal_model_bytes() == GOLDEN.read_bytes()


def test_golden_header_fields_as_documented():
    data = GOLDEN.read_bytes()
    # docs/format.md §8: metadata blob of 128 bytes, then the executable blob
    assert data[:8] == b"\x89PopEF\r\n"
    assert data[8:16] == b"1.0\0\0\0\0\0"
    assert int.from_bytes(data[16:24], "little") == 128
    assert int.from_bytes(data[24:26], "little") == popef.BlobType.METADATA == 1
    info_size = int.from_bytes(data[28:32], "little")
    assert int.from_bytes(data[32:40], "little") == 0  # no payload
    assert int.from_bytes(data[40:44], "little") == zlib.crc32(data[48:128])
    assert data[48:52] == b"\x01\0\0\0" and data[52:53] == b"m"  # executable name "m"
    assert not any(data[48 + info_size : 128])  # zero padding
    assert data[128:136] == fmt.MAGIC
    assert int.from_bytes(data[128 + 24 : 128 + 26], "little") == popef.BlobType.POPLAR_EXECUTABLE
    assert len(data) == 192


def test_fast_header_agrees_with_the_schema():
    data = GOLDEN.read_bytes()
    for blob in read_bytes(data).blobs():
        parsed = fmt.HEADER.parse(data[blob.offset : blob.offset + fmt.HEADER_SIZE])
        fast = dict(zip(fmt.HEADER_FIELDS, fmt.FAST_HEADER.unpack_from(data, blob.offset)))
        fast["version"] = fast["version"].rstrip(b"\0").decode()
        assert {k: parsed[k] for k in fmt.HEADER_FIELDS} == fast


@settings(max_examples=80, deadline=None)
@given(strategies.names, strategies.tensor_infos, st.integers(0, 2**40))
def test_generated_info_encoders_agree_with_the_schemas(name, info, items):
    from popef.format import FEED_DATA_INFO, TENSOR_DATA_INFO, codec

    tensor = popef.TensorDataInfo(name, info)
    shape = {"dtype": int(info.dtype), "shape": list(info.shape)}
    assert codec.encode_tensor_data_info(tensor) == TENSOR_DATA_INFO.build(
        {"name": name, "tensor_info": shape}
    )
    if not info.size_in_bytes:  # empty items of huge other dimensions: the span must fit
        items = min(items, 1)
    feed = popef.FeedDataInfo(name, info, items)
    assert codec.encode_feed_data_info(feed) == FEED_DATA_INFO.build(
        {"name": name, "tensor_info": shape, "num_items": items}
    )


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=5000), st.integers(0, 2**32 - 1))
def test_checksum_is_zlibs_crc32(data, start):
    import zlib

    from popef.format.checksum import crc32

    assert crc32(data, start) == zlib.crc32(data, start)
