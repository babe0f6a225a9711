"""Construct building blocks shared by the schemas: bounded strings and arrays.

Every count and length is checked against a stated limit and against the bytes that remain
in the stream *before* anything is allocated (docs/format.md, "Limits").
"""

from __future__ import annotations

import io
from typing import IO, Any

import construct as c
from construct import ConstructError, Int32ul

MAX_STRING_BYTES = 1 << 20  # 1 MiB per string
MAX_ARRAY_ITEMS = 1 << 24  # 16 Mi items per array


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes left in a seekable stream, or None when it cannot tell."""
    try:
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


class LengthError(ConstructError):
    """A declared length or count is over its limit or past the end of the data."""


class BoundedArray(c.Construct):
    """A uint32 item count followed by that many items, each at least ``min_item_size`` bytes.

    Like construct's ``PrefixedArray``, but it refuses a count over ``limit`` or one that the
    remaining bytes cannot hold, before parsing a single item.
    """

    def __init__(
        self, subcon: c.Construct, min_item_size: int, limit: int = MAX_ARRAY_ITEMS
    ) -> None:
        super().__init__()
        self.subcon = subcon
        self.min_item_size = min_item_size
        self.limit = limit

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> c.ListContainer:
        count = Int32ul._parsereport(stream, context, path)
        remaining = _remaining(stream)
        if count > self.limit:
            raise LengthError(f"count {count} exceeds the limit of {self.limit}", path=path)
        if remaining is not None and count * self.min_item_size > remaining:
            raise LengthError(
                f"count {count} needs at least {count * self.min_item_size} bytes "
                f"but {remaining} remain",
                path=path,
            )
        return c.ListContainer(
            self.subcon._parsereport(stream, context, f"{path} -> [{i}]") for i in range(count)
        )

    def _build(self, obj: Any, stream: IO[bytes], context: Any, path: str) -> c.ListContainer:
        items = list(obj)
        if len(items) > self.limit:
            raise LengthError(f"count {len(items)} exceeds the limit of {self.limit}", path=path)
        Int32ul._build(len(items), stream, context, path)
        return c.ListContainer(
            self.subcon._build(item, stream, context, f"{path} -> [{i}]")
            for i, item in enumerate(items)
        )

    def _sizeof(self, context: Any, path: str) -> int:
        raise c.SizeofError("BoundedArray has a variable size", path=path)


class BoundedString(c.Construct):
    """A uint32 byte length followed by that many bytes of UTF-8 (no terminator)."""

    def __init__(self, limit: int = MAX_STRING_BYTES) -> None:
        super().__init__()
        self.limit = limit

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> str:
        length = Int32ul._parsereport(stream, context, path)
        remaining = _remaining(stream)
        if length > self.limit:
            raise LengthError(
                f"string of {length} bytes exceeds the limit of {self.limit}", path=path
            )
        if remaining is not None and length > remaining:
            raise LengthError(f"string of {length} bytes but {remaining} remain", path=path)
        data = c.stream_read(stream, length, path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise c.StringError(
                f"string is not valid UTF-8 ({exc.reason} at byte {exc.start})", path=path
            ) from exc

    def _build(self, obj: str, stream: IO[bytes], context: Any, path: str) -> str:
        data = obj.encode("utf-8")
        if len(data) > self.limit:
            raise LengthError(
                f"string of {len(data)} bytes exceeds the limit of {self.limit}", path=path
            )
        Int32ul._build(len(data), stream, context, path)
        c.stream_write(stream, data, len(data), path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise c.SizeofError("BoundedString has a variable size", path=path)


String = BoundedString()
