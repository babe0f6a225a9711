"""The blob header: docs/format.md §2 "Blob frame".

Every blob starts with this fixed 48-byte header. ``HEADER`` is the schema; ``FAST_HEADER`` is a
``struct.Struct`` derived from it for indexing thousands of blobs quickly (tests check that both
decode every header identically).
"""

from __future__ import annotations

import struct

import construct as c
from construct import Bytes, Int16ul, Int32ul, Int64ul, PaddedString, Struct

MAGIC = b"\x89PopEF\r\n"
FORMAT_VERSION = (1, 0)
VERSION_STRING = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
HEADER_SIZE = 48
ALIGNMENT = 64
MAX_INFO_SIZE = 1 << 28  # 256 MiB of blob info (metadata of very large models fits easily)

HEADER = Struct(
    "magic" / Bytes(8),
    "version" / PaddedString(8, "ascii"),
    "total_size" / Int64ul,  # header + content, a multiple of ALIGNMENT
    "blob_type" / Int16ul,  # BlobType; other values are unknown blobs, kept verbatim
    "flags" / Int16ul,  # reserved, written as 0
    "info_size" / Int32ul,
    "payload_size" / Int64ul,
    "checksum" / Int32ul,  # CRC-32 of bytes [HEADER_SIZE, total_size) of the blob
    "reserved" / Int32ul,  # written as 0
)


def _derive_struct(schema: Struct) -> struct.Struct:
    """The ``struct`` format of a Struct made only of fixed-size fields and byte strings."""
    codes = []
    for sub in schema.subcons:
        inner = sub.subcon if isinstance(sub, c.Renamed) else sub
        if isinstance(inner, c.FormatField):
            codes.append(inner.fmtstr[1:])
        else:  # Bytes(n) and PaddedString(n) are n raw bytes
            codes.append(f"{inner.sizeof()}s")
    return struct.Struct("<" + "".join(codes))


FAST_HEADER = _derive_struct(HEADER)
HEADER_FIELDS = tuple(sub.name for sub in HEADER.subcons)
assert FAST_HEADER.size == HEADER.sizeof() == HEADER_SIZE


def align(offset: int) -> int:
    """The first multiple of ALIGNMENT at or after ``offset``."""
    return -(-offset // ALIGNMENT) * ALIGNMENT


def payload_offset(info_size: int) -> int:
    """Offset of the payload from the blob start: the info, then zeros up to the alignment."""
    return align(HEADER_SIZE + info_size)


def total_size(info_size: int, payload_size: int) -> int:
    return align(payload_offset(info_size) + payload_size)


def parse_version(text: str) -> tuple[int, int] | None:
    """``"1.0"`` -> ``(1, 0)``; None when the text is not ``MAJOR.MINOR`` in decimal."""
    major, dot, minor = text.partition(".")
    if not dot or not (major.isdigit() and minor.isdigit() and major.isascii() and minor.isascii()):
        return None
    return int(major), int(minor)
