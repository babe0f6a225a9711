"""The exception hierarchy of the library.

Only subclasses of :class:`PopefError` escape the public API, whatever the input.
"""

from __future__ import annotations


class PopefError(Exception):
    """Root of every error raised by this library."""


class FormatError(PopefError):
    """The bytes break the encoding of ``docs/format.md``.

    Carries where: the byte ``offset`` (absolute, in the file or stream), the ``blob_index``
    (position of the blob in its source) and the ``field`` being decoded, plus the ``source``
    (a path or ``<bytes>``/``<stream>``). Any of them may be ``None`` when unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        blob_index: int | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        self.reason = message
        self.offset = offset
        self.blob_index = blob_index
        self.field = field
        self.source = source
        super().__init__(self._compose())

    def about(self, subject: str) -> FormatError:
        """The same error (same class and location), its reason prefixed with what it is
        about: ``tensor data 'w' is corrupt: checksum mismatch ...``."""
        return type(self)(
            f"{subject}: {self.reason}",
            offset=self.offset,
            blob_index=self.blob_index,
            field=self.field,
            source=self.source,
        )

    def _compose(self) -> str:
        where = []
        if self.blob_index is not None:
            where.append(f"blob #{self.blob_index}")
        if self.field:
            where.append(f"field '{self.field}'")
        if self.offset is not None:
            where.append(f"offset {self.offset:#x}")
        if self.source:
            where.append(f"in {self.source}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason


class BadMagicError(FormatError):
    """The bytes at a blob boundary are not a PopEF blob header."""


class UnsupportedVersionError(FormatError):
    """A blob has a major version this library does not implement."""


class TruncatedError(FormatError):
    """A header or a size points past the end of the available bytes."""


class PartialTailError(TruncatedError):
    """A file ends in a blob that was never finished (an interrupted write).

    The ``complete_blobs`` before ``offset`` are whole; ``popef repair`` drops the rest.
    ``follower`` is the offset of a blob header found after the unfinished blob's provisional
    header, if any: data of its payload, or a later blob written before a system crash.
    """

    def __init__(
        self, message: str, *, complete_blobs: int, follower: int | None = None, **where
    ) -> None:
        self.complete_blobs = complete_blobs
        self.follower = follower
        super().__init__(message, **where)


class UncheckedTailError(FormatError):
    """A damaged blob header with no blob header after it as far as the reader looks, and more
    bytes beyond: a partial tail, or damage in the middle, not known which.

    The ``complete_blobs`` before ``offset`` are whole; the reader never read the last
    ``unread_bytes`` of the file. ``popef repair --force`` drops everything from ``offset``.
    """

    def __init__(self, message: str, *, complete_blobs: int, unread_bytes: int, **where) -> None:
        self.complete_blobs = complete_blobs
        self.unread_bytes = unread_bytes
        super().__init__(message, **where)


class ChecksumError(FormatError):
    """A blob's content does not match the checksum in its header."""


class ModelError(PopefError):
    """Valid bytes that do not form a consistent model (a linking rule is broken)."""


class WriterError(PopefError):
    """The writer API was used out of order, or a write failed."""


class ExecutionError(PopefError):
    """A model cannot be loaded or run: unsupported op, bad inputs, unknown executor, ...

    ``where`` is set when the message already names the place in the model (``"model 'm',
    program 5 ('Program'), step 3"``), so that nothing names it twice.
    """

    where: str | None = None


class DeviceOutOfMemoryError(ExecutionError):
    """A model does not fit the memory of the (modelled) device."""
