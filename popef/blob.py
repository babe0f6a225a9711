"""Blobs: the bytes of PopEF files, streams and buffers, and the headers that cut them into blobs.

A *source* gives random access to the bytes of one file, stream or buffer; indexing walks its
blob headers, checking each before trusting any of its sizes, and gives a :class:`Blob` per
blob (where it is and what its header says), reading headers only. The reader
(``popef.reader``) decodes the blobs' infos on top of this; the writer (``popef.writer``) uses
it to copy blobs losslessly and to check a file before appending to it. Neither depends on the
other.
"""

from __future__ import annotations

import io
import mmap
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from . import format as fmt
from .errors import (
    BadMagicError,
    ChecksumError,
    FormatError,
    PartialTailError,
    PopefError,
    TruncatedError,
    UncheckedTailError,
    UnsupportedVersionError,
)
from .format.checksum import crc32
from .format.codec import Location
from .types import BlobType, trusted_constructor

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

__all__ = [
    "Blob",
    "CHUNK_SIZE",
    "SCAN_LIMIT",
    "file_kind",
    "index_open_file",
    "known_file_kind",
]

CHUNK_SIZE = 8 << 20
_PREAD_MAX = 1 << 30  # reads above this are split: one pread() returns at most ~2 GiB on Linux


# -- sources -------------------------------------------------------------------------------


class _Source:
    """Random access to the bytes of one file, stream or buffer."""

    name: str
    size: int

    def read(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def view(self, offset: int, size: int) -> memoryview | None:
        """A zero-copy view, when the source is memory (or memory-mapped)."""
        return None

    def read_into(self, offset: int, buffer: memoryview) -> None:
        """Fill ``buffer`` with the bytes at ``offset``, copying them (never by the map)."""
        buffer[:] = self.read(offset, len(buffer))

    def close(self) -> None:
        pass


class _BufferSource(_Source):
    """Bytes in memory."""

    def __init__(self, buffer: Buffer, name: str):
        self._buffer = memoryview(buffer).cast("B")
        self.name = name
        self.size = len(self._buffer)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self._buffer[offset : offset + size])

    def view(self, offset: int, size: int) -> memoryview:
        return self._buffer[offset : offset + size]

    def read_into(self, offset: int, buffer: memoryview) -> None:
        buffer[:] = self._buffer[offset : offset + len(buffer)]


class _MappedFile(_Source):
    """A file: headers are read with pread (one syscall each, no page faults over a large
    mapping), data is served from a read-only memory map."""

    def __init__(self, path: str):
        self.name = path
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        self._fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | getattr(os, "O_BINARY", 0))
        try:
            status = _regular_file_status(self._fd, path)
            self.size = status.st_size
            #: what tells this file from others, whatever path (or link) named it
            self.identity = (status.st_dev, status.st_ino)
            self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) if self.size else None
        except BaseException:
            os.close(self._fd)
            raise

    def read(self, offset: int, size: int) -> bytes:
        if self._fd < 0:
            return bytes(self.view(offset, size))
        if size > _PREAD_MAX:
            buffer = bytearray(size)
            self.read_into(offset, memoryview(buffer))
            return buffer  # type: ignore[return-value]  # bytes-like, without a second copy
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise _shrank(self.name, offset, size, len(data))
        return data

    def read_into(self, offset: int, buffer: memoryview) -> None:
        if self._fd < 0:  # closed: only the map is left
            buffer[:] = self.view(offset, len(buffer))
            return
        done = 0
        while done < len(buffer):  # pread reads at most 2 GiB a call on Linux
            got = os.preadv(self._fd, [buffer[done:]], offset + done)
            if got == 0:
                raise _shrank(self.name, offset, len(buffer), done)
            done += got

    def view(self, offset: int, size: int) -> memoryview:
        if not self._map:
            return memoryview(b"")
        # Touching a page of the map past the file's end kills the process (SIGBUS): check
        # the file still holds the bytes. mmap.size() asks the file itself, not the mapping.
        if self._map.size() < offset + size:
            raise _shrank(self.name, offset, size, max(0, self._map.size() - offset))
        return memoryview(self._map)[offset : offset + size]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # The map stays open while numpy views of it live; it is released with the last one.


_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _regular_file_status(fd: int, path: str) -> os.stat_result:
    """The status of the regular file open as ``fd``; anything else (a device, a FIFO, a folder,
    a pseudo-file of /proc that claims 0 bytes yet has content) is refused with PopefError."""
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        raise PopefError(
            f"cannot read '{path}': not a regular file (found {file_kind(status.st_mode)})"
        )
    if status.st_size == 0 and os.pread(fd, 1, 0):
        raise PopefError(
            f"cannot read '{path}': not a regular file (it claims 0 bytes but has "
            "content: a pseudo-file such as those of /proc?)"
        )
    if _O_NONBLOCK:  # meaningless for a regular file; cleared so that nothing depends on it
        os.set_blocking(fd, True)
    return status


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, from its ``st_mode``: "a FIFO", ... ."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for test, kind in kinds if test(mode)), f"file mode {mode:#o}")


def _shrank(name: str, offset: int, size: int, available: int) -> TruncatedError:
    return TruncatedError(
        f"the file shrank after it was opened: {size} bytes needed but "
        f"{available} remain (was it replaced or truncated on disk?)",
        offset=offset,
        source=name,
    )


class _OpenFile(_Source):
    """A regular file open elsewhere, read with pread; the descriptor stays its owner's."""

    def __init__(self, fd: int, name: str):
        self._fd = fd
        self.name = name
        self.size = os.fstat(fd).st_size

    def read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise _shrank(self.name, offset, size, len(data))
        return data


def index_open_file(fd: int, name: str) -> int:
    """Check the blob headers of the regular file open as ``fd`` (named ``name`` in messages)
    as :meth:`Reader.parse_file` does, reading headers only; returns how many blobs it holds.

    For a writer about to append to the file; ``fd`` stays open. Raises :class:`FormatError`
    (:class:`PartialTailError` for a partial blob at the end).
    """
    return sum(1 for _ in _index(_OpenFile(fd, name)))


class _StreamSource(_Source):
    """A seekable binary stream; the reader owns its position from now on."""

    def __init__(self, stream: BinaryIO, name: str):
        self._stream = stream
        self._lock = threading.Lock()
        self._start = stream.tell()
        self.size = stream.seek(0, io.SEEK_END) - self._start
        self.name = name

    def read(self, offset: int, size: int) -> bytes:
        with self._lock:
            self._stream.seek(self._start + offset)
            data = self._stream.read(size)
        if not isinstance(data, (bytes, bytearray)):
            raise PopefError(
                f"'{self.name}' is not a binary stream: read() gave {type(data).__name__}"
            )
        if len(data) != size:
            raise TruncatedError(
                f"stream ended early: {size} bytes asked, {len(data)} read",
                offset=offset,
                source=self.name,
            )
        return data


# -- blobs ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, slots=True)
class Blob:
    """One blob of a source: where it is and what its header says."""

    source: str
    index: int  # position among the blobs of its source
    offset: int  # absolute offset of the header in its source
    size: int  # header + content + padding
    type: BlobType | int  # an int for blob types this library does not know
    version: str
    info_size: int
    payload_size: int
    checksum: int
    _src: _Source = field(repr=False)

    @property
    def known(self) -> bool:
        return isinstance(self.type, BlobType)

    @property
    def type_name(self) -> str:
        return self.type.name if isinstance(self.type, BlobType) else f"UNKNOWN({self.type})"

    @property
    def info_offset(self) -> int:
        return self.offset + fmt.HEADER_SIZE

    @property
    def payload_offset(self) -> int:
        return self.offset + fmt.payload_offset(self.info_size)

    @property
    def newer_minor(self) -> bool:
        """Written by a newer minor version: infos may carry fields this library skips."""
        version = fmt.parse_version(self.version)
        return version is not None and version[1] > fmt.FORMAT_VERSION[1]

    def location(self, offset: int | None = None) -> Location:
        return Location(self.source, self.index, self.info_offset if offset is None else offset)

    def info_bytes(self) -> bytes:
        return self._src.read(self.info_offset, self.info_size)

    def payload_view(self) -> memoryview | None:
        return self._src.view(self.payload_offset, self.payload_size)

    def read_payload(self) -> bytes:
        return self._src.read(self.payload_offset, self.payload_size)

    def iter_raw(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes | memoryview]:
        """The blob's bytes, header included, in chunks (for lossless copies)."""
        for start, length in _chunks(self.offset, self.offset + self.size, chunk_size):
            view = self._src.view(start, length)
            yield view if view is not None else self._src.read(start, length)

    def verify(self) -> None:
        """Check the content against the header's checksum; raises :class:`ChecksumError`.

        The bytes are read with ``pread``, not through the memory map, so a file that shrank
        since it was opened gives :class:`TruncatedError` instead of killing the process."""
        scratch = memoryview(bytearray(min(CHUNK_SIZE, self.size - fmt.HEADER_SIZE)))
        crc = 0
        for start, length in _chunks(self.info_offset, self.offset + self.size):
            chunk = scratch[:length]
            self._src.read_into(start, chunk)
            crc = crc32(chunk, crc)
        self._check(crc)

    def read_payload_into(self, buffer: memoryview, verify: bool = False) -> None:
        """Copy the payload into ``buffer`` (by ``pread``, never through the memory map); with
        ``verify``, check the blob's checksum in the same pass (:class:`ChecksumError`)."""
        if len(buffer) != self.payload_size:
            raise PopefError(
                f"read_payload_into() needs a buffer of {self.payload_size} bytes, "
                f"got {len(buffer)}"
            )
        if not verify:
            self._src.read_into(self.payload_offset, buffer)
            return
        crc = crc32(self._src.read(self.info_offset, self.payload_offset - self.info_offset))
        for start, length in _chunks(self.payload_offset, self.payload_offset + self.payload_size):
            chunk = buffer[start - self.payload_offset : start - self.payload_offset + length]
            self._src.read_into(start, chunk)
            crc = crc32(chunk, crc)
        end = self.payload_offset + self.payload_size
        crc = crc32(self._src.read(end, self.offset + self.size - end), crc)
        self._check(crc)

    def _check(self, crc: int) -> None:
        if crc != self.checksum:
            raise ChecksumError(
                f"checksum mismatch: header says {self.checksum:#010x}, content gives {crc:#010x}",
                offset=self.offset,
                blob_index=self.index,
                field="checksum",
                source=self.source,
            )


def _chunks(start: int, end: int, size: int = CHUNK_SIZE) -> Iterator[tuple[int, int]]:
    for offset in range(start, end, size):
        yield offset, min(size, end - offset)


# -- indexing ----------------------------------------------------------------------------

_VERSIONS: dict[bytes, tuple[str, tuple[int, int] | None]] = {}
_BLOB_TYPES = {int(t): t for t in BlobType}


def _index(source: _Source) -> Iterator[Blob]:
    """Walk the headers of a source, checking each before trusting any of its sizes."""
    unpack = fmt.FAST_HEADER.unpack_from
    new_blob = _new_blob
    offset, index, end = 0, 0, source.size
    # Headers are read a window at a time while blobs are small (thousands of small tensors
    # cost one read per window, not one per blob), one at a time once they are large.
    window, window_start, window_end, read_ahead = b"", 0, 0, _HEADER_WINDOW
    while offset < end:
        remaining = end - offset
        if remaining < fmt.HEADER_SIZE:
            raise _short_header_error(source, offset, index, remaining)
        if offset + fmt.HEADER_SIZE > window_end:
            window_start = offset
            window = source.read(offset, min(remaining, max(read_ahead, fmt.HEADER_SIZE)))
            window_end = offset + len(window)
        (
            magic,
            version_raw,
            total,
            blob_type,
            _flags,
            info_size,
            payload_size,
            checksum,
            _reserved,
        ) = unpack(window, offset - window_start)
        version_text, version = _VERSIONS.get(version_raw) or _version(version_raw)
        if (
            magic != fmt.MAGIC
            or version is None
            or version[0] != fmt.FORMAT_VERSION[0]
            or total < fmt.ALIGNMENT
            or total % fmt.ALIGNMENT
            or total > remaining
            or info_size > fmt.MAX_INFO_SIZE
            or fmt.total_size(info_size, payload_size) != total
        ):
            head = window[offset - window_start : offset - window_start + fmt.HEADER_SIZE]
            raise _header_error(
                source,
                offset,
                index,
                remaining,
                bytes(head),
                version,
                total,
                info_size,
                payload_size,
            )
        yield new_blob(
            source.name,
            index,
            offset,
            total,
            _BLOB_TYPES.get(blob_type, blob_type),
            version_text,
            info_size,
            payload_size,
            checksum,
            source,
        )
        offset += total
        index += 1
        read_ahead = _HEADER_WINDOW if total <= _SMALL_BLOB else 0


# The headers that follow a blob of at most _SMALL_BLOB bytes are read _HEADER_WINDOW bytes at
# a time (at least 16 headers a read); after a larger one, a header at a time.
_SMALL_BLOB = 4 << 10
_HEADER_WINDOW = 64 << 10
_new_blob = trusted_constructor(Blob)  # _index checks every field before making a Blob


def _version(raw: bytes) -> tuple[str, tuple[int, int] | None]:
    text = raw.rstrip(b"\0").decode("ascii", "replace")
    parsed = (text, fmt.parse_version(text))
    if len(_VERSIONS) < 64:
        _VERSIONS[raw] = parsed
    return parsed


def _header_error(
    source: _Source,
    offset: int,
    index: int,
    remaining: int,
    head: bytes,
    version: tuple[int, int] | None,
    total: int,
    info_size: int,
    payload_size: int,
) -> FormatError:
    """The first problem of a header that failed the checks, as an error naming the field."""
    magic, version_raw = head[:8], head[8:16]

    def error(kind: type[FormatError], message: str, field: str | None, at: int) -> FormatError:
        return kind(message, offset=offset + at, blob_index=index, field=field, source=source.name)

    if index and head == bytes(fmt.HEADER_SIZE):
        scan = _next_header(source, offset + fmt.ALIGNMENT)
        if scan.follower is not None:
            return error(
                BadMagicError,
                f"blob header is all zeros, yet a valid blob header "
                f"follows at offset {scan.follower:#x}: {_DAMAGED_MIDDLE}",
                "magic",
                0,
            )
        if scan.unread:
            return _unchecked_tail(source, offset, index, "blob header is all zeros", scan, "magic")
        return _partial_tail(source, offset, index, "its header was never written")
    if magic != fmt.MAGIC:
        what = (_foreign_file(head) if offset == 0 else None) or "not a PopEF blob"
        return error(
            BadMagicError,
            f"{what}: expected magic {fmt.MAGIC.hex(' ')}, found {bytes(magic).hex(' ')}",
            "magic",
            0,
        )
    if version is None:
        return error(
            FormatError,
            f"bad version string {version_raw.rstrip(bytes(1))!r}: expected MAJOR.MINOR",
            "version",
            8,
        )
    if version[0] != fmt.FORMAT_VERSION[0]:
        return error(
            UnsupportedVersionError,
            f"unsupported blob version {version[0]}.{version[1]}: this library reads "
            f"{fmt.FORMAT_VERSION[0]}.x",
            "version",
            8,
        )
    if _provisional(head):
        # A partial tail whatever follows; a blob header after it is only reported: it is
        # either data of the unfinished payload or a later blob that reached the disk first.
        follower = _next_header(source, offset + fmt.ALIGNMENT).follower
        return _partial_tail(
            source,
            offset,
            index,
            "its writer never finished it (its header is provisional: total_size 0)",
            "total_size",
            follower,
        )
    if total < fmt.ALIGNMENT or total % fmt.ALIGNMENT:
        return error(
            FormatError,
            f"bad blob size {total}: must be a positive multiple of {fmt.ALIGNMENT}",
            "total_size",
            16,
        )
    if total > remaining and index:
        scan = _next_header(source, offset + fmt.ALIGNMENT)
        if scan.follower is not None:
            return error(
                FormatError,
                f"bad blob size {total}: header says {total} bytes but "
                f"{remaining} remain, yet a valid blob header follows at "
                f"offset {scan.follower:#x}: {_DAMAGED_MIDDLE}",
                "total_size",
                16,
            )
        detail = f"header says {total} bytes but {remaining} remain"
        if scan.unread:
            return _unchecked_tail(
                source, offset, index, f"bad blob size {total}: {detail}", scan, "total_size"
            )
        return _partial_tail(source, offset, index, detail, "total_size")
    if total > remaining:
        return error(
            TruncatedError,
            f"truncated blob: header says {total} bytes but {remaining} remain",
            "total_size",
            16,
        )
    if info_size > fmt.MAX_INFO_SIZE:
        return error(
            FormatError,
            f"blob info of {info_size} bytes exceeds the limit of {fmt.MAX_INFO_SIZE}",
            "info_size",
            28,
        )
    expected = fmt.total_size(info_size, payload_size)
    return error(
        FormatError,
        f"inconsistent blob sizes: {info_size} bytes of info and "
        f"{payload_size} of payload need a blob of {expected} bytes, "
        f"header says {total}",
        "payload_size",
        32,
    )


_DAMAGED_MIDDLE = "the file is damaged in the middle, not cut short by an interrupted write"

# One 64-byte slot of a file, read as the blob header that may start it; the fields that make
# a header plausible (docs/format.md §2.1).
_HEADER_SLOT = np.dtype(
    {
        "names": ["magic", "major", "total", "info_size", "payload_size"],
        "formats": ["<u8", "u1", "<u8", "<u4", "<u8"],
        "offsets": [0, 8, 16, 28, 32],
        "itemsize": fmt.ALIGNMENT,
    }
)
_MAGIC_WORD = np.frombuffer(fmt.MAGIC, "<u8")[0]


@dataclass(frozen=True)
class _Scan:
    """What a look for the next blob header found."""

    follower: int | None  # the offset of the first plausible header, if any
    unread: int  # bytes after the looked-at window, never read (0: the look reached the end)


# How far past a damaged header the reader looks for the next blob header (docs/format.md §7.1).
SCAN_LIMIT = 1 << 30


def _next_header(source: _Source, start: int) -> _Scan:
    """The first aligned offset in ``SCAN_LIMIT`` bytes from ``start`` where a plausible blob
    header begins (magic, a version starting with a digit, consistent sizes).

    Tells damage in the middle of a file from a partial tail. Linear and cheap: the window is
    read once, in chunks, and each slot is checked by vectorised comparisons.
    """
    offset = fmt.align(start)
    stop = min(source.size, offset + SCAN_LIMIT)
    while offset + fmt.HEADER_SIZE <= stop:
        size = min(CHUNK_SIZE, stop - offset)
        chunk = source.read(offset, size)
        if size % fmt.ALIGNMENT:  # the last, partial slot: zeros never match the magic
            chunk = bytes(chunk) + bytes(fmt.ALIGNMENT - size % fmt.ALIGNMENT)
        slots = np.frombuffer(chunk, _HEADER_SLOT)
        payload_start = _aligned(slots["info_size"].astype(np.uint64) + fmt.HEADER_SIZE)
        expected = _aligned(payload_start + slots["payload_size"])
        plausible = (
            (slots["magic"] == _MAGIC_WORD)
            & (slots["major"] >= ord("0"))
            & (slots["major"] <= ord("9"))
            & (slots["total"] >= fmt.ALIGNMENT)
            & (slots["total"] == expected)
            & (slots["info_size"] <= fmt.MAX_INFO_SIZE)
        )
        found = np.flatnonzero(plausible)
        if found.size:
            return _Scan(offset + int(found[0]) * fmt.ALIGNMENT, 0)
        offset += size
    return _Scan(None, source.size - stop)


def _provisional(head: bytes) -> bool:
    """A header written before its blob's payload (docs/format.md §2.1): total_size 0, and
    payload_size and checksum 0 too (a total_size alone zeroed by damage is not one)."""
    _magic, _version, total, _type, _flags, _info, payload_size, checksum, _reserved = (
        fmt.FAST_HEADER.unpack(head)
    )
    return total == 0 and payload_size == 0 and checksum == 0


def _aligned(sizes: np.ndarray) -> np.ndarray:
    """fmt.align of each size; a sum that wraps past 2**64 only makes a false candidate."""
    mask = np.uint64(fmt.ALIGNMENT - 1)
    return (sizes + mask) & ~mask


def _short_header_error(source: _Source, offset: int, index: int, remaining: int) -> FormatError:
    """Fewer bytes than a header: the end of an interrupted write, or not a PopEF file."""
    if index:
        return _partial_tail(
            source,
            offset,
            index,
            f"{remaining} bytes where a {fmt.HEADER_SIZE}-byte header belongs",
        )
    data = source.read(offset, remaining)
    if not fmt.MAGIC.startswith(data[: len(fmt.MAGIC)]):
        what = _foreign_file(data) or "not a PopEF blob"
        return BadMagicError(
            f"{what}: expected magic {fmt.MAGIC.hex(' ')}, found "
            f"{bytes(data[: len(fmt.MAGIC)]).hex(' ')}",
            offset=offset,
            blob_index=index,
            field="magic",
            source=source.name,
        )
    return TruncatedError(
        f"truncated blob header: {fmt.HEADER_SIZE} bytes needed but {remaining} remain",
        offset=offset,
        blob_index=index,
        source=source.name,
    )


def _partial_tail(
    source: _Source,
    offset: int,
    index: int,
    detail: str,
    field: str | None = None,
    follower: int | None = None,
) -> PartialTailError:
    """A blob cut short after ``index`` complete ones: what a killed writer leaves."""
    complete = f"{index} complete blob{'s' if index != 1 else ''}"
    if follower is not None:
        detail += (
            f"; a blob header follows at offset {follower:#x}, inside the unfinished "
            "blob's payload or a later blob written before a system crash"
        )
    if not _is_named_file(source):
        remedy = "cut the bytes from there to keep them"
    elif follower is not None:
        remedy = f"'popef repair --force {source.name}' drops it and all that follows"
    else:
        remedy = f"run 'popef repair {source.name}' to drop it"
    return PartialTailError(
        f"partial blob at the end of the file (an interrupted write?): "
        f"{detail}; {complete} before offset {offset:#x}; {remedy}",
        complete_blobs=index,
        follower=follower,
        offset=offset,
        blob_index=index,
        field=field,
        source=source.name,
    )


def _unchecked_tail(
    source: _Source, offset: int, index: int, problem: str, scan: _Scan, field: str
) -> UncheckedTailError:
    """A damaged header with no blob header in the window looked at after it, and more bytes
    beyond that window: a partial tail or damage in the middle, not known which."""
    complete = f"{index} complete blob{'s' if index != 1 else ''}"
    remedy = (
        f"'popef repair --force {source.name}' drops it unread"
        if _is_named_file(source)
        else "cut the bytes from there to keep them"
    )
    return UncheckedTailError(
        f"{problem}, and no valid blob header follows in the next {_size_text(SCAN_LIMIT)} "
        f"(as far as the reader looks; {scan.unread} bytes after that were not read): the file "
        f"is damaged in the middle or cut short by an interrupted write; {complete} before "
        f"offset {offset:#x}; {remedy}",
        complete_blobs=index,
        unread_bytes=scan.unread,
        offset=offset,
        blob_index=index,
        field=field,
        source=source.name,
    )


def _size_text(size: int) -> str:
    return f"{size >> 30} GiB" if size >= 1 << 30 and not size % (1 << 30) else f"{size} bytes"


def _is_named_file(source: _Source) -> bool:
    """Whether the source is a file that ``popef repair`` can be given by its name."""
    return isinstance(source, (_MappedFile, _OpenFile))


# Files often given by mistake where a PopEF file belongs, by their leading bytes.
_FOREIGN_MAGICS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x93NUMPY", "a NumPy array (.npy)"),
    (b"PK\x03\x04", "a ZIP archive (.zip, .npz, ...)"),
    (b"PK\x05\x06", "a ZIP archive (.zip, .npz, ...)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\x7fELF", "an ELF binary"),
    (b"%PDF-", "a PDF document"),
)
_TEXT_SHOWN = 32  # characters of a text file quoted in the message


def known_file_kind(head: bytes) -> str | None:
    """What common kind of file starts with ``head`` ("a PNG image", ...), None when unknown."""
    return next((kind for magic, kind in _FOREIGN_MAGICS if head.startswith(magic)), None)


def _foreign_file(head: bytes) -> str | None:
    """What a source that is not PopEF looks like, from its first bytes (None when unknown)."""
    kind = known_file_kind(head)
    if kind is not None:
        return f"this is {kind}, not a PopEF file"
    text = _leading_text(head)
    if text is None:
        return None
    shown = text if len(text) <= _TEXT_SHOWN else text[:_TEXT_SHOWN] + "..."
    return f"not a PopEF file (it starts with text '{shown}')"


def _leading_text(head: bytes) -> str | None:
    """The first line of ``head`` when it reads as printable UTF-8 text, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":  # a character cut by the end is fine
            return None
        text = head[: exc.start].decode("utf-8")
    text = text.removeprefix("\ufeff").strip()
    if not text or not all(c.isprintable() or c in "\t\n\r" for c in text):
        return None
    return text.splitlines()[0].replace("\t", " ")
