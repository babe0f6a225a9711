"""A bounds-checked cursor over bytes: the fast decoding path of the schemas' primitives.

construct parses a field at a time through several layers of Python calls, which made
decoding a few megabytes of metadata or graph program take tens of seconds. The decoders in
``popef.format.codec`` and ``popef.program`` read the same encodings (docs/format.md §4, §9)
with this cursor instead: one ``struct`` call per fixed field, one per array of numbers.
The construct schemas stay the specification and the encoder; tests check that both
decoders agree on valid and invalid bytes.

Every count and length is checked against its limit and against the bytes that remain
*before* anything is allocated, exactly as ``BoundedArray`` and ``BoundedString`` do, and
errors carry the same messages and field paths.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

import construct as c

from ._constructs import MAX_ARRAY_ITEMS, MAX_STRING_BYTES

T = TypeVar("T")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_SIZES = {"I": 4, "q": 8, "d": 8}


class DecodeError(c.ConstructError):
    """Bytes that break the encoding, at ``offset``, in the field named by ``path``.

    A ``ConstructError`` so that the one choke point (``popef.format.codec.decode``) reports
    it like any schema error; ``path`` is built while the error unwinds through the items.
    """

    def __init__(self, message: str, offset: int, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.parts: list[str] = [field] if field else []

    @property
    def path(self) -> str:  # construct's form, which the choke point turns into a.b.c
        return " -> ".join(["(parsing)", *self.parts])

    @path.setter
    def path(self, value: str) -> None:  # construct's constructor assigns it; ours is computed
        pass

    def within(self, *parts: str) -> DecodeError:
        """Prefix the field path with ``parts`` (outermost first) in place; returns the error.

        A caller adds its part and re-raises with a bare ``raise``, so the traceback stays the
        one of the original failure.
        """
        self.parts[:0] = parts
        return self


class Cursor:
    """Reads primitives from ``data`` starting at ``pos``; ``end`` is the end of the data."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos
        self.end = len(data)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _short(self, needed: int, field: str | None) -> DecodeError:
        return DecodeError(
            f"stream read less than specified amount, expected {needed}, found {self.remaining}",
            self.pos,
            field,
        )

    def _fixed(self, codec: struct.Struct, field: str | None) -> Any:
        pos = self.pos
        if pos + codec.size > self.end:
            raise self._short(codec.size, field)
        self.pos = pos + codec.size
        return codec.unpack_from(self.data, pos)[0]

    def u8(self, field: str | None = None) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self._short(1, field)
        self.pos = pos + 1
        return self.data[pos]

    def u16(self, field: str | None = None) -> int:
        return self._fixed(_U16, field)

    def u32(self, field: str | None = None) -> int:
        return self._fixed(_U32, field)

    def u64(self, field: str | None = None) -> int:
        return self._fixed(_U64, field)

    def i64(self, field: str | None = None) -> int:
        return self._fixed(_I64, field)

    def f64(self, field: str | None = None) -> float:
        return self._fixed(_F64, field)

    def flag(self, field: str | None = None) -> bool:
        return self.u8(field) != 0

    def raw(self, size: int, field: str | None = None) -> bytes:
        pos = self.pos
        if pos + size > self.end:
            raise self._short(size, field)
        self.pos = pos + size
        return self.data[pos : pos + size]

    def fields(self, codec: struct.Struct, field: str | None = None) -> tuple[Any, ...]:
        """Several fixed-size fields at once (``codec`` is their ``struct`` layout)."""
        pos = self.pos
        if pos + codec.size > self.end:
            raise self._short(codec.size, field)
        self.pos = pos + codec.size
        return codec.unpack_from(self.data, pos)

    def string(self, field: str | None = None, limit: int = MAX_STRING_BYTES) -> str:
        """A ``uint32`` byte length, then that many bytes of UTF-8."""
        pos = self.pos
        if pos + 4 > self.end:
            raise self._short(4, field)
        length = _U32.unpack_from(self.data, pos)[0]
        pos += 4
        if length > limit or pos + length > self.end:
            self.pos = pos
            if length > limit:
                raise DecodeError(
                    f"string of {length} bytes exceeds the limit of {limit}", pos, field
                )
            raise DecodeError(f"string of {length} bytes but {self.end - pos} remain", pos, field)
        self.pos = pos + length
        try:
            return str(self.data[pos : pos + length], "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"string is not valid UTF-8 ({exc.reason} at byte {exc.start})", self.pos, field
            ) from None

    def count(
        self, min_item_size: int, field: str | None = None, limit: int = MAX_ARRAY_ITEMS
    ) -> int:
        """An array's ``uint32`` item count, refused when over ``limit`` or when the remaining
        bytes cannot hold that many items of at least ``min_item_size`` bytes."""
        pos = self.pos
        if pos + 4 > self.end:
            raise self._short(4, field)
        count = _U32.unpack_from(self.data, pos)[0]
        self.pos = pos = pos + 4
        if count > limit:
            raise DecodeError(f"count {count} exceeds the limit of {limit}", pos, field)
        if count * min_item_size > self.end - pos:
            raise DecodeError(
                f"count {count} needs at least {count * min_item_size} bytes "
                f"but {self.end - pos} remain",
                pos,
                field,
            )
        return count

    def numbers(
        self, code: str, field: str | None = None, limit: int = MAX_ARRAY_ITEMS
    ) -> tuple[Any, ...]:
        """An array of fixed-size numbers (``code``: ``"I"``, ``"q"`` or ``"d"``), read with
        one ``struct`` call."""
        count = self.count(_SIZES[code], field, limit)
        if not count:
            return ()
        pos = self.pos
        self.pos = pos + count * _SIZES[code]
        return struct.unpack_from(f"<{count}{code}", self.data, pos)

    def items(
        self,
        read: Callable[[Cursor], T],
        min_item_size: int,
        field: str | None = None,
        limit: int = MAX_ARRAY_ITEMS,
    ) -> list[T]:
        """An array of items, each read by ``read``; an error names the item's index."""
        count = self.count(min_item_size, field, limit)
        out: list[T] = []
        append = out.append
        try:
            for _ in range(count):
                append(read(self))
        except DecodeError as exc:
            # the failing item's index: items are appended only once read
            exc.within(*((field,) if field else ()), f"[{len(out)}]")
            raise
        return out

    def strings(self, field: str | None = None) -> tuple[str, ...]:
        """An array of strings."""
        count = self.count(4, field)
        out: list[str] = []
        append, string = out.append, self.string
        try:
            for _ in range(count):
                append(string())
        except DecodeError as exc:
            # the failing item's index: items are appended only once read
            exc.within(*((field,) if field else ()), f"[{len(out)}]")
            raise
        return tuple(out)
