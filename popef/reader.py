"""Reader: PopEF files, streams and bytes -> blobs, lazily, with zero-copy tensor data.

Opening a source reads blob headers only, jumping from one to the next with their sizes. A blob's
info is decoded on first access; tensor data is never read until ``data()`` is called, and then
it is a read-only numpy view of the memory-mapped file. Sources, blob headers and indexing are
``popef.blob``'s, which the writer shares.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .blob import (
    CHUNK_SIZE,
    Blob,
    _BufferSource,
    _chunks,
    _index,
    _MappedFile,
    _Source,
    _StreamSource,
)
from .errors import FormatError, PopefError
from .format.codec import (
    decode_executable_info,
    decode_feed_data_info,
    decode_metadata,
    decode_opaque_info,
    decode_tensor_data_info,
    fast_feed_data_info,
    fast_tensor_data_info,
)
from .format.infos import Codec
from .types import (
    BlobType,
    ExecutableInfo,
    FeedDataInfo,
    Metadata,
    OpaqueInfo,
)

if TYPE_CHECKING:
    from .model import Model

__all__ = [
    "Reader",
    "Blob",
    "ExecutableReader",
    "TensorReader",
    "FeedReader",
    "OpaqueReader",
]

# A zlib stream cannot expand more than about 1032:1; a larger claim is a lie.
MAX_ZLIB_RATIO = 1032
# The most a compressed executable may claim to decompress to (docs/format.md §5.1), whatever
# its ratio; ExecutableReader.payload(max_size=...) takes a smaller or larger bound.
MAX_EXECUTABLE_SIZE = 4 << 30


class _BlobReader:
    """Common part of the typed blob readers."""

    def __init__(self, blob: Blob):
        self.blob = blob

    def verify(self) -> None:
        self.blob.verify()

    @property
    def name(self) -> str:
        """The blob's name (from its info; each reader defines it)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} blob #{self.blob.index} of {self.blob.source}>"
        )


class ExecutableReader(_BlobReader):
    def __init__(self, blob: Blob):
        super().__init__(blob)
        self._encoding = decode_executable_info(
            blob.info_bytes(), blob.location(), blob.newer_minor
        )
        if self._encoding.codec is Codec.NONE and self._encoding.uncompressed_size != 0:
            raise FormatError(
                f"bad executable info: uncompressed size must be 0 without compression, "
                f"found {self._encoding.uncompressed_size}",
                offset=blob.info_offset,
                blob_index=blob.index,
                field="uncompressed_size",
                source=blob.source,
            )

    @property
    def info(self) -> ExecutableInfo:
        return self._encoding.info

    @property
    def name(self) -> str:
        return self._encoding.info.name

    @property
    def compressed(self) -> bool:
        return self._encoding.info.compressed

    @property
    def size(self) -> int:
        """Size of the executable once decompressed."""
        if self._encoding.codec is Codec.NONE:
            return self.blob.payload_size
        return self._encoding.uncompressed_size

    def payload(self, max_size: int = MAX_EXECUTABLE_SIZE) -> bytes:
        """The executable's bytes, decompressed, in memory.

        A compressed payload is inflated to at most its stated ``uncompressed_size``, and a
        stated size over ``max_size`` is refused before anything is inflated. To check or hash
        a large executable without holding it, use :meth:`iter_payload` or
        :meth:`check_payload`.
        """
        if self._encoding.codec is Codec.NONE:
            return self.blob.read_payload()
        expected = self._claimed_size(max_size)
        raw = self.blob.read_payload()
        decoder = zlib.decompressobj()
        try:
            data = decoder.decompress(raw, expected + 1)
        except zlib.error as exc:
            raise self._inflate_error(str(exc)) from exc
        if len(data) != expected or not decoder.eof:
            raise self._size_error(expected, len(data), decoder.eof)
        return data

    def iter_payload(
        self, chunk_size: int = CHUNK_SIZE, max_size: int = MAX_EXECUTABLE_SIZE
    ) -> Iterator[bytes]:
        """The executable's bytes, decompressed, in chunks of at most ``chunk_size``.

        Memory stays bounded by a few chunks whatever the executable's size. The checks of
        :meth:`payload` hold, but a stream that ends early or runs past its stated size is
        only found when it gets there: a caller sees the chunks before the error.
        """
        if self._encoding.codec is Codec.NONE:
            yield from self.iter_stored(chunk_size)
            return
        stored = self.iter_stored(chunk_size)
        expected = self._claimed_size(max_size)
        decoder = zlib.decompressobj()
        produced = 0
        for pending in stored:
            while not decoder.eof:
                try:
                    out = decoder.decompress(pending, chunk_size)
                except zlib.error as exc:
                    raise self._inflate_error(str(exc)) from exc
                pending = decoder.unconsumed_tail
                produced += len(out)
                if produced > expected:
                    raise self._size_error(expected, produced, decoder.eof, more=True)
                if out:
                    yield out
                # A full chunk may leave output inside zlib even when the input is used up.
                if not pending and len(out) < chunk_size:
                    break
            if decoder.eof:
                break
        if produced != expected or not decoder.eof:
            raise self._size_error(expected, produced, decoder.eof)

    def iter_stored(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The payload as stored in the file (compressed when the executable is), in chunks
        of ``chunk_size`` bytes (the last one shorter)."""
        if chunk_size < 1:
            raise PopefError(f"needs a chunk size of at least 1, got {chunk_size}")
        end = self.blob.payload_offset + self.blob.payload_size
        for start, length in _chunks(self.blob.payload_offset, end, chunk_size):
            yield self.blob._src.read(start, length)

    def check_payload(self, max_size: int = MAX_EXECUTABLE_SIZE) -> None:
        """Check that a compressed executable inflates to its stated size (:class:`FormatError`
        otherwise), in bounded memory, keeping none of it; nothing to do when uncompressed."""
        if self._encoding.codec is Codec.NONE:
            return
        for _ in self.iter_payload(max_size=max_size):
            pass

    def _claimed_size(self, max_size: int) -> int:
        """The stated uncompressed size, once checked against the ratio zlib allows and
        against ``max_size``."""
        expected = self._encoding.uncompressed_size
        if expected > MAX_ZLIB_RATIO * max(self.blob.payload_size, 1):
            raise self._inflate_error(f"{self.blob.payload_size} bytes cannot expand to {expected}")
        if expected > max_size:
            raise FormatError(
                f"compressed executable '{self.name}' claims {expected} bytes "
                f"once decompressed, over the limit of {max_size}",
                offset=self.blob.info_offset,
                blob_index=self.blob.index,
                field="uncompressed_size",
                source=self.blob.source,
            )
        return expected

    def _inflate_error(self, detail: str) -> FormatError:
        return FormatError(
            f"bad compressed executable: {detail}",
            offset=self.blob.payload_offset,
            blob_index=self.blob.index,
            field="payload",
            source=self.blob.source,
        )

    def _size_error(self, expected: int, got: int, eof: bool, more: bool = False) -> FormatError:
        found = f"more than {expected}" if more else str(got)
        ended = "" if eof or more else " before the end of the stream"
        return self._inflate_error(
            f"expected {expected} bytes once decompressed, got {found}{ended}"
        )


class TensorReader(_BlobReader):
    """A tensor data blob: ``info`` (name + TensorInfo) and ``data()``."""

    _decode = staticmethod(decode_tensor_data_info)
    _decode_regular = staticmethod(fast_tensor_data_info)  # None: left to _decode

    def __init__(self, blob: Blob):
        self.blob = blob
        data = blob.info_bytes()
        info = self._decode_regular(data)
        self.info = (
            info if info is not None else self._decode(data, blob.location(), blob.newer_minor)
        )
        if self.info.size_in_bytes != blob.payload_size:
            raise FormatError(
                f"bad {blob.type_name.lower().replace('_', ' ')}: '{self.info.name}' "
                f"needs {self.info.size_in_bytes} bytes but the payload has {blob.payload_size}",
                offset=blob.info_offset,
                blob_index=blob.index,
                field="payload_size",
                source=blob.source,
            )

    @property
    def name(self) -> str:
        return self.info.name

    def data(self) -> np.ndarray:
        """The data, read-only, in the tensor's shape; zero-copy when the source is mapped."""
        info = self.info
        view = self.blob.payload_view()
        buffer = view if view is not None else self.blob.read_payload()
        dtype = info.tensor_info.numpy_dtype
        array = np.frombuffer(buffer, dtype=dtype, count=info.size_in_bytes // dtype.itemsize)
        array = array.reshape(info.data_shape)
        array.flags.writeable = False
        return array

    def read(self, verify: bool = False) -> np.ndarray:
        """The data as a new, writable array that owns its memory, read from the file (not
        through its memory map); with ``verify``, the blob's checksum is checked in the same
        pass (:class:`ChecksumError`)."""
        info = self.info
        array = np.empty(info.data_shape, info.tensor_info.numpy_dtype)
        self.blob.read_payload_into(memoryview(array.reshape(-1).view(np.uint8)), verify)
        return array


class FeedReader(TensorReader):
    """A feed data blob: ``num_items`` tensors of ``info.tensor_info``."""

    # A feed reader is a tensor reader whose infos are FeedDataInfo (the same fields and
    # num_items): the types of these overrides narrow the base's, which mypy refuses.
    _decode = staticmethod(decode_feed_data_info)  # type: ignore[assignment]
    _decode_regular = staticmethod(fast_feed_data_info)  # type: ignore[assignment]
    info: FeedDataInfo  # type: ignore[assignment]


class OpaqueReader(_BlobReader):
    def __init__(self, blob: Blob):
        super().__init__(blob)
        self.info: OpaqueInfo = decode_opaque_info(
            blob.info_bytes(), blob.location(), blob.newer_minor
        )

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def executable(self) -> str:
        return self.info.executable

    def data(self) -> bytes:
        return self.blob.read_payload()


_READERS: dict[int, type[_BlobReader]] = {
    BlobType.POPLAR_EXECUTABLE: ExecutableReader,
    BlobType.DATA_TENSOR: TensorReader,
    BlobType.DATA_FEED: FeedReader,
    BlobType.OPAQUE: OpaqueReader,
}


# -- the reader ----------------------------------------------------------------------------


class Reader:
    """Reads one or more PopEF sources; each ``parse_*`` call adds its blobs."""

    def __init__(self) -> None:
        self._sources: list[_Source] = []
        self._blobs: list[Blob] = []
        self._decoded: dict[int, object] = {}  # id(blob) -> typed reader or Metadata
        self._models: list[Model] | None = None
        self._files: dict[tuple[int, int], str] = {}  # (device, inode) -> path it was read as

    # ---- adding sources
    def parse_file(self, path: str | os.PathLike[str]) -> None:
        """Add the blobs of the regular file at ``path``: its headers are read and checked
        now, the rest on access; tensor data is served from a read-only memory map. A file
        this reader has already read (by any path or link) is refused with PopefError."""
        try:
            name = os.fspath(path)
        except TypeError:
            raise PopefError(f"parse_file() needs a path, got {type(path).__name__}") from None
        try:
            source = _MappedFile(name)
        except (OSError, ValueError) as exc:
            raise PopefError(
                f"cannot read '{name}': {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        earlier = self._files.get(source.identity) if source.identity[1] else None
        if earlier is not None:  # its blobs would all be there twice
            source.close()
            raise PopefError(
                f"cannot read '{name}' twice: it is the file already read as '{earlier}' "
                "(expected each file once)"
            )
        self._add(source)
        self._files[source.identity] = name

    def parse_stream(self, stream: BinaryIO, name: str | None = None) -> None:
        """Read blobs from the current position of a binary stream to its end."""
        name = name or getattr(stream, "name", None) or "<stream>"
        name = str(name)
        try:
            seekable = stream.seekable()
        except (AttributeError, ValueError):
            seekable = False
        try:
            if seekable:
                source: _Source = _StreamSource(stream, name)
            else:
                source = _BufferSource(stream.read(), name)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise PopefError(f"cannot read '{name}': {exc}") from exc
        self._add(source)

    def parse_bytes(self, data: bytes | bytearray | memoryview, name: str = "<bytes>") -> None:
        """Add the blobs held in ``data`` (kept, not copied); ``name`` names it in errors."""
        try:
            source = _BufferSource(data, name)
        except (TypeError, ValueError) as exc:
            raise PopefError(
                f"parse_bytes() needs contiguous bytes, got {type(data).__name__}: {exc}"
            ) from None
        self._add(source)

    def _add(self, source: _Source) -> None:
        try:
            blobs = list(_index(source))
        except BaseException:
            source.close()
            raise
        self._sources.append(source)
        self._blobs.extend(blobs)
        self._models = None

    # ---- accessors
    def blobs(self) -> list[Blob]:
        """Every blob, known or not, in the order of the sources and of their bytes."""
        return list(self._blobs)

    def _typed(self, blob_type: BlobType) -> list[Any]:
        return [self._decode(b) for b in self._blobs if b.type == blob_type]

    def _decode(self, blob: Blob) -> Any:  # a Metadata or a blob reader, by the blob's type
        key = id(blob)
        value = self._decoded.get(key)
        if value is not None:
            return value
        if blob.type == BlobType.METADATA:
            value = decode_metadata(blob.info_bytes(), blob.location(), blob.newer_minor)
        else:
            value = _READERS[blob.type](blob)
        self._decoded[key] = value
        return value

    def decoded(
        self, blob: Blob
    ) -> Metadata | ExecutableReader | TensorReader | OpaqueReader | None:
        """The typed view of one blob: a Metadata or a blob reader; None for unknown types."""
        return self._decode(blob) if blob.known else None

    def metadata(self) -> list[Metadata]:
        """The metadata of every metadata blob, decoded on first access."""
        return self._typed(BlobType.METADATA)

    def executables(self) -> list[ExecutableReader]:
        """A reader of each executable blob."""
        return self._typed(BlobType.POPLAR_EXECUTABLE)

    def tensors(self) -> list[TensorReader]:
        """A reader of each tensor data blob: name, type and shape, and its data."""
        return self._typed(BlobType.DATA_TENSOR)

    def feeds(self) -> list[FeedReader]:
        """A reader of each feed data blob."""
        return self._typed(BlobType.DATA_FEED)

    def opaque_blobs(self) -> list[OpaqueReader]:
        """A reader of each opaque blob."""
        return self._typed(BlobType.OPAQUE)

    def unknown_blobs(self) -> list[Blob]:
        """The blobs of types this library does not know, kept as they are."""
        return [b for b in self._blobs if not b.known]

    def models(self) -> list[Model]:
        """The models of all sources, linked and checked (raises ModelError)."""
        if self._models is None:
            from .model import build_models

            self._models = build_models(self)
        return list(self._models)

    def verify(self) -> None:
        """Decode every blob and check every checksum; raises the first problem found."""
        for blob in self._blobs:
            blob.verify()
            self.decoded(blob)

    # ---- lifetime
    def close(self) -> None:
        """Release the sources. Arrays returned by ``data()`` keep their mapping alive."""
        for source in self._sources:
            source.close()
        self._sources.clear()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Reader: {len(self._blobs)} blobs from {len(self._sources)} sources>"
