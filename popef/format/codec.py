"""Between bytes and the typed dataclasses of ``popef.types``.

This is the one choke point for decoding errors: every ``ConstructError`` (and every value the
dataclasses refuse) becomes a :class:`popef.errors.FormatError` naming the source, the blob
index, the field path and the absolute byte offset where decoding stopped.
"""

from __future__ import annotations

import gc
import io
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar, cast

import construct as c

from ..errors import FormatError, PopefError
from ..types import (
    _TENSOR_TYPES,  # int -> TensorType
    Anchor,
    DataType,
    ExecutableInfo,
    FeedDataInfo,
    Metadata,
    OpaqueInfo,
    Option,
    ProgramFlow,
    TensorDataInfo,
    TensorInfo,
    TensorType,
    trusted_constructor,
)
from ._constructs import MAX_ARRAY_ITEMS, MAX_STRING_BYTES
from ._cursor import Cursor, DecodeError
from .infos import EXECUTABLE_INFO, FEED_DATA_INFO, OPAQUE_INFO, TENSOR_DATA_INFO, Codec
from .metadata import (
    _MIN_ANCHOR,
    _MIN_OPTION,
    _MIN_PROGRAM_NAME,
    MAX_OPTIONS,
    MAX_PROGRAM_NAMES,
    MAX_RANK,
    METADATA,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Location:
    """Where a piece of bytes comes from, for error messages."""

    source: str
    blob_index: int
    offset: int  # absolute offset of the first byte being decoded


def _field_of(path: str | None) -> str | None:
    if not path:
        return None
    parts = [p.strip() for p in path.replace("(parsing)", "").split("->")]
    return ".".join(p for p in parts if p) or None


_compiled: dict[int, c.Compiled] = {}


def _compiled_form(schema: c.Construct) -> c.Compiled:
    """construct's generated code for a schema, made on first use."""
    parser = _compiled.get(id(schema))
    if parser is None:
        parser = _compiled[id(schema)] = schema.compile()
    return parser


def decode(
    schema: c.Construct,
    data: bytes,
    where: Location,
    what: str,
    convert: Callable[[Any], T],
    allow_trailing: bool = False,
) -> T:
    """Parse ``data`` entirely with ``schema`` and convert the container to a typed value."""
    stream = io.BytesIO(data)
    try:
        container = schema.parse_stream(stream)
    except c.ConstructError as exc:
        message = str(exc).split("\n", 1)[-1].strip() or type(exc).__name__
        raise FormatError(
            f"bad {what}: {message}",
            offset=where.offset + stream.tell(),
            blob_index=where.blob_index,
            field=_field_of(exc.path),
            source=where.source,
        ) from exc
    if not allow_trailing and stream.tell() != len(data):
        raise FormatError(
            f"bad {what}: {len(data) - stream.tell()} unexpected bytes after it",
            offset=where.offset + stream.tell(),
            blob_index=where.blob_index,
            source=where.source,
        )
    try:
        return convert(container)
    except PopefError as exc:
        raise FormatError(
            f"bad {what}: {exc}",
            offset=where.offset,
            blob_index=where.blob_index,
            source=where.source,
        ) from exc


@contextmanager
def _collection_paused(size: int) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large info is decoded: the objects it
    creates hold no cycles, and the collector would scan them again and again as they
    accumulate (a third of the time of a large metadata)."""
    pause = size >= _GC_PAUSE_BYTES and gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()


_GC_PAUSE_BYTES = 1 << 20


def read_all(
    read: Callable[[Cursor], T],
    data: bytes,
    where: Location,
    what: str,
    allow_trailing: bool = False,
) -> T:
    """Decode ``data`` entirely with a cursor reader (the fast path of a schema, ``_cursor``).

    Errors are reported as :func:`decode` reports them: the field path and the absolute
    offset where decoding stopped.
    """
    cursor = Cursor(data)
    try:
        if len(data) < _GC_PAUSE_BYTES:  # most infos: no context manager to enter
            value = read(cursor)
        else:
            with _collection_paused(len(data)):
                value = read(cursor)
    except DecodeError as exc:
        raise FormatError(
            f"bad {what}: {exc.message}",
            offset=where.offset + exc.offset,
            blob_index=where.blob_index,
            field=_field_of(exc.path),
            source=where.source,
        ) from exc
    except PopefError as exc:  # a value the dataclasses refuse
        raise FormatError(
            f"bad {what}: {exc}",
            offset=where.offset + cursor.pos,
            blob_index=where.blob_index,
            source=where.source,
        ) from exc
    if not allow_trailing and cursor.pos != len(data):
        raise FormatError(
            f"bad {what}: {len(data) - cursor.pos} unexpected bytes after it",
            offset=where.offset + cursor.pos,
            blob_index=where.blob_index,
            source=where.source,
        )
    return value


# -- bytes -> dataclasses, the fast path of the schemas in metadata.py ---------------------


@lru_cache(maxsize=4096)
def _tensor_info_of(dtype: int, shape: tuple[int, ...]) -> TensorInfo:
    # Models repeat a few shapes over thousands of anchors: they share one frozen TensorInfo.
    # The cast is the dataclass's contract: it turns the int code into a DataType (or refuses it).
    return TensorInfo(cast(DataType, dtype), shape)


def read_tensor_info(cur: Cursor) -> TensorInfo:
    dtype = cur.u8("dtype")
    return _tensor_info_of(dtype, cur.numbers("q", "shape", MAX_RANK))


def _read_option(cur: Cursor) -> Option:
    return Option(cur.string("name"), cur.string("value"))


def _read_anchor(cur: Cursor) -> Anchor:
    name = cur.string("name")
    handle = cur.string("handle")
    try:
        tensor_info = read_tensor_info(cur)
    except DecodeError as exc:
        exc.within("tensor_info")
        raise
    programs = cur.numbers("I", "programs")
    is_per_replica = cur.flag("is_per_replica")
    # The cast is the dataclass's contract: it turns the int code into a TensorType (or refuses it).
    return Anchor(
        name, handle, tensor_info, programs, is_per_replica, cast(TensorType, cur.u8("type"))
    )


_ANCHOR_HEAD = struct.Struct("<BI")  # tensor_info.dtype, then the shape's count
_ANCHOR_TAIL = struct.Struct("<BB")  # is_per_replica, type
_unpack_u32 = struct.Struct("<I").unpack_from
_new_anchor = trusted_constructor(Anchor)  # every value is checked by _read_anchors itself
_SHAPES = [struct.Struct(f"<{rank}q").unpack_from for rank in range(MAX_RANK + 1)]
_SHORT = 16  # program lists shorter than this are read with a prepared struct
_INFO_CACHE_SIZE = 4096  # distinct tensor infos remembered while reading one anchors array
_PROGRAM_LISTS = [struct.Struct(f"<{count}I").unpack_from for count in range(_SHORT)]


def _read_anchors(cur: Cursor) -> tuple[Anchor, ...]:
    """The anchors array, a model's longest part: one pass over the bytes with no method
    call per field. An anchor that breaks a rule (a length past the end, a count over its
    limit, bad UTF-8, an unknown value) is read again by :func:`_read_anchor`, whose error
    names the field."""
    count = cur.count(_MIN_ANCHOR, "anchors")
    data, pos, end = cur.data, cur.pos, cur.end
    anchors: list[Anchor] = []
    append = anchors.append
    head, tail, u32 = _ANCHOR_HEAD.unpack_from, _ANCHOR_TAIL.unpack_from, _unpack_u32
    new_anchor, tensor_types = _new_anchor, _TENSOR_TYPES
    shapes, program_lists = _SHAPES, _PROGRAM_LISTS
    infos: dict[bytes, TensorInfo] = {}
    # Names are ASCII in practice: the info is decoded once as Latin-1 (a byte a character, so
    # offsets agree) and an ASCII name is a slice of it; any other name is decoded as UTF-8.
    text = data.decode("latin-1")
    start = 0
    try:
        for _ in range(count):
            start = pos
            (length,) = u32(data, pos)
            pos += 4
            if length > MAX_STRING_BYTES or pos + length > end:
                raise _Irregular
            name = text[pos : pos + length]
            if not name.isascii():
                name = str(data[pos : pos + length], "utf-8")
            pos += length
            (length,) = u32(data, pos)
            pos += 4
            if length > MAX_STRING_BYTES or pos + length > end:
                raise _Irregular
            handle = text[pos : pos + length]
            if not handle.isascii():
                handle = str(data[pos : pos + length], "utf-8")
            pos += length
            dtype, rank = head(data, pos)
            if rank > MAX_RANK or pos + 5 + 8 * rank > end:
                raise _Irregular
            raw_info = data[pos : pos + 5 + 8 * rank]  # models repeat a few tensor infos
            tensor_info = infos.get(raw_info)
            if tensor_info is None:
                shape = shapes[rank](data, pos + 5) if rank else ()
                tensor_info = _tensor_info_of(dtype, shape)
                if len(infos) < _INFO_CACHE_SIZE:
                    infos[raw_info] = tensor_info
            pos += 5 + 8 * rank
            (length,) = u32(data, pos)
            pos += 4
            if length > MAX_ARRAY_ITEMS or pos + 4 * length > end:
                raise _Irregular
            programs = (
                program_lists[length](data, pos)
                if length < _SHORT
                else struct.unpack_from(f"<{length}I", data, pos)
            )
            pos += 4 * length
            is_per_replica, kind = tail(data, pos)
            pos += 2
            append(
                new_anchor(
                    name, handle, tensor_info, programs, is_per_replica != 0, tensor_types[kind]
                )
            )
    except (_Irregular, struct.error, UnicodeDecodeError, KeyError, PopefError):
        i = len(anchors)  # the failing anchor: each one is appended only once it is read
        cur.pos = start  # the careful reader raises the precise error
        try:
            _read_anchor(cur)
        except DecodeError as exc:
            exc.within("anchors", f"[{i}]")
            raise
        # unreachable while both readers check the same rules; an error all the same
        raise DecodeError("anchor refused by the fast reader only", start).within(
            "anchors", f"[{i}]"
        ) from None
    cur.pos = pos
    return tuple(anchors)


class _Irregular(Exception):
    """An anchor the fast path leaves to the careful one."""


def _read_program_flow(cur: Cursor) -> ProgramFlow:
    try:
        return ProgramFlow(
            cur.numbers("I", "load"), cur.numbers("I", "main"), cur.numbers("I", "save")
        )
    except DecodeError as exc:
        exc.within("program_flow")
        raise


def _read_programs_map(cur: Cursor) -> dict[int, str]:
    result: dict[int, str] = {}
    count = cur.count(_MIN_PROGRAM_NAME, "programs_map", MAX_PROGRAM_NAMES)
    for i in range(count):
        try:
            index = cur.u32("index")
            name = cur.string("name")
        except DecodeError as exc:
            exc.within("programs_map", f"[{i}]")
            raise
        if index in result:
            raise PopefError(f"programs_map names program {index} twice")
        result[index] = name
    return result


# replication_factor, num_ipus, ipu_version, is_pod, is_inference, num_processes,
# device_iterations
_METADATA_FIXED = struct.Struct("<III??QI")


def read_metadata(cur: Cursor) -> Metadata:
    executable = cur.string("executable")
    (
        replication_factor,
        num_ipus,
        ipu_version,
        is_pod,
        is_inference,
        num_processes,
        device_iterations,
    ) = cur.fields(_METADATA_FIXED, "replication_factor")
    return Metadata(
        executable=executable,
        replication_factor=replication_factor,
        num_ipus=num_ipus,
        ipu_version=ipu_version,
        is_pod=is_pod,
        is_inference=is_inference,
        num_processes=num_processes,
        device_iterations=device_iterations,
        seed_handle=cur.string("seed_handle"),
        engine_options=tuple(cur.items(_read_option, _MIN_OPTION, "engine_options", MAX_OPTIONS)),
        device_options=tuple(cur.items(_read_option, _MIN_OPTION, "device_options", MAX_OPTIONS)),
        program_flow=_read_program_flow(cur),
        programs_map=_read_programs_map(cur),
        anchors=_read_anchors(cur),
    )


# -- containers -> dataclasses (the infos of the other blob types) -------------------------


@dataclass(frozen=True)
class ExecutableEncoding:
    """An executable info plus how its payload is stored."""

    info: ExecutableInfo
    codec: Codec
    uncompressed_size: int


def _executable(ct: c.Container) -> ExecutableEncoding:
    try:
        codec = Codec(ct.codec)
    except ValueError:
        raise PopefError(f"unknown executable codec {ct.codec}") from None
    return ExecutableEncoding(
        ExecutableInfo(ct.name, codec is not Codec.NONE), codec, ct.uncompressed_size
    )


def decode_metadata(data: bytes, where: Location, allow_trailing: bool = False) -> Metadata:
    return read_all(read_metadata, data, where, "metadata", allow_trailing)


def decode_executable_info(
    data: bytes, where: Location, allow_trailing: bool = False
) -> ExecutableEncoding:
    return decode(EXECUTABLE_INFO, data, where, "executable info", _executable, allow_trailing)


def _read_named_tensor_info(cur: Cursor) -> tuple[str, TensorInfo]:
    name = cur.string("name")
    try:
        return name, read_tensor_info(cur)
    except DecodeError as exc:
        exc.within("tensor_info")
        raise


def _read_tensor_data_info(cur: Cursor) -> TensorDataInfo:
    return TensorDataInfo(*_read_named_tensor_info(cur))


def _read_feed_data_info(cur: Cursor) -> FeedDataInfo:
    name, tensor_info = _read_named_tensor_info(cur)
    return FeedDataInfo(name, tensor_info, cur.u64("num_items"))


def decode_tensor_data_info(
    data: bytes, where: Location, allow_trailing: bool = False
) -> TensorDataInfo:
    return read_all(_read_tensor_data_info, data, where, "tensor data info", allow_trailing)


_new_tensor_data_info = trusted_constructor(TensorDataInfo)
_unpack_u64 = struct.Struct("<Q").unpack_from


def _regular_named_tensor_info(data: bytes) -> tuple[str, TensorInfo, int] | None:
    """The name and tensor info that start ``data`` and the offset after them, when every
    rule holds (lengths within the data and their limits, UTF-8, a known data type, a rank
    within its limit); None otherwise."""
    end = len(data)
    if end < 9:
        return None
    (length,) = _unpack_u32(data, 0)
    pos = 4 + length
    if length > MAX_STRING_BYTES or pos + 5 > end:
        return None
    try:
        name = str(data[4:pos], "utf-8")
    except UnicodeDecodeError:
        return None
    dtype, rank = _ANCHOR_HEAD.unpack_from(data, pos)
    pos += 5
    if rank > MAX_RANK or pos + 8 * rank > end:
        return None
    try:
        tensor_info = _tensor_info_of(dtype, _SHAPES[rank](data, pos) if rank else ())
    except PopefError:
        return None
    return name, tensor_info, pos + 8 * rank


def fast_tensor_data_info(data: bytes) -> TensorDataInfo | None:
    """The tensor data info that is exactly ``data``, decoded in a few ``struct`` calls, when
    it breaks no rule and has no trailing bytes; None otherwise, for
    :func:`decode_tensor_data_info` to decode with errors that name the field.

    Opening a file lists thousands of tensor infos: this is their fast path. It accepts
    exactly what the schema (``TENSOR_DATA_INFO``) accepts and gives the same values
    (property tests check both).
    """
    regular = _regular_named_tensor_info(data)
    if regular is None or regular[2] != len(data):
        return None
    return _new_tensor_data_info(regular[0], regular[1])


def fast_feed_data_info(data: bytes) -> FeedDataInfo | None:
    """:func:`fast_tensor_data_info` for a feed data info (``FEED_DATA_INFO``)."""
    regular = _regular_named_tensor_info(data)
    if regular is None or regular[2] + 8 != len(data):
        return None
    try:
        return FeedDataInfo(regular[0], regular[1], _unpack_u64(data, regular[2])[0])
    except PopefError:
        return None


def decode_feed_data_info(
    data: bytes, where: Location, allow_trailing: bool = False
) -> FeedDataInfo:
    return read_all(_read_feed_data_info, data, where, "feed data info", allow_trailing)


def decode_opaque_info(data: bytes, where: Location, allow_trailing: bool = False) -> OpaqueInfo:
    return decode(
        OPAQUE_INFO,
        data,
        where,
        "opaque info",
        lambda ct: OpaqueInfo(ct.name, ct.executable),
        allow_trailing,
    )


# -- dataclasses -> bytes ----------------------------------------------------------------


def _tensor_info_dict(info: TensorInfo) -> dict[str, Any]:
    return {"dtype": int(info.dtype), "shape": list(info.shape)}


def encode_metadata(md: Metadata) -> bytes:
    return METADATA.build(
        {
            "executable": md.executable,
            "replication_factor": md.replication_factor,
            "num_ipus": md.num_ipus,
            "ipu_version": md.ipu_version,
            "is_pod": md.is_pod,
            "is_inference": md.is_inference,
            "num_processes": md.num_processes,
            "device_iterations": md.device_iterations,
            "seed_handle": md.seed_handle,
            "engine_options": [{"name": o.name, "value": o.value} for o in md.engine_options],
            "device_options": [{"name": o.name, "value": o.value} for o in md.device_options],
            "program_flow": {
                "load": list(md.program_flow.load),
                "main": list(md.program_flow.main),
                "save": list(md.program_flow.save),
            },
            "programs_map": [{"index": i, "name": n} for i, n in md.programs_map.items()],
            "anchors": [
                {
                    "name": a.name,
                    "handle": a.handle,
                    "tensor_info": _tensor_info_dict(a.tensor_info),
                    "programs": list(a.programs),
                    "is_per_replica": a.is_per_replica,
                    "type": int(a.type),
                }
                for a in md.anchors
            ],
        }
    )


def encode_executable_info(name: str, codec: Codec, uncompressed_size: int) -> bytes:
    return EXECUTABLE_INFO.build(
        {"name": name, "codec": int(codec), "uncompressed_size": uncompressed_size}
    )


# Tensor and feed infos are written once per blob, thousands of times for a large model: they
# are built with the generated code (tests check it gives the schema's bytes).
def encode_tensor_data_info(info: TensorDataInfo) -> bytes:
    return _compiled_form(TENSOR_DATA_INFO).build(
        {"name": info.name, "tensor_info": _tensor_info_dict(info.tensor_info)}
    )


def encode_feed_data_info(info: FeedDataInfo) -> bytes:
    return _compiled_form(FEED_DATA_INFO).build(
        {
            "name": info.name,
            "tensor_info": _tensor_info_dict(info.tensor_info),
            "num_items": info.num_items,
        }
    )


def encode_opaque_info(info: OpaqueInfo) -> bytes:
    return OPAQUE_INFO.build({"name": info.name, "executable": info.executable})
