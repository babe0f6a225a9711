"""Graphcore's ``popef`` Python module, over this library.

The names and call shapes of Graphcore's module (camelCase getter methods, libpopef's setters,
``write(data, size)``); the work is done by :mod:`popef`. A script run through
``python -m popef.graphcore`` gets this module for ``import popef``.
"""

from ..errors import PopefError
from .data import (
    Anchor,
    DataType,
    FeedDataInfo,
    Metadata,
    Option,
    ProgramFlow,
    TensorDataInfo,
    TensorInfo,
    TensorType,
    popefTypeToNumpyDType,
)
from .enums import BlobType
from .reading import ExecutableReader, FeedReader, OpaqueReader, Reader, TensorReader
from .writing import BlobWriter, Writer

__all__ = [
    "Reader",
    "ExecutableReader",
    "TensorReader",
    "FeedReader",
    "OpaqueReader",
    "Writer",
    "BlobWriter",
    "BlobType",
    "DataType",
    "TensorType",
    "TensorInfo",
    "Option",
    "ProgramFlow",
    "Anchor",
    "Metadata",
    "TensorDataInfo",
    "FeedDataInfo",
    "popefTypeToNumpyDType",
    "PopefError",
]
