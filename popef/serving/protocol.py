"""Transport-neutral inference requests and responses (KServe v2 / Triton semantics).

The HTTP app and the gRPC servicer decode their wire forms into :class:`InferRequest` and
encode :class:`InferResponse`; the protocol core (:mod:`popef.serving.core`) never sees JSON,
HTTP or protobuf messages of the inference API.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "InferRequest",
    "InferResponse",
    "InputTensor",
    "OutputTensor",
    "RequestedOutput",
    "deserialize_bytes_tensor",
    "serialize_bytes_tensor",
]


@dataclass
class InputTensor:
    """One input: ``raw`` bytes (binary extension, gRPC raw contents) or ``data`` (JSON values,
    gRPC typed contents).

    A payload, not a descriptor: ``name``, ``datatype`` and ``shape`` are what the client sent
    (the shape with its batch dimension), checked against the served descriptor
    (:class:`popef.servable.TensorPlan`) before anything runs."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | memoryview | None = None
    data: Any = None
    parameters: dict = field(default_factory=dict)
    shared_memory: Any = None  # the region slice to read ``raw`` from (shared_memory.py)


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # HTTP: binary_data; None: the request's default
    classification: int = 0  # the classification extension's class count; 0: the tensor
    parameters: dict = field(default_factory=dict)


@dataclass
class InferRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict = field(default_factory=dict)
    inputs: Sequence[InputTensor] = ()
    outputs: Sequence[RequestedOutput] | None = None  # None: every output


@dataclass
class OutputTensor:
    """One output of a response: a payload made from its served descriptor
    (:class:`popef.servable.TensorPlan`'s name and datatype) and the array the model gave."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    binary: bool | None = None
    in_shared_memory: bool = False  # written to a region: the response carries no data

    def raw(self) -> bytes:
        """The tensor's bytes: little-endian row-major, BYTES as 4-byte length + bytes each."""
        if self.datatype == "BYTES":
            return serialize_bytes_tensor(self.data)
        array = self.data
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return array.tobytes()

    def json_data(self) -> list:
        """The values for a JSON response: standard JSON only, so NaN and infinities are the
        strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (protobuf's JSON mapping; numpy
        and so tritonclient's ``as_numpy`` read them back as floats)."""
        if self.datatype == "BYTES":
            return [
                x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                for x in self.data.reshape(-1)
            ]
        values = self.data.reshape(-1)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return [x if math.isfinite(x) else _NON_FINITE[repr(x)] for x in values.tolist()]
        return values.tolist()


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    id: str = ""
    outputs: list[OutputTensor] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)


def serialize_bytes_tensor(array: np.ndarray) -> bytes:
    parts = []
    for item in np.asarray(array, dtype=object).reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes_tensor(raw: bytes | memoryview) -> list[bytes]:
    raw = bytes(raw)
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ValueError("truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + n > len(raw):
            raise ValueError("BYTES element runs past the end of the data")
        items.append(raw[offset : offset + n])
        offset += n
    return items
