"""Tensors made from attributes, shapes and ranges: Constant, Shape, Size, ConstantOfShape,
Range, EyeLike — and the ops whose output *shape* depends on data (NonZero, Unique), which run
(so an importer can fold them) but are refused at load, where every shape must be known before
anything runs; Compress runs when its condition is a constant.

``value`` attributes (Constant, ConstantOfShape) are tensors in ONNX. A graph program cannot
store a tensor attribute, so such a node reaches the runtime only through an importer folding it
(``create_op("Constant", name, {"value": array})``); in a saved graph program Constant uses its
scalar and list forms (``value_float``, ``value_ints``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._static import norm_axis, static_values
from .base import (
    ALL_DTYPES,
    FLOAT_DTYPES,
    Attr,
    Op,
    TensorSpec,
    fmt_shape,
    register,
)
from .elementwise import ONNX_DTYPES

__all__ = [
    "Compress",
    "Constant",
    "ConstantOfShape",
    "EyeLike",
    "NonZero",
    "Range",
    "Shape",
    "Size",
    "Unique",
]

_INT64 = np.dtype(np.int64)
_F32 = np.dtype(np.float32)
_RANGE_DTYPES = FLOAT_DTYPES | frozenset(np.dtype(t) for t in (np.int16, np.int32, np.int64))


class _TensorAttributes(Op):
    """An op with tensor-valued attributes (named in ``tensor_attributes``): an importer hands
    them as numpy arrays, which the declared kinds cannot express."""

    tensor_attributes: tuple[str, ...] = ()

    def _resolve_attrs(self, attrs: Mapping[str, object] | None) -> dict[str, Any]:
        tensors: dict[str, np.ndarray] = {}
        if isinstance(attrs, Mapping):
            rest = dict(attrs)
            for name in self.tensor_attributes:
                value = rest.pop(name, None)
                if value is None:
                    continue
                array = np.asarray(value)
                if array.dtype not in ALL_DTYPES:
                    raise self.error(f"attribute '{name}' has unsupported dtype {array.dtype}")
                array = array.copy()
                array.flags.writeable = False
                tensors[name] = array
            attrs = rest
        resolved = super()._resolve_attrs(attrs)
        resolved.update(tensors)
        return resolved


@register
class Constant(_TensorAttributes):
    """Constant: exactly one of ``value`` (a tensor, from an importer), ``value_float``,
    ``value_floats``, ``value_int``, ``value_ints``. String and sparse constants are refused."""

    op_type = "Constant"
    tensor_attributes = ("value",)
    attributes = {
        "value_float": Attr("float", None),
        "value_floats": Attr("floats", None),
        "value_int": Attr("int", None),
        "value_ints": Attr("ints", None),
    }
    num_inputs = (0, 0)

    def _resolve_attrs(self, attrs: Mapping[str, object] | None) -> dict[str, Any]:
        if isinstance(attrs, Mapping):
            if any(k in attrs for k in ("value_string", "value_strings")):
                raise self.error("string constants are not supported")
            if "sparse_value" in attrs:
                raise self.error("sparse constants are not supported")
        return super()._resolve_attrs(attrs)

    def _setup(self) -> None:
        given = [k for k in ("value", *self.attributes) if self.attrs.get(k) is not None]
        if len(given) != 1:
            raise self.error(
                "exactly one of value, value_float, value_floats, value_int, "
                f"value_ints must be given, got {given or 'none'}"
            )
        [name] = given
        value = self.attrs[name]
        if name == "value":
            array = value
        elif name in ("value_float", "value_floats"):
            array = np.asarray(value, dtype=_F32)
        else:
            array = np.asarray(value, dtype=_INT64)
        array.flags.writeable = False
        self.value: np.ndarray = array

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        return [TensorSpec.of(self.value)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [self.value]


@register
class Shape(Op):
    """Shape(data): the dims ``[start:end]`` (opset 15 attributes, Python slice rules) as a
    1-D int64 tensor."""

    op_type = "Shape"
    attributes = {"start": Attr("int", 0), "end": Attr("int", None)}
    num_inputs = (1, 1)

    def dims(self, shape: tuple[int, ...]) -> np.ndarray:
        end = self.attrs["end"]
        return np.array(shape[self.attrs["start"] : end], dtype=_INT64)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        return [TensorSpec((len(self.dims(x.shape)),), _INT64)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [self.dims(inputs[0].shape)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False


@register
class Size(Op):
    """Size(data): the number of elements, an int64 scalar."""

    op_type = "Size"
    num_inputs = (1, 1)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        return [TensorSpec((), _INT64)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.array(inputs[0].size, dtype=_INT64)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False


@register
class ConstantOfShape(_TensorAttributes):
    """ConstantOfShape(shape): a tensor of the constant 1-D int64 ``shape`` filled with
    ``value`` (a one-element tensor; float32 zero by default)."""

    op_type = "ConstantOfShape"
    tensor_attributes = ("value",)
    attributes = {}
    num_inputs = (1, 1)
    static_inputs = frozenset({0})

    def _setup(self) -> None:
        value = self.attrs.get("value")
        if value is None:
            value = np.zeros(1, _F32)
        if value.size != 1:
            raise self.error(
                f"attribute 'value' must hold one element, got {fmt_shape(value.shape)}"
            )
        self.fill = value.reshape(())

    def out_shape(self, values: np.ndarray) -> tuple[int, ...]:
        dims = [int(v) for v in values.reshape(-1)]
        if any(d < 0 for d in dims):
            raise self.error(f"shape {dims} has a negative dim")
        return tuple(dims)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        values = static_values(self, inputs, 0, "shape", frozenset({_INT64}))
        assert values is not None
        return [TensorSpec(self.out_shape(values), self.fill.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        return [np.full(self.out_shape(inputs[0]), self.fill, dtype=self.fill.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False


@register
class Range(Op):
    """Range(start, limit, delta): scalars of one dtype; ``max(ceil((limit - start) / delta),
    0)`` elements ``start + i * delta``. The three must be constants at load."""

    op_type = "Range"
    num_inputs = (3, 3)

    def length(self, start: Any, limit: Any, delta: Any) -> int:
        if delta == 0:
            raise self.error("delta must not be zero")
        if isinstance(start, int):
            # exact: a float would round int64 bounds (2**62 + 3 - 2**62 gave 0 elements)
            return max(-((start - limit) // delta), 0)
        if not all(math.isfinite(v) for v in (start, limit, delta)):
            raise self.error(
                f"start, limit and delta must be finite, got {start!r}, {limit!r} and {delta!r}"
            )
        n = math.ceil((float(limit) - float(start)) / float(delta))
        return max(int(n), 0)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        self._check_dtype(inputs[0], _RANGE_DTYPES, "input 0 ('start')")
        self._check_same_dtype(inputs)
        values = [
            static_values(self, inputs, i, name, _RANGE_DTYPES, rank=None)
            for i, name in enumerate(("start", "limit", "delta"))
        ]
        for name, v in zip(("start", "limit", "delta"), values):
            if v.size != 1:
                raise self.error(f"{name} must be a scalar, got {fmt_shape(v.shape)}")
        n = self.length(*(v.reshape(()).item() for v in values))
        return [TensorSpec((n,), inputs[0].dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        start, limit, delta = (np.asarray(v).reshape(()) for v in inputs[:3])
        n = self.length(start.item(), limit.item(), delta.item())
        # start + i * delta, in the input dtype (as ONNX's loop computes it)
        return [(start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False


@register
class EyeLike(Op):
    """EyeLike(input): a 2-D tensor of the input's shape with ones on diagonal ``k``; dtype
    from the ``dtype`` attribute (an ONNX data type) or the input's."""

    op_type = "EyeLike"
    attributes = {"dtype": Attr("int", None), "k": Attr("int", 0)}
    num_inputs = (1, 1)

    def _setup(self) -> None:
        code = self.attrs["dtype"]
        if code is not None and code not in ONNX_DTYPES:
            raise self.error(f"attribute 'dtype' is not a supported ONNX data type: {code}")
        self.dtype = None if code is None else ONNX_DTYPES[code]

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        if x.rank != 2:
            raise self.error(f"input must be 2-D, got {fmt_shape(x.shape)}")
        return [TensorSpec(x.shape, self.dtype or x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        n, m = x.shape
        return [np.eye(n, m, k=self.attrs["k"], dtype=self.dtype or x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False


# --------------------------------------------------------------------------------------------
# ops with data-dependent output shapes: run for import folding, refused at load


class _DataDependent(Op):
    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        raise self.error(
            "the output shape depends on the input values, which this runtime "
            "must know at load; the node can only run when its inputs are "
            "constants folded at import"
        )

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False


@register
class NonZero(_DataDependent):
    """NonZero(X): int64 indices ``[rank, count]`` of the non-zero elements, row-major order."""

    op_type = "NonZero"
    num_inputs = (1, 1)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        if x.ndim == 0:
            return [np.zeros((0, int(bool(x))), _INT64)]
        return [np.array(np.nonzero(x), dtype=_INT64).reshape(x.ndim, -1)]


@register
class Compress(Op):
    """Compress(input, condition): the slices along ``axis`` (flattened input without it)
    where the 1-D bool condition is true. The condition fixes the output shape, so at load it
    must be a constant (a weight, or folded at import)."""

    op_type = "Compress"
    attributes = {"axis": Attr("int", None)}
    num_inputs = (2, 2)
    static_inputs = frozenset({1})

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        cond = static_values(self, inputs, 1, "condition", frozenset({np.dtype(np.bool_)}))
        assert x is not None and cond is not None
        axis = self.attrs["axis"]
        length = x.size if axis is None else x.shape[norm_axis(self, axis, x.rank)]
        if cond.size > length:
            raise self.error(
                f"condition has {cond.size} entries but the compressed "
                f"{'input' if axis is None else f'axis {axis}'} has {length}"
            )
        kept = int(np.count_nonzero(cond))
        if axis is None:
            return [TensorSpec((kept,), x.dtype)]
        axis = norm_axis(self, axis, x.rank)
        return [TensorSpec(x.shape[:axis] + (kept,) + x.shape[axis + 1 :], x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        axis = self.attrs["axis"]
        return not batched[1] and axis is not None and norm_axis(self, axis, specs[0].rank) != 0

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, cond = inputs[0], np.asarray(inputs[1]).astype(bool).reshape(-1)
        axis = self.attrs["axis"]
        if axis is None:
            return [np.compress(cond, x.reshape(-1))]
        axis = norm_axis(self, axis, x.ndim)
        return [np.compress(cond, x, axis=axis)]


@register
class Unique(_DataDependent):
    """Unique(X): unique values (sorted, or in order of first occurrence with sorted=0),
    with int64 first indices, inverse indices and counts."""

    op_type = "Unique"
    attributes = {"axis": Attr("int", None), "sorted": Attr("int", 1)}
    num_inputs = (1, 1)
    num_outputs = (1, 4)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis = self.attrs["axis"]
        if axis is not None:
            axis = norm_axis(self, axis, x.ndim)
        values, first, inverse, counts = np.unique(
            x if axis is not None else x.reshape(-1),
            return_index=True,
            return_inverse=True,
            return_counts=True,
            axis=axis,
        )
        inverse = inverse.reshape(-1)
        if not self.attrs["sorted"]:
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            values = np.take(values, order, axis=0 if axis is None else axis)
            first, counts, inverse = first[order], counts[order], rank[inverse]
        outs = [values, first.astype(_INT64), inverse.astype(_INT64), counts.astype(_INT64)]
        return outs[: self.output_count]
