"""The infos of executable, tensor data, feed data and opaque blobs: docs/format.md §5.

A blob's info sits between its header and its payload; it says what the payload is.
"""

from __future__ import annotations

from enum import IntEnum

from construct import Int8ul, Int64ul, Struct

from ._constructs import String
from .metadata import TENSOR_INFO


class Codec(IntEnum):
    """How an executable's payload is stored."""

    NONE = 0
    ZLIB = 1  # RFC 1950 zlib stream


EXECUTABLE_INFO = Struct(
    "name" / String,
    "codec" / Int8ul,  # Codec
    "uncompressed_size" / Int64ul,  # size of the executable once decoded
)

TENSOR_DATA_INFO = Struct(
    "name" / String,
    "tensor_info" / TENSOR_INFO,
)

FEED_DATA_INFO = Struct(
    "name" / String,
    "tensor_info" / TENSOR_INFO,
    "num_items" / Int64ul,
)

OPAQUE_INFO = Struct(
    "name" / String,
    "executable" / String,
)
