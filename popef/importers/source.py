"""Reading an ONNX model: the file (or proto), its external data and its tensors as numpy.

Everything that can go wrong while reading — a file that is not ONNX, a truncated protobuf,
external data that is missing or shorter than the model says, a dtype PopEF cannot hold —
raises :class:`popef.ExecutionError` naming the file and the tensor.

External data (``model.onnx.data`` beside ``model.onnx``) is mapped with ``numpy.memmap``
rather than read into the protobuf, so a model of any size costs its weights once, read
straight from the page cache into the PopEF file, and nothing is ever serialized back to
protobuf (which cannot hold more than 2 GB).
"""

from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..blob import file_kind
from ..errors import ExecutionError
from ..escaping import escape_text
from ..runtime.ops.elementwise import ONNX_DTYPE_NAMES, ONNX_DTYPES
from .wire import MIN_INLINE_BYTES, InlineWeights, find_inline_weights

__all__ = [
    "OnnxSource",
    "load_source",
    "numpy_dtype_of",
    "require_onnx",
    "tensor_to_array",
]

# the typed repeated field of TensorProto holding each dtype's values when raw_data is empty
_FIELD_OF_ONNX = {
    1: "float_data",
    2: "int32_data",
    3: "int32_data",
    4: "int32_data",
    5: "int32_data",
    6: "int32_data",
    7: "int64_data",
    9: "int32_data",
    10: "int32_data",
    11: "double_data",
    12: "uint64_data",
    13: "uint64_data",
}

MAX_TENSOR_ELEMENTS = 1 << 40  # refuse declared shapes beyond this before allocating anything


def require_onnx():
    """The ``onnx`` module, or an ExecutionError naming the extra that installs it."""
    try:
        import onnx
    except ImportError:
        raise ExecutionError(
            "importing ONNX models needs the onnx package: pip install 'popef[onnx]'"
        ) from None
    return onnx


def numpy_dtype_of(elem_type: int, what: str) -> np.dtype:
    """The numpy dtype of an ONNX element type; ExecutionError naming ``what`` otherwise."""
    try:
        return ONNX_DTYPES[int(elem_type)]
    except (KeyError, TypeError, ValueError):
        name = ONNX_DTYPE_NAMES.get(elem_type, f"#{elem_type}")
        supported = ", ".join(ONNX_DTYPE_NAMES[k] for k in sorted(ONNX_DTYPES))
        raise ExecutionError(
            f"{what} has dtype {name}, which PopEF cannot hold (supported: {supported})"
        ) from None


@dataclass
class OnnxSource:
    """A model read from a file or given as a proto, and where its external data lies."""

    model: Any  # onnx.ModelProto
    label: str  # how messages name it: the path, or "the model"
    base_dir: str | None  # the folder external data paths are relative to
    #: the .onnx file whose inline weights were left out of ``model`` (see importers/wire.py)
    inline_weights_path: str | None = None
    #: the external-data location that stands for that file (unique to this reading)
    inline_location: str | None = None


def load_source(model: Any, *, base_dir: str | None = None) -> OnnxSource:
    """Read ``model`` (a path, bytes or an ``onnx.ModelProto``) without its external data."""
    source = _load_source(model, base_dir)
    _check_text(source.model.graph, source.label)
    return source


def _check_text(graph: Any, label: str) -> None:
    """Refuse names that are not text: protobuf hands a string field that is not valid UTF-8
    over as bytes, which every message would otherwise trip on."""

    def check(value: Any, what: str) -> None:
        if not isinstance(value, str):
            raise ExecutionError(
                f"{label} is not a valid ONNX model: {what} is not UTF-8 text "
                f"({bytes(value)[:32]!r})"
            )

    graphs = [graph]
    while graphs:
        g = graphs.pop()
        check(g.name, "a graph name")
        for values, what in (
            (g.input, "an input name"),
            (g.output, "an output name"),
            (g.value_info, "a value_info name"),
        ):
            for value in values:
                check(value.name, what)
                if value.type.HasField("tensor_type"):
                    for dim in value.type.tensor_type.shape.dim:
                        check(dim.dim_param, "a dimension name")
        for tensor in g.initializer:
            check(tensor.name, "an initializer name")
            for entry in tensor.external_data:
                check(entry.key, "an external data key")
                check(entry.value, "an external data value")
        for node in g.node:
            for value, what in (
                (node.name, "a node name"),
                (node.op_type, "an op type"),
                (node.domain, "a node domain"),
            ):
                check(value, what)
            for name in (*node.input, *node.output):
                check(name, "a tensor name")
            for attribute in node.attribute:
                check(attribute.name, "an attribute name")
                check(attribute.ref_attr_name, "an attribute reference")
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
                graphs.extend(attribute.graphs)


def _load_source(model: Any, base_dir: str | None) -> OnnxSource:
    onnx = require_onnx()
    if isinstance(model, onnx.ModelProto):
        return OnnxSource(model, "the model", base_dir)
    if isinstance(model, (bytes, bytearray, memoryview)):
        return OnnxSource(_parse(onnx, bytes(model), "the model"), "the model", base_dir)
    if not isinstance(model, (str, os.PathLike)):
        raise ExecutionError(
            f"an ONNX model must be a path, bytes or an onnx.ModelProto, got {type(model).__name__}"
        )
    path = os.fspath(model)
    label = f"'{escape_text(path, backslashes=False)}'"
    if os.path.isdir(path):
        raise ExecutionError(f"{label} is a directory, expected an .onnx file")
    base_dir = base_dir or os.path.dirname(os.path.abspath(path))
    try:
        with _open_regular(path, label) as f:
            found = _skeleton(f)
            if found is not None:  # the weights stay in the file, memory-mapped later
                try:
                    return OnnxSource(
                        _parse(onnx, found.skeleton, label),
                        label,
                        base_dir,
                        inline_weights_path=os.path.abspath(path),
                        inline_location=found.location,
                    )
                except ExecutionError:
                    pass  # parsed whole below, which says what is wrong with the file
            f.seek(0)
            data = f.read()
    except OSError as exc:
        raise ExecutionError(f"cannot read {label}: {exc.strerror or exc}") from None
    return OnnxSource(_parse(onnx, data, label), label, base_dir)


def _open_regular(path: str, label: str) -> BinaryIO:
    """``path`` open for reading if it is a regular file. A FIFO would block the open and a
    device such as /dev/zero would be read without end: both are refused."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ExecutionError(
                f"cannot read {label}: not a regular file (found "
                f"{file_kind(mode)}), expected an .onnx file"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _skeleton(f) -> InlineWeights | None:
    """The model file without its large inline weights, or None (then it is parsed whole)."""
    size = os.fstat(f.fileno()).st_size
    if size < MIN_INLINE_BYTES:
        return None
    try:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    with mapped:
        return find_inline_weights(mapped)


def _parse(onnx, data: bytes, label: str):
    from google.protobuf.message import DecodeError

    if not data:
        raise ExecutionError(f"{label} is empty, expected an ONNX model")
    if data.startswith(b"POPEF") or data[:4] in (b"\x89PNG", b"PK\x03\x04"):
        raise ExecutionError(f"{label} is not an ONNX model (it starts with {data[:8]!r})")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ExecutionError(
            f"{label} is not a valid ONNX model (corrupt or truncated protobuf: {exc})"
        ) from None
    if not proto.HasField("graph"):
        raise ExecutionError(
            f"{label} is not a valid ONNX model: it has no graph (corrupt, "
            "truncated or not an ONNX file)"
        )
    return proto


def tensor_to_array(tensor: Any, source: OnnxSource, what: str) -> np.ndarray:
    """A TensorProto as a read-only numpy array (a memory map for external data)."""
    dtype = numpy_dtype_of(tensor.data_type, what)
    shape = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in shape):
        raise ExecutionError(f"{what} has a negative dimension: {list(shape)}")
    count = 1
    for d in shape:
        count *= d
    if count > MAX_TENSOR_ELEMENTS:
        raise ExecutionError(f"{what} declares {count} elements, more than {MAX_TENSOR_ELEMENTS}")
    nbytes = count * dtype.itemsize
    if tensor.data_location == 1:  # EXTERNAL
        array = _external(tensor, source, what, dtype, count)
    elif tensor.HasField("raw_data"):
        raw = tensor.raw_data
        if len(raw) != nbytes:
            raise ExecutionError(
                f"{what}: raw data holds {len(raw)} bytes, expected {nbytes} "
                f"for {dtype.name}{list(shape)}"
            )
        array = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    else:
        values = getattr(tensor, _FIELD_OF_ONNX[tensor.data_type])
        if len(values) != count:
            raise ExecutionError(
                f"{what}: holds {len(values)} values, expected {count} for "
                f"{dtype.name}{list(shape)}"
            )
        if tensor.data_type == 10:  # FLOAT16 values are stored as their bits in int32_data
            array = np.asarray(values, dtype=np.uint16).view(np.float16)
        else:
            array = np.asarray(values).astype(dtype)
    array = array.reshape(shape)
    if array.dtype.byteorder not in ("=", "|", "<" if np.little_endian else ">"):
        array = array.astype(dtype)
    if array.flags.writeable:
        array.flags.writeable = False
    return array


def _external(
    tensor: Any, source: OnnxSource, what: str, dtype: np.dtype, count: int
) -> np.ndarray:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise ExecutionError(f"{what}: external data without a location")
    if source.inline_location is not None and location == source.inline_location:
        # written by importers/wire.py for this reading: offset and length are its own
        assert source.inline_weights_path is not None
        length, nbytes = int(info["length"]), count * dtype.itemsize
        if length != nbytes:  # the message tensor_to_array gives for raw data inline
            raise ExecutionError(
                f"{what}: raw data holds {length} bytes, expected {nbytes} "
                f"for {dtype.name}{list(tensor.dims)}"
            )
        return _mapped(
            source.inline_weights_path, source.label, what, dtype, count, int(info["offset"])
        )
    if "\x00" in location:
        raise ExecutionError(
            f"{what}: external data location '{escape_text(location)}' is not a file name"
        )
    if source.base_dir is None:
        raise ExecutionError(
            f"{what}: its data is in the external file '{escape_text(location)}'"
            "; give the model as a path (or base_dir) so it can be found"
        )
    if os.path.isabs(location) or ".." in location.replace("\\", "/").split("/"):
        raise ExecutionError(
            f"{what}: external data location '{escape_text(location)}' must be "
            "a relative path inside the model's folder"
        )
    path = os.path.join(source.base_dir, location)
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise ExecutionError(f"{what}: external data offset or length is not a number") from None
    nbytes = count * dtype.itemsize
    if length is not None and length != nbytes:
        raise ExecutionError(f"{what}: external data length is {length} bytes, expected {nbytes}")
    try:
        path, mode, size = _regular_inside(path, source.base_dir)
    except OSError as exc:
        raise ExecutionError(
            f"{what}: cannot read its external data file "
            f"'{escape_text(location)}': {exc.strerror or exc}"
        ) from None
    if mode is None:  # a symbolic link out of the folder
        raise ExecutionError(
            f"{what}: external data location '{escape_text(location)}' leads out of the "
            "model's folder through a symbolic link, expected a file inside it"
        )
    if not stat.S_ISREG(mode):  # a FIFO would block, a device read without end
        raise ExecutionError(
            f"{what}: external data location '{escape_text(location)}' is "
            f"{file_kind(mode)}, expected a regular file"
        )
    if offset < 0 or offset + nbytes > size:
        raise ExecutionError(
            f"{what}: external data needs bytes {offset:#x}..{offset + nbytes:#x} "
            f"of '{escape_text(location)}', which has {size:#x}"
        )
    return _mapped(path, f"'{escape_text(location)}'", what, dtype, count, offset)


def _regular_inside(path: str, base_dir: str) -> tuple[str, int | None, int]:
    """What ``path`` names once every symbolic link is followed: that path (the one then
    mapped, so that a link changed meanwhile is not followed again), its mode and size; a mode
    of None when it lies outside ``base_dir`` (then nothing of it is looked at)."""
    base = os.path.realpath(base_dir)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base:
        return real, None, 0
    found = os.stat(real)
    return real, found.st_mode, found.st_size


def _mapped(
    path: str, label: str, what: str, dtype: np.dtype, count: int, offset: int
) -> np.ndarray:
    if count == 0:
        return np.zeros(count, dtype)
    try:
        return np.memmap(
            path, dtype=dtype.newbyteorder("<"), mode="r", offset=offset, shape=(count,)
        )
    except (OSError, ValueError) as exc:
        raise ExecutionError(f"{what}: cannot map its data in {label}: {exc}") from None
