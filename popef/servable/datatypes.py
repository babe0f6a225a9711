"""Data types across the three vocabularies a served tensor lives in.

- the inference protocol's strings (``"FP32"``, ``"BYTES"``, … — KServe v2 / Triton),
- Triton's model configuration enum (``TYPE_FP32``, ``TYPE_STRING``, … in ``model_config.proto``),
- PopEF's :class:`popef.DataType` (``F32``, …), and numpy.

PopEF has no string, bfloat16 or float8 type that numpy knows, so ``BYTES`` and ``BF16`` are
served only as outputs of the classification extension (``BYTES``) and never as model tensors;
the PopEF float8 kinds have no Triton type at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import DataType

__all__ = [
    "TRITON_TYPES",
    "TritonType",
    "by_config_enum",
    "by_protocol_name",
    "config_type_name",
    "from_popef",
]


@dataclass(frozen=True)
class TritonType:
    name: str  # the protocol's datatype string
    config_name: str  # the model_config DataType enum member
    popef: DataType | None
    numpy: np.dtype | None  # None: no fixed-size numpy type (BYTES, BF16)

    @property
    def item_size(self) -> int | None:
        return None if self.numpy is None else self.numpy.itemsize


def _t(name: str, config: str, popef: DataType | None, numpy: str | None) -> TritonType:
    return TritonType(name, config, popef, None if numpy is None else np.dtype(numpy))


TRITON_TYPES: tuple[TritonType, ...] = (
    _t("BOOL", "TYPE_BOOL", DataType.BOOL, "?"),
    _t("UINT8", "TYPE_UINT8", DataType.U8, "u1"),
    _t("UINT16", "TYPE_UINT16", DataType.U16, "<u2"),
    _t("UINT32", "TYPE_UINT32", DataType.U32, "<u4"),
    _t("UINT64", "TYPE_UINT64", DataType.U64, "<u8"),
    _t("INT8", "TYPE_INT8", DataType.S8, "i1"),
    _t("INT16", "TYPE_INT16", DataType.S16, "<i2"),
    _t("INT32", "TYPE_INT32", DataType.S32, "<i4"),
    _t("INT64", "TYPE_INT64", DataType.S64, "<i8"),
    _t("FP16", "TYPE_FP16", DataType.F16, "<f2"),
    _t("FP32", "TYPE_FP32", DataType.F32, "<f4"),
    _t("FP64", "TYPE_FP64", DataType.F64, "<f8"),
    _t("BYTES", "TYPE_STRING", None, None),
    _t("BF16", "TYPE_BF16", None, None),
)

_BY_NAME = {t.name: t for t in TRITON_TYPES}
_BY_CONFIG = {t.config_name: t for t in TRITON_TYPES}
_BY_POPEF = {t.popef: t for t in TRITON_TYPES if t.popef is not None}

BYTES = _BY_NAME["BYTES"]


def by_protocol_name(name: str) -> TritonType | None:
    """The type of a protocol datatype string (``"FP32"``), None if there is none."""
    return _BY_NAME.get(name)


def _config_enum_name(value: int) -> str | None:
    """The ``model_config_pb2.DataType`` member named by ``value``, None when none is."""
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return mc.DataType.Name(value)
    except ValueError:
        return None


def by_config_enum(value: int) -> TritonType | None:
    """The type of a ``model_config_pb2.DataType`` value, None for TYPE_INVALID or unknown."""
    name = _config_enum_name(value)
    return None if name is None else _BY_CONFIG.get(name)


def config_type_name(value: int) -> str:
    """``TYPE_FP32`` for a config enum value, or the number when it has no name."""
    name = _config_enum_name(value)
    return str(value) if name is None else name


def from_popef(dtype: DataType) -> TritonType | None:
    """The Triton type of a PopEF type; None for the float8 kinds, which Triton lacks."""
    return _BY_POPEF.get(dtype)


def config_enum(t: TritonType) -> int:
    from tritonclient.grpc import model_config_pb2 as mc

    return mc.DataType.Value(t.config_name)
