"""Finding the weights inside an ``.onnx`` file without parsing them into protobuf.

A model saved with its weights inline keeps each initializer's bytes in the ``raw_data`` field
of its ``TensorProto``. Parsing the file copies those bytes into protobuf, and reading
``raw_data`` copies them again into a Python ``bytes``; for a model of hundreds of MB that is
most of an import. :func:`split_inline_weights` walks the protobuf wire format of the file just
far enough to find every large ``raw_data`` (model → graph → initializer) and returns the file
without them: each such initializer is rewritten as *external data* pointing back into the
file itself (a location that starts with :data:`SELF_LOCATION`, its offset and length), so the
importer memory-maps the weights straight from the page cache, as it does for
``model.onnx.data``.

Anything unexpected (a group wire type, a length past the end, a varint over 10 bytes, field
number 0, a tensor that already has an external location) makes it give up and return None;
the caller then parses the whole file the ordinary way, which reports what is wrong. The walk
is linear in the file's size (every field moves forward), looks three messages deep and
copies at most the file's bytes less the weights it leaves out.

The location of each walk ends with a random token: a file cannot forge a reference into
itself (a location written in the file never equals it, and holds a NUL byte that no file
name has, so the importer refuses it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = ["SELF_LOCATION", "InlineWeights", "find_inline_weights", "split_inline_weights"]

#: How the external-data locations that mean "the .onnx file itself" start; no file can be
#: named so (NUL). Each walk adds its own random token (:attr:`InlineWeights.location`).
SELF_LOCATION = "\x00inline"

MIN_INLINE_BYTES = 64 * 1024  # smaller weights stay in the protobuf: not worth a memory map

_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14


class _Malformed(Exception):
    pass


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(data, start: int, end: int):
    """(field number, wire type, start of the field, start of its value, end of the field)."""
    pos = start
    while pos < end:
        tag, value_start = _varint(data, pos, end)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, field_end = _varint(data, value_start, end)
        elif wire == 1:
            field_end = value_start + 8
        elif wire == 5:
            field_end = value_start + 4
        elif wire == 2:
            length, value_start = _varint(data, value_start, end)
            field_end = value_start + length
        else:  # groups (3, 4) and unknown wire types: not in ONNX files
            raise _Malformed
        if field_end > end or field == 0:
            raise _Malformed
        yield field, wire, pos, value_start, field_end
        pos = field_end


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _encode_varint(field << 3 | 2) + _encode_varint(len(payload)) + payload


@dataclass(frozen=True)
class InlineWeights:
    """A model file without its large inline weights."""

    skeleton: bytes  # the serialized ModelProto, each large raw_data made external data
    location: str  # the external-data location that stands for the file itself
    count: int  # how many initializers were made external


def _tensor(data, start: int, end: int, location: str) -> bytes | None:
    """The TensorProto at ``data[start:end]`` with its raw data made external, or None."""
    raw = None
    for field, wire, _, value_start, field_end in _fields(data, start, end):
        if field in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION):
            return None
        if field == _TENSOR_RAW_DATA and wire == 2:
            raw = (value_start, field_end)
    if raw is None or raw[1] - raw[0] < MIN_INLINE_BYTES:
        return None
    kept = b"".join(
        bytes(data[field_start:field_end])
        for field, _, field_start, _, field_end in _fields(data, start, end)
        if field != _TENSOR_RAW_DATA
    )
    entries = b"".join(
        _length_delimited(
            _TENSOR_EXTERNAL_DATA,
            _length_delimited(1, key.encode()) + _length_delimited(2, value.encode()),
        )
        for key, value in (
            ("location", location),
            ("offset", str(raw[0])),
            ("length", str(raw[1] - raw[0])),
        )
    )
    return kept + entries + _encode_varint(_TENSOR_DATA_LOCATION << 3) + b"\x01"


def _rewrite(data, start: int, end: int, field_of_child: int, child) -> tuple[bytes, int]:
    """The message at ``data[start:end]`` with each ``field_of_child`` rewritten by ``child``
    (unchanged where it returns None), and how many were rewritten."""
    pieces: list[bytes] = []
    rewritten = 0
    for field, wire, field_start, value_start, field_end in _fields(data, start, end):
        new = child(data, value_start, field_end) if field == field_of_child and wire == 2 else None
        if isinstance(new, tuple):
            new, count = new
            rewritten += count
        elif new is not None:
            rewritten += 1
        if new is None:
            pieces.append(bytes(data[field_start:field_end]))
        else:
            pieces.append(_length_delimited(field, new))
    return b"".join(pieces), rewritten


def find_inline_weights(data) -> InlineWeights | None:
    """The serialized ModelProto ``data`` (bytes, mmap or memoryview) with its large inline
    initializers turned into references into ``data`` itself; None when there are none or the
    file is not what it should be."""
    location = f"{SELF_LOCATION}:{secrets.token_hex(8)}"

    def tensor(data, start: int, end: int) -> bytes | None:
        return _tensor(data, start, end, location)

    def graph(data, start: int, end: int) -> tuple[bytes, int]:
        return _rewrite(data, start, end, _GRAPH_INITIALIZER, tensor)

    try:
        skeleton, rewritten = _rewrite(data, 0, len(data), _MODEL_GRAPH, graph)
    except _Malformed:
        return None
    return InlineWeights(skeleton, location, rewritten) if rewritten else None


def split_inline_weights(data) -> bytes | None:
    """:func:`find_inline_weights`'s skeleton alone."""
    found = find_inline_weights(data)
    return None if found is None else found.skeleton
