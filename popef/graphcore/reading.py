"""Graphcore's ``popef.Reader`` and blob readers, over :class:`popef.Reader`."""

from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np

from .. import reader as ours
from .data import FeedDataInfo, Metadata, Name, TensorDataInfo

__all__ = ["Reader", "ExecutableReader", "TensorReader", "FeedReader", "OpaqueReader"]


class ExecutableReader:
    """An executable blob: ``name`` and ``executable()`` (its bytes, decompressed)."""

    def __init__(self, reader: ours.ExecutableReader):
        self._reader = reader
        self.name = Name(reader.name)

    def executable(self) -> bytes:
        return self._reader.payload()

    def getStandaloneExecutableStream(self) -> BinaryIO:
        return io.BytesIO(self.executable())

    def __repr__(self) -> str:
        return f"<ExecutableReader {str(self.name)!r}>"


class TensorReader:
    """A tensor data blob: ``info`` (a TensorDataInfo) and ``data()`` (a numpy array)."""

    _info = staticmethod(TensorDataInfo._of)

    def __init__(self, reader: ours.TensorReader):
        self._reader = reader
        self.info = self._info(reader.info)

    def data(self) -> np.ndarray:
        """The data as a new, writable array of the blob's type and shape."""
        return self._reader.read()

    def getStandaloneDataStream(self) -> BinaryIO:
        return io.BytesIO(self._reader.blob.read_payload())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.info.name)!r}>"


class FeedReader(TensorReader):
    """A feed data blob: ``info`` (a FeedDataInfo) and ``data()``."""

    _info = staticmethod(FeedDataInfo._of)


class OpaqueReader:
    """An opaque blob: ``name`` (the producer's tag), ``executable`` and ``data()`` (bytes)."""

    def __init__(self, reader: ours.OpaqueReader):
        self._reader = reader
        self.name = Name(reader.name)
        self.executable = Name(reader.executable)

    def data(self) -> bytes:
        return self._reader.data()

    def getStandaloneDataStream(self) -> BinaryIO:
        return io.BytesIO(self.data())

    def getAvailableReadSize(self) -> int:
        return self._reader.blob.payload_size

    def __repr__(self) -> str:
        return f"<OpaqueReader {str(self.name)!r} of {str(self.executable)!r}>"


class Reader:
    """``popef::Reader``: parse one or more files or streams, then list their blobs.

    Each accessor returns a new list; the objects in it are built once per parse.
    """

    def __init__(self) -> None:
        self._reader = ours.Reader()
        self._views: dict[str, list] = {}

    def parseFile(self, path: str | os.PathLike) -> None:
        self._reader.parse_file(path)
        self._views.clear()

    def parseStream(self, stream: BinaryIO) -> None:
        self._reader.parse_stream(stream)
        self._views.clear()

    def _view(self, kind: str, wrap, blobs) -> list:
        if kind not in self._views:
            self._views[kind] = [wrap(blob) for blob in blobs()]
        return list(self._views[kind])

    def metadata(self) -> list[Metadata]:
        return self._view("metadata", Metadata._of, self._reader.metadata)

    def executables(self) -> list[ExecutableReader]:
        return self._view("executables", ExecutableReader, self._reader.executables)

    def tensors(self) -> list[TensorReader]:
        return self._view("tensors", TensorReader, self._reader.tensors)

    def feeds(self) -> list[FeedReader]:
        return self._view("feeds", FeedReader, self._reader.feeds)

    def opaqueBlobs(self) -> list[OpaqueReader]:
        return self._view("opaque", OpaqueReader, self._reader.opaque_blobs)

    def __repr__(self) -> str:
        return f"<popef.Reader: {len(self._reader.blobs())} blobs>"
