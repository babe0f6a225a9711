"""Writer: streaming blobs into a new file, an existing file (append) or a binary stream.

Mirrors the reader: the same schemas build what it parses. Only one blob writer is active at a
time; starting another blob (or closing the writer) finishes the active one, and a finished
blob writer refuses further use.

Creating a file is atomic and durable: blobs go to a file nobody sees (on Linux an unnamed
``O_TMPFILE`` that vanishes with the process, elsewhere a hidden temporary beside the
destination), which is synced and then replaces the destination when :meth:`Writer.close`
succeeds. Each blob starts with a provisional header (total_size 0) that says it is unfinished;
where the output is the destination itself (append mode, a stream), the real header replaces
it and is handed to the OS as soon as the blob is finished, so a killed process loses only the
blob it was writing, and readers recognise that one as a partial tail. An appending writer
holds an exclusive lock on the file (:mod:`popef.locking`) until it is closed: a second
appender is refused, not interleaved; and it refuses a file whose headers do not index cleanly
(one that ends in a partial blob must be repaired first).
"""

from __future__ import annotations

import concurrent.futures
import enum
import os
import stat
import tempfile
import zlib
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING, BinaryIO

import construct
import numpy as np
import numpy.typing as npt

from . import format as fmt
from .atomic import PrivateFile
from .blob import CHUNK_SIZE, Blob, index_open_file
from .errors import FormatError, PartialTailError, PopefError, WriterError
from .format import codec
from .format.checksum import crc32
from .format.infos import Codec
from .locking import lock_exclusively
from .types import BlobType, FeedDataInfo, Metadata, OpaqueInfo, TensorDataInfo, TensorInfo

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

__all__ = ["Writer", "BlobWriter"]

# Payload writes at least this large are hashed on a worker thread while they are written.
_PIPELINE_MIN = 256 << 10
_SPOOL_MEMORY = 64 << 20
_MAX_PENDING_HEADERS = 4096
_hash_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _hash_pool
    if _hash_pool is None:
        _hash_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="popef-crc")
    return _hash_pool


def _bytes_view(data: Buffer) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise WriterError(f"write() needs a bytes-like object, got {type(data).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    if view.nbytes == 0:
        return memoryview(b"")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class _State(enum.Enum):
    ACTIVE = "active"
    CLOSED = "closed"
    DEACTIVATED = "deactivated"


class BlobWriter:
    """Writes the payload of one blob; get one from a ``Writer.create_*`` method."""

    def __init__(
        self,
        writer: Writer,
        blob_type: BlobType,
        label: str,
        info: bytes | Callable[[int], bytes],
        expected_size: int | None = None,
        compress: bool = False,
    ) -> None:
        self._writer = writer
        self._type = blob_type
        self._label = label  # for messages: "tensor data 'w1'"
        self._expected = expected_size
        self._written = 0  # bytes given to write()
        self._state = _State.ACTIVE
        self._compressor = zlib.compressobj(6) if compress else None
        # An info that depends on the payload (the size of a compressed executable) is built
        # at the end: the payload is spooled apart until then.
        self._deferred_info = info if callable(info) else None
        self._out = writer._blob_target(spool=self._deferred_info is not None)
        self._start = self._out.tell()
        self._crc = 0
        self._info_size = 0
        if not callable(info):
            self._write_header_and_info(info)

    def _write_header_and_info(self, info: bytes) -> None:
        # A provisional header (total_size 0: docs/format.md §2.1) marks the blob unfinished
        # until the real one is written over it, when the sizes are known.
        self._out.write(
            fmt.FAST_HEADER.pack(
                fmt.MAGIC, fmt.VERSION_STRING.encode(), 0, int(self._type), 0, len(info), 0, 0, 0
            )
        )
        padding = fmt.payload_offset(len(info)) - fmt.HEADER_SIZE - len(info)
        self._write_content(info + bytes(padding))
        self._info_size = len(info)

    @property
    def active(self) -> bool:
        return self._state is _State.ACTIVE

    def _check_active(self) -> None:
        if self._state is not _State.ACTIVE:
            raise WriterError(
                f"the blob writer of {self._label} is {self._state.value}: create a new blob writer"
            )

    def _write_content(self, view: Buffer) -> None:
        self._crc = crc32(view, self._crc)
        self._out.write(view)

    def write(self, data: Buffer) -> int:
        """Append bytes to the payload; returns how many were taken."""
        self._check_active()
        self._writer._check_usable()
        view = _bytes_view(data)
        size = len(view)
        if self._expected is not None and self._written + size > self._expected:
            raise WriterError(
                f"{self._label} takes {self._expected} bytes; writing {size} more "
                f"after {self._written} would exceed it"
            )
        try:
            if self._compressor is not None:
                self._out.write(self._compressor.compress(view))
            elif size >= _PIPELINE_MIN:
                self._write_pipelined(view)
            else:
                self._write_content(view)
        except OSError as exc:
            self._writer._fail(exc)
        self._written += size
        return size

    def _write_pipelined(self, view: memoryview) -> None:
        """Hash each chunk on a worker thread while it is written (both release the GIL)."""
        pool, crc = _pool(), self._crc
        for start in range(0, len(view), CHUNK_SIZE):
            chunk = view[start : start + CHUNK_SIZE]
            pending = pool.submit(crc32, chunk, crc)
            self._out.write(chunk)
            crc = pending.result()
        self._crc = crc

    def close(self) -> None:
        """Finish the blob; closing twice is harmless."""
        if self._state is not _State.ACTIVE:
            return
        self._writer._finish(self)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()

    # ---- called by the Writer
    def _finish(self, state: _State) -> None:
        """Write the padding and the header; raises WriterError if the payload is incomplete."""
        self._state = state
        if self._expected is not None and self._written != self._expected:
            raise WriterError(
                f"{self._label} takes {self._expected} bytes but {self._written} were written"
            )
        if self._compressor is not None:
            self._out.write(self._compressor.flush())
        if self._deferred_info is not None:
            payload = self._out
            payload_size = payload.tell() - self._start
            payload.seek(self._start)
            self._out = self._writer._blob_target(spool=False)
            self._start = self._out.tell()
            self._write_header_and_info(self._deferred_info(self._written))
            while chunk := payload.read(CHUNK_SIZE):
                self._write_content(chunk)
            payload.close()
        else:
            payload_size = self._written
        info_size = self._info_size
        total = fmt.total_size(info_size, payload_size)
        used = fmt.payload_offset(info_size) + payload_size
        self._write_content(bytes(total - used))
        # FAST_HEADER is derived from the HEADER schema (tests check they agree)
        header = fmt.FAST_HEADER.pack(
            fmt.MAGIC,
            fmt.VERSION_STRING.encode(),
            total,
            int(self._type),
            0,
            info_size,
            payload_size,
            self._crc,
            0,
        )
        if self._out is self._writer._out:
            self._writer._write_header(self._start, header)
        else:  # a spool, copied out once complete
            end = self._out.tell()
            self._out.seek(self._start)
            self._out.write(header)
            self._out.seek(end)


class Writer:
    """Writes PopEF blobs to a path (``mode="w"`` creates or replaces, ``"a"`` appends) or to
    a binary stream. Use as a context manager, or call :meth:`close`."""

    def __init__(self, target: str | os.PathLike[str] | BinaryIO, mode: str = "w") -> None:
        if mode not in ("w", "a"):
            raise WriterError(f"mode must be 'w' or 'a', got {mode!r}")
        self._active: BlobWriter | None = None
        self._closed = False
        self._failure: BaseException | None = None
        self._private_file: PrivateFile | None = None  # a new file, put in place on close
        self._path: str | None = None
        self._append_from: int | None = None
        self._spool: IO[bytes] | None = None
        # In a private file headers are patched in batches: rewriting a page soon after it was
        # written may wait for the page cache's writeback of it (a disk round trip per blob).
        self._private = False
        self._pending_headers: list[tuple[int, bytes]] = []
        if isinstance(target, (str, os.PathLike)):
            self._path = os.fspath(target)
            self._name = self._path
            self._open_path(mode)
            self._owns_stream = True
        else:
            if mode == "a":
                raise WriterError("append mode needs a path; a stream is always appended to")
            self._out: BinaryIO = target
            self._name = str(getattr(target, "name", "<stream>"))
            self._owns_stream = False
            try:
                self._seekable = target.seekable()
            except (AttributeError, ValueError):
                self._seekable = False

    def _open_path(self, mode: str) -> None:
        path = self._path
        assert path is not None
        try:
            if mode == "a" and os.path.exists(path):
                # O_NONBLOCK: a FIFO must not block the open; only a regular file is taken.
                fd = os.open(path, os.O_RDWR | getattr(os, "O_NONBLOCK", 0))
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise WriterError(f"cannot append to '{path}': not a regular file")
                    # Held until the file is closed (close, abort, or the process's end).
                    if not lock_exclusively(fd):
                        raise WriterError(
                            f"cannot append to '{path}': another writer is appending to it"
                        )
                    os.set_blocking(fd, True)
                    # Under the lock, so that no appender finishes a blob meanwhile.
                    _check_appendable(fd, path)
                except BaseException:
                    os.close(fd)
                    raise
                self._out = open(fd, "r+b")
                self._append_from = self._out.seek(0, os.SEEK_END)
            else:
                self._out = self._open_private(path)
        except OSError as exc:
            raise WriterError(f"cannot write '{path}': {exc.strerror or exc}") from exc
        self._seekable = True

    def _open_private(self, path: str) -> BinaryIO:
        """A file nobody sees until :meth:`close` puts it in place of ``path``."""
        self._private_file = PrivateFile(path)
        self._private = True
        return self._private_file.file

    # ---- state
    def _check_usable(self) -> None:
        if self._failure is not None:
            raise WriterError(f"writer of '{self._name}' failed earlier: {self._failure}")
        if self._closed:
            raise WriterError(f"writer of '{self._name}' is closed")

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        raise WriterError(f"writing '{self._name}' failed: {exc}") from exc

    def _blob_target(self, spool: bool) -> IO[bytes]:
        """Where a blob is assembled: the output itself, or a spool when it cannot seek."""
        if spool or not self._seekable:
            target = tempfile.SpooledTemporaryFile(_SPOOL_MEMORY)
            if not spool:
                self._spool = target
            return target
        return self._out

    def _write_header(self, offset: int, header: bytes) -> None:
        """Write the header of a finished blob: in a batch when the file is private, else at
        once and handed to the OS, so that the blob survives a kill of the process."""
        if self._private:
            self._pending_headers.append((offset, header))
            if len(self._pending_headers) >= _MAX_PENDING_HEADERS:
                self._patch_headers()
            return
        end = self._out.tell()
        self._out.seek(offset)
        self._out.write(header)
        self._out.seek(end)
        self._out.flush()

    def _patch_headers(self) -> None:
        if not self._pending_headers:
            return
        end = self._out.tell()
        for offset, header in self._pending_headers:
            self._out.seek(offset)
            self._out.write(header)
        self._out.seek(end)
        self._pending_headers.clear()

    def _finish(self, blob: BlobWriter, state: _State = _State.CLOSED) -> None:
        if blob is not self._active:
            return
        self._active = None
        try:
            blob._finish(state)
            if self._spool is not None:
                self._spool.seek(0)
                while chunk := self._spool.read(CHUNK_SIZE):
                    self._out.write(chunk)
                self._out.flush()  # a finished blob reaches the destination
        except WriterError:
            self._rollback(blob)
            raise
        except OSError as exc:
            self._fail(exc)
        finally:
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    def _rollback(self, blob: BlobWriter) -> None:
        """Forget a blob that could not be finished, so the file stays valid."""
        if self._spool is None and self._seekable:
            try:
                self._out.seek(blob._start)
                self._out.truncate()
            except OSError as exc:
                self._failure = exc

    def _begin(
        self,
        blob_type: BlobType,
        label: str,
        info: bytes | Callable[[int], bytes],
        expected_size: int | None = None,
        compress: bool = False,
    ) -> BlobWriter:
        self._check_usable()
        if self._active is not None:
            self._finish(self._active, _State.DEACTIVATED)
        try:
            blob = BlobWriter(self, blob_type, label, info, expected_size, compress)
        except OSError as exc:
            self._fail(exc)
        self._active = blob
        return blob

    # ---- blobs
    def write_metadata(self, metadata: Metadata) -> None:
        """Write a whole metadata blob."""
        if not isinstance(metadata, Metadata):
            raise WriterError(f"write_metadata() needs a Metadata, got {type(metadata).__name__}")
        info = _encode(codec.encode_metadata, metadata, f"metadata of '{metadata.executable}'")
        self._begin(BlobType.METADATA, f"metadata of '{metadata.executable}'", info).close()

    def create_executable(self, name: str, compress: bool = False) -> BlobWriter:
        """Start an executable blob named ``name``; write its bytes to the returned
        :class:`BlobWriter`. With ``compress``, they are stored as a zlib stream (spooled
        apart until the blob closes, since the info records the uncompressed size)."""
        if not isinstance(name, str) or not name:
            raise WriterError("an executable needs a non-empty name")
        label = f"executable '{name}'"
        if not compress:
            info = _encode(codec.encode_executable_info, (name, Codec.NONE, 0), label)
            return self._begin(BlobType.POPLAR_EXECUTABLE, label, info)
        _encode(codec.encode_executable_info, (name, Codec.ZLIB, 0), label)  # checks the name
        return self._begin(
            BlobType.POPLAR_EXECUTABLE,
            label,
            compress=True,
            info=lambda size: codec.encode_executable_info(name, Codec.ZLIB, size),
        )

    def create_tensor_data(self, info: TensorDataInfo) -> BlobWriter:
        """Start a tensor data blob; the returned :class:`BlobWriter` takes exactly
        ``info.size_in_bytes`` bytes, little-endian, in C order (:meth:`write_tensor` does
        this for a numpy array)."""
        if not isinstance(info, TensorDataInfo):
            raise WriterError(
                f"create_tensor_data() needs a TensorDataInfo, got {type(info).__name__}"
            )
        label = f"tensor data '{info.name}'"
        return self._begin(
            BlobType.DATA_TENSOR,
            label,
            _encode(codec.encode_tensor_data_info, info, label),
            info.size_in_bytes,
        )

    def create_feed_data(self, info: FeedDataInfo) -> BlobWriter:
        """Start a feed data blob; the returned :class:`BlobWriter` takes exactly
        ``info.size_in_bytes`` bytes: ``info.num_items`` items one after the other
        (:meth:`write_feed` does this for a numpy array)."""
        if not isinstance(info, FeedDataInfo):
            raise WriterError(f"create_feed_data() needs a FeedDataInfo, got {type(info).__name__}")
        label = f"feed data '{info.name}'"
        return self._begin(
            BlobType.DATA_FEED,
            label,
            _encode(codec.encode_feed_data_info, info, label),
            info.size_in_bytes,
        )

    def create_opaque_blob(self, name: str, executable_name: str) -> BlobWriter:
        """Start an opaque blob named ``name`` that belongs to the executable
        ``executable_name``; the returned :class:`BlobWriter` takes any bytes."""
        info = OpaqueInfo(name, executable_name)
        label = f"opaque blob '{name}'"
        return self._begin(BlobType.OPAQUE, label, _encode(codec.encode_opaque_info, info, label))

    def write_tensor(self, name: str, array: npt.ArrayLike) -> TensorDataInfo:
        """Write a numpy array (or anything ``numpy.asarray`` takes) as tensor data."""
        array = _little_endian(np.asarray(array))
        info = TensorDataInfo(name, TensorInfo.of(array))
        with self.create_tensor_data(info) as blob:
            blob.write(array)
        return info

    def write_feed(self, name: str, array: npt.ArrayLike) -> FeedDataInfo:
        """Write a numpy array as feed data: its first axis counts the items."""
        array = _little_endian(np.asarray(array))
        if array.ndim == 0:
            raise WriterError(f"feed data '{name}' needs an array with an item axis, got a scalar")
        item = TensorInfo.of(array[0] if len(array) else np.empty(array.shape[1:], array.dtype))
        info = FeedDataInfo(name, item, array.shape[0])
        with self.create_feed_data(info) as blob:
            blob.write(array)
        return info

    def copy_blob(self, blob: Blob | object) -> None:
        """Copy a blob from a reader byte for byte (known or unknown type)."""
        blob = getattr(blob, "blob", blob)
        if not isinstance(blob, Blob):
            raise WriterError(
                f"copy_blob() needs a Blob or a blob reader, got {type(blob).__name__}"
            )
        self._check_usable()
        if self._active is not None:
            self._finish(self._active, _State.DEACTIVATED)
        try:
            for chunk in blob.iter_raw():
                self._out.write(chunk)
            if not self._private:
                self._out.flush()
        except OSError as exc:
            self._fail(exc)

    # ---- lifetime
    def close(self) -> None:
        """Finish the active blob and commit: the destination changes only now."""
        if self._closed:
            return
        if self._failure is not None:
            self.abort()
            raise WriterError(f"writer of '{self._name}' failed earlier: {self._failure}")
        try:
            if self._active is not None:
                self._finish(self._active)
            self._patch_headers()
            self._out.flush()
            if self._private_file is not None:
                self._private_file.commit()  # durable, then in place of the destination
            elif self._owns_stream:
                os.fsync(self._out.fileno())
                self._out.close()
        except BaseException as exc:
            self.abort()
            if isinstance(exc, PopefError):
                raise
            raise WriterError(f"cannot write '{self._name}': {exc}") from exc
        self._closed = True

    def abort(self) -> None:
        """Give up: a new file is never created, an appended file gets its old size back."""
        if self._closed:
            return
        self._closed = True
        if self._active is not None:
            self._active._state = _State.DEACTIVATED
            self._active = None
        if self._private_file is not None:
            self._private_file.abort()
        elif self._owns_stream:
            try:
                if self._append_from is not None:
                    self._out.truncate(self._append_from)
                self._out.close()
            except OSError:
                pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _check_appendable(fd: int, path: str) -> None:
    """Refuse to append to a file whose blobs do not index cleanly: blobs written after a
    partial one would leave it in the middle, where repair can no longer drop it."""
    try:
        index_open_file(fd, path)
    except PartialTailError as exc:
        raise WriterError(
            f"cannot append to '{path}': it ends in a partial blob at offset "
            f"{exc.offset:#x}; run 'popef repair {path}' first"
        ) from exc
    except FormatError as exc:
        raise WriterError(f"cannot append to '{path}': {exc}") from exc


def _encode(function: Callable[..., bytes], value: object, label: str) -> bytes:
    try:
        return function(*value) if isinstance(value, tuple) else function(value)
    except construct.ConstructError as exc:
        message = str(exc).split("\n", 1)[-1].strip()
        raise WriterError(f"cannot encode {label}: {message}") from exc


def _little_endian(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    # not ascontiguousarray: it turns a scalar into a 1-element vector
    return array if array.flags.c_contiguous else array.copy(order="C")
