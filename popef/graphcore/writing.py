"""Graphcore's ``popef.Writer`` and blob writers, over :class:`popef.Writer`.

As in libpopef, blob writers take ``write(data, size)`` and a new blob finishes the active
one. The file appears when the writer is closed; a writer the script forgets to close is
closed when it is garbage collected or when the interpreter exits, as libpopef's destructor
would.
"""

from __future__ import annotations

import os
import sys
import weakref
from typing import BinaryIO

import numpy as np

from .. import writer as ours
from ..errors import PopefError, WriterError
from .data import FeedDataInfo, Metadata, TensorDataInfo, _converted

__all__ = ["Writer", "BlobWriter"]


class BlobWriter:
    """Writes one blob's payload: ``write(data, size)`` writes the first ``size`` bytes."""

    def __init__(self, blob: ours.BlobWriter):
        self._blob = blob

    def write(self, data, size: int | None = None) -> None:
        view = _bytes_of(data)
        if size is None:
            size = len(view)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise WriterError(f"write() needs a size in bytes >= 0, got {size!r}")
        if size > len(view):
            raise WriterError(f"write() was asked for {size} bytes but the data holds {len(view)}")
        self._blob.write(view[:size])

    def close(self) -> None:
        self._blob.close()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


class Writer:
    """``popef::Writer`` on a path (created or replaced) or a binary stream."""

    def __init__(self, target: str | os.PathLike | BinaryIO):
        self._writer = ours.Writer(target)
        self._finalizer = weakref.finalize(self, _close_forgotten, self._writer)

    def writeMetadata(self, metadata: Metadata) -> None:
        self._writer.write_metadata(_converted(metadata, Metadata, "writeMetadata()"))

    write = writeMetadata  # libpopef's C++ name: Writer::write(const Metadata&)

    def createExecutable(self, name: str, compress: bool = False) -> BlobWriter:
        return BlobWriter(self._writer.create_executable(_plain(name), bool(compress)))

    def createTensorData(self, info: TensorDataInfo) -> BlobWriter:
        return BlobWriter(
            self._writer.create_tensor_data(_converted(info, TensorDataInfo, "createTensorData()"))
        )

    def createFeedData(self, info: FeedDataInfo) -> BlobWriter:
        return BlobWriter(
            self._writer.create_feed_data(_converted(info, FeedDataInfo, "createFeedData()"))
        )

    def createOpaqueBlob(self, name: str, executable: str) -> BlobWriter:
        return BlobWriter(self._writer.create_opaque_blob(_plain(name), _plain(executable)))

    def close(self) -> None:
        self._finalizer.detach()
        self._writer.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._finalizer.detach()
            self._writer.abort()


def _plain(value: object) -> object:
    """A str subclass (a :class:`Name`) as a plain str; anything else as given."""
    return str(value) if isinstance(value, str) else value


def _bytes_of(data) -> memoryview:
    """The bytes of ``data``: a bytes-like object, a numpy array or a str (as UTF-8)."""
    if isinstance(data, str):
        return memoryview(data.encode())
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    try:
        view = memoryview(data)
    except TypeError:
        raise WriterError(
            f"write() needs bytes, a numpy array or a str, got {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _close_forgotten(writer: ours.Writer) -> None:
    try:
        writer.close()
    except PopefError as exc:
        print(f"error: {exc}", file=sys.stderr)
