"""The binary encoding of PopEF blobs, as construct schemas (docs/format.md).

No file I/O and no numpy here: ``popef.reader`` and ``popef.writer`` drive these schemas, and
``popef.codec`` converts between their containers and the typed dataclasses of ``popef.types``.
"""

from .header import (
    ALIGNMENT,
    FAST_HEADER,
    FORMAT_VERSION,
    HEADER,
    HEADER_FIELDS,
    HEADER_SIZE,
    MAGIC,
    MAX_INFO_SIZE,
    VERSION_STRING,
    align,
    parse_version,
    payload_offset,
    total_size,
)
from .infos import EXECUTABLE_INFO, FEED_DATA_INFO, OPAQUE_INFO, TENSOR_DATA_INFO, Codec
from .metadata import ANCHOR, METADATA, OPTION, PROGRAM_FLOW, TENSOR_INFO

__all__ = [
    "ALIGNMENT",
    "FAST_HEADER",
    "FORMAT_VERSION",
    "HEADER",
    "HEADER_FIELDS",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_INFO_SIZE",
    "VERSION_STRING",
    "align",
    "parse_version",
    "payload_offset",
    "total_size",
    "EXECUTABLE_INFO",
    "FEED_DATA_INFO",
    "OPAQUE_INFO",
    "TENSOR_DATA_INFO",
    "Codec",
    "ANCHOR",
    "METADATA",
    "OPTION",
    "PROGRAM_FLOW",
    "TENSOR_INFO",
]
