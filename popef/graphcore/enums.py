"""Graphcore's ``popef.DataType``, ``popef.TensorType`` and ``popef.BlobType``.

They print as libpopef's pybind11 enums print (``str(DataType.F32) == "DataType.F32"``,
``repr`` ``<DataType.F32: 3>``), where this library's ``IntEnum`` kinds print their number.
Otherwise they are interchangeable with this library's: the same member names and values,
equal to them and to their integer, with the same hash, so either kind works as a key or
as a field value anywhere in this library.
"""

from __future__ import annotations

import enum

import numpy as np

from .. import types as ours

__all__ = ["DataType", "TensorType", "BlobType"]


class _PybindEnum(int, enum.Enum):
    """An integer enum that prints as ``Kind.NAME``, in ``str()`` and in f-strings."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    @classmethod
    def _coerced(cls, value: object) -> object:
        """The member of ``value`` (a member of either kind, or its integer); any other value
        as given, for this library's dataclasses to refuse by name when it is written."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return value
        try:
            return cls(int(value))
        except ValueError:
            return value


def _graphcore(kind: type[enum.IntEnum], doc: str) -> type[_PybindEnum]:
    """Graphcore's enum over one of this library's: the same members, printed as pybind11's."""
    made = _PybindEnum(kind.__name__, [(m.name, int(m)) for m in kind], module=__name__)
    made.__doc__ = doc
    return made


DataType = _graphcore(ours.DataType, "``popef::DataType``: a tensor's element type.")
TensorType = _graphcore(ours.TensorType, "``popef::TensorType``: INPUT, OUTPUT or UNKNOWN.")
BlobType = _graphcore(ours.BlobType, "``popef::BlobType``: the kind of a blob.")


def _ours_data_type(self) -> ours.DataType:
    return ours.DataType(int(self))


# This library's conveniences, for scripts that mix both APIs.
DataType.item_size = property(
    lambda self: _ours_data_type(self).item_size, doc="Bytes per element."
)
DataType.numpy_dtype = property(
    lambda self: _ours_data_type(self).numpy_dtype, doc="The numpy dtype of this type's elements."
)
