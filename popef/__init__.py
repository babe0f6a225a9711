"""popef: read, write, inspect, run and serve PopEF (Poplar Exchange Format) files."""

from ._version import __version__
from .errors import (
    BadMagicError,
    ChecksumError,
    DeviceOutOfMemoryError,
    ExecutionError,
    FormatError,
    ModelError,
    PartialTailError,
    PopefError,
    TruncatedError,
    UncheckedTailError,
    UnsupportedVersionError,
    WriterError,
)
from .importers import import_onnx  # imports onnx and the runtime only when called
from .model import Model
from .reader import Blob, ExecutableReader, FeedReader, OpaqueReader, Reader, TensorReader
from .types import (
    POPART_PROGRAM_NAMES,
    Anchor,
    BlobType,
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
)
from .writer import BlobWriter, Writer

__all__ = [
    "__version__",
    # reading and writing
    "Reader",
    "Blob",
    "ExecutableReader",
    "TensorReader",
    "FeedReader",
    "OpaqueReader",
    "Writer",
    "BlobWriter",
    "Model",
    # importing and exporting
    "import_onnx",
    "export_onnx",
    # data model
    "BlobType",
    "DataType",
    "TensorType",
    "TensorInfo",
    "Option",
    "ProgramFlow",
    "Anchor",
    "Metadata",
    "ExecutableInfo",
    "TensorDataInfo",
    "FeedDataInfo",
    "OpaqueInfo",
    "POPART_PROGRAM_NAMES",
    # errors
    "PopefError",
    "FormatError",
    "BadMagicError",
    "UnsupportedVersionError",
    "TruncatedError",
    "PartialTailError",
    "UncheckedTailError",
    "ChecksumError",
    "ModelError",
    "WriterError",
    "ExecutionError",
    "DeviceOutOfMemoryError",
]


def export_onnx(source, out=None, **options):
    """A PopEF model's graph program as an ONNX model, written to ``out`` if given: see
    :func:`popef.runtime.to_onnx.export_onnx` (imports onnx and the runtime when called)."""
    from .runtime.to_onnx import export_onnx as _export_onnx

    return _export_onnx(source, out, **options)
