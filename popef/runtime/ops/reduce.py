"""Reductions: ArgMax, ArgMin, the Reduce* family, CumSum and CumProd.

The Reduce* ops take their axes as the attribute ``axes`` (before opset 18; ReduceSum before
13) or as the optional input 1 (later opsets), which must then be a constant at load: the
output shape depends on it (``static_inputs``). No axes reduce every axis, unless
``noop_with_empty_axes=1``, which makes the op an identity. Reducing an empty axis gives the
reduction's identity element (0 for sums, 1 for products, -inf for ReduceMax and ReduceLogSum,
...), as ONNX says.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import (
    ALL_DTYPES,
    NUMERIC_DTYPES,
    Attr,
    Op,
    TensorSpec,
    fmt_shape,
    register,
)

__all__ = [
    "ArgMax",
    "ArgMin",
    "CumProd",
    "CumSum",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
]

_AXES_DTYPES = frozenset({np.dtype(np.int64), np.dtype(np.int32)})


@register
class ArgMax(Op):
    """ArgMax(axis=0, keepdims=1, select_last_index=0) -> int64 indices. Ties go to the first
    (or, with select_last_index=1, the last) maximum."""

    op_type = "ArgMax"
    attributes = {
        "axis": Attr("int", 0),
        "keepdims": Attr("int", 1),
        "select_last_index": Attr("int", 0),
    }
    num_inputs = (1, 1)
    _pick = staticmethod(np.argmax)

    def _setup(self) -> None:
        a = self.attrs
        for name in ("keepdims", "select_last_index"):
            if a[name] not in (0, 1):
                raise self.error(f"attribute '{name}' must be 0 or 1, got {a[name]}")
        self.axis = int(a["axis"])
        self.keepdims = bool(a["keepdims"])
        self.last = bool(a["select_last_index"])

    def _axis(self, shape: tuple[int, ...]) -> int:
        r = len(shape)
        axis = self.axis + r if self.axis < 0 else self.axis
        if not 0 <= axis < r:
            raise self.error(f"axis {self.axis} is out of range for input {fmt_shape(shape)}")
        if shape[axis] == 0:
            raise self.error(
                f"cannot take {self.op_type} over the empty axis {self.axis} of {fmt_shape(shape)}"
            )
        return axis

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, NUMERIC_DTYPES)
        axis = self._axis(x.shape)
        if self.keepdims:
            shape = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
        else:
            shape = x.shape[:axis] + x.shape[axis + 1 :]
        return [TensorSpec(shape, np.int64)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis = self._axis(x.shape)
        if self.last:
            n = x.shape[axis]
            idx = self._pick(np.flip(x, axis), axis=axis, keepdims=self.keepdims)
            idx = (n - 1) - idx
        else:
            idx = self._pick(x, axis=axis, keepdims=self.keepdims)
        return [np.asarray(idx, dtype=np.int64)]


@register
class ArgMin(ArgMax):
    """ArgMin(axis=0, keepdims=1, select_last_index=0) -> int64 indices of the minimum."""

    op_type = "ArgMin"
    _pick = staticmethod(np.argmin)


# --------------------------------------------------------------------------------------------
# Reduce*


class _Reduce(Op):
    """The Reduce* contract; subclasses give ``dtypes`` and ``_reduce(x, axes, keepdims)``."""

    attributes = {
        "axes": Attr("ints", None),
        "keepdims": Attr("int", 1),
        "noop_with_empty_axes": Attr("int", 0),
    }
    num_inputs = (1, 2)
    static_inputs = frozenset({1})
    dtypes: frozenset = NUMERIC_DTYPES

    def _setup(self) -> None:
        for name in ("keepdims", "noop_with_empty_axes"):
            if self.attrs[name] not in (0, 1):
                raise self.error(f"attribute '{name}' must be 0 or 1, got {self.attrs[name]}")
        self.keepdims = bool(self.attrs["keepdims"])
        self.noop = bool(self.attrs["noop_with_empty_axes"])

    def _axes_values(self, given: np.ndarray | None) -> tuple[int, ...] | None:
        """The axes asked for, unresolved; None when none are given."""
        if given is not None:
            if self.attrs["axes"] is not None:
                raise self.error("axes are given both as an attribute and as input 1")
            values = np.asarray(given)
            if values.ndim > 1 or values.dtype not in _AXES_DTYPES:
                raise self.error(
                    f"axes (input 1) must be a 1-D int64 tensor, got "
                    f"{fmt_shape(values.shape)} {values.dtype.name}"
                )
            return tuple(int(a) for a in values.reshape(-1)) or None
        return self.attrs["axes"] or None

    def reduced_axes(self, rank: int, given: np.ndarray | None) -> tuple[int, ...]:
        """The sorted, non-negative axes reduced for an input of ``rank`` dims."""
        axes = self._axes_values(given)
        if axes is None:
            return () if self.noop else tuple(range(rank))
        resolved = []
        for a in axes:
            if not -rank <= a < max(rank, 1):
                raise self.error(f"axis {a} is out of range for a tensor of rank {rank}")
            resolved.append(a % rank if rank else 0)
        if len(set(resolved)) != len(resolved):
            raise self.error(f"axes {list(axes)} name an axis twice")
        return tuple(sorted(resolved))

    def static_axes(self, rank: int) -> tuple[int, ...]:
        """The axes as known at load (from the attribute or the constant input 1)."""
        return self.reduced_axes(rank, self.constant_inputs.get(1))

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, self.dtypes)
        given = inputs[1] if len(inputs) > 1 else None
        if given is not None:
            self._check_dtype(given, frozenset({np.dtype(np.int64)}), "axes (input 1)")
            if 1 not in self.constant_inputs:
                raise self.error("axes (input 1) must be a constant (weight) at load")
        axes = self.static_axes(x.rank)
        if self.keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return [TensorSpec(shape, self._out_dtype(x.dtype))]

    def _out_dtype(self, dtype: np.dtype) -> np.dtype:
        return dtype

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        """Batch rule: the leading axis is not reduced."""
        x = specs[0]
        return x is not None and x.rank > 0 and 0 not in self.static_axes(x.rank)

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        given = inputs[1] if len(inputs) > 1 else None
        axes = self.reduced_axes(x.ndim, given)
        if not axes:
            if self._axes_values(given) is None and self.noop:
                return [x.copy()]
        with np.errstate(all="ignore"):
            y = self._reduce(x, axes, self.keepdims)
        return [np.asarray(y).astype(self._out_dtype(x.dtype), copy=False)]

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        raise NotImplementedError


def _lowest(dtype: np.dtype) -> float | int:
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _highest(dtype: np.dtype) -> float | int:
    return np.inf if dtype.kind == "f" else np.iinfo(dtype).max


def _wide(x: np.ndarray) -> np.ndarray:
    """Integers computed in float64 where a reduction needs fractions (mean, norms, logs)."""
    return x.astype(np.float64) if x.dtype.kind in "iub" else x


@register
class ReduceMax(_Reduce):
    """ReduceMax: the maximum; NaN propagates; -inf (an integer type's minimum) when empty."""

    op_type = "ReduceMax"
    dtypes = ALL_DTYPES

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        if x.dtype.kind == "b":
            return np.any(x, axis=axes, keepdims=keepdims)
        return np.max(x, axis=axes, keepdims=keepdims, initial=_lowest(x.dtype))


@register
class ReduceMin(_Reduce):
    """ReduceMin: the minimum; NaN propagates; inf (an integer type's maximum) when empty."""

    op_type = "ReduceMin"
    dtypes = ALL_DTYPES

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        if x.dtype.kind == "b":
            return np.all(x, axis=axes, keepdims=keepdims)
        return np.min(x, axis=axes, keepdims=keepdims, initial=_highest(x.dtype))


@register
class ReduceSum(_Reduce):
    """ReduceSum: the sum, in the input's type (integers wrap)."""

    op_type = "ReduceSum"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


@register
class ReduceMean(_Reduce):
    """ReduceMean: the mean (integers in float64, truncated back); NaN when empty."""

    op_type = "ReduceMean"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        y = np.mean(_wide(x), axis=axes, keepdims=keepdims)
        return np.trunc(y) if x.dtype.kind in "iu" else y


@register
class ReduceProd(_Reduce):
    """ReduceProd: the product, in the input's type; 1 when empty."""

    op_type = "ReduceProd"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


@register
class ReduceL1(_Reduce):
    """ReduceL1: the sum of absolute values."""

    op_type = "ReduceL1"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(np.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype)


@register
class ReduceL2(_Reduce):
    """ReduceL2: the square root of the sum of squares (integers in float64)."""

    op_type = "ReduceL2"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        w = _wide(x)
        return np.sqrt(np.sum(w * w, axis=axes, keepdims=keepdims))


@register
class ReduceSumSquare(_Reduce):
    """ReduceSumSquare: the sum of squares, in the input's type."""

    op_type = "ReduceSumSquare"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.sum(x * x, axis=axes, keepdims=keepdims, dtype=x.dtype)


@register
class ReduceLogSum(_Reduce):
    """ReduceLogSum: log of the sum; -inf when empty."""

    op_type = "ReduceLogSum"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.log(np.sum(_wide(x), axis=axes, keepdims=keepdims))


@register
class ReduceLogSumExp(_Reduce):
    """ReduceLogSumExp: log of the sum of exponentials, shifted by the maximum so that large
    values do not overflow; -inf when empty."""

    op_type = "ReduceLogSumExp"

    def _reduce(self, x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        w = _wide(x)
        m = np.max(w, axis=axes, keepdims=True, initial=-np.inf)
        shift = np.where(np.isfinite(m), m, 0)
        y = np.log(np.sum(np.exp(w - shift), axis=axes, keepdims=True)) + shift
        return y if keepdims else np.squeeze(y, axis=axes)


# --------------------------------------------------------------------------------------------
# cumulative sums and products


class _Cumulative(Op):
    """CumSum/CumProd(x, axis, exclusive=0, reverse=0): ``axis`` is a 0-D or 1-element int32
    or int64 tensor; ``exclusive`` leaves out the element itself, ``reverse`` runs from the
    end."""

    attributes = {"exclusive": Attr("int", 0), "reverse": Attr("int", 0)}
    num_inputs = (2, 2)
    dtypes: frozenset = NUMERIC_DTYPES
    identity = 0

    def _setup(self) -> None:
        for name in ("exclusive", "reverse"):
            if self.attrs[name] not in (0, 1):
                raise self.error(f"attribute '{name}' must be 0 or 1, got {self.attrs[name]}")
        self.exclusive = bool(self.attrs["exclusive"])
        self.reverse = bool(self.attrs["reverse"])

    def _axis(self, value: np.ndarray, rank: int) -> int:
        value = np.asarray(value)
        if value.size != 1 or value.dtype not in _AXES_DTYPES:
            raise self.error(
                f"axis (input 1) must be one int32 or int64 value, got "
                f"{fmt_shape(value.shape)} {value.dtype.name}"
            )
        axis = int(value.reshape(()))
        if not -rank <= axis < rank:
            raise self.error(f"axis {axis} is out of range for a tensor of rank {rank}")
        return axis % rank

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, axis = inputs
        assert x is not None and axis is not None
        self._check_dtype(x, self.dtypes)
        self._check_dtype(axis, _AXES_DTYPES, "axis (input 1)")
        if axis.size != 1:
            raise self.error(f"axis (input 1) must hold one value, got {fmt_shape(axis.shape)}")
        if x.rank == 0:
            raise self.error("the input must have at least one dimension")
        if 1 in self.constant_inputs:
            self._axis(self.constant_inputs[1], x.rank)
        return [TensorSpec(x.shape, x.dtype)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        """Batch rule: a constant axis that is not the leading one."""
        x = specs[0]
        if batched[1] or 1 not in self.constant_inputs or x is None:
            return False
        return self._axis(self.constant_inputs[1], x.rank) != 0

    def _accumulate(self, x: np.ndarray, axis: int) -> np.ndarray:
        raise NotImplementedError

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis = self._axis(inputs[1], x.ndim)
        if self.reverse:
            x = np.flip(x, axis)
        with np.errstate(over="ignore"):
            y = self._accumulate(x, axis)
        if self.exclusive:
            first = [slice(None)] * x.ndim
            first[axis] = slice(0, 1)
            rest = [slice(None)] * x.ndim
            rest[axis] = slice(0, -1)
            y = np.concatenate(
                [np.full_like(y[tuple(first)], self.identity), y[tuple(rest)]], axis=axis
            )
        if self.reverse:
            y = np.flip(y, axis)
        return [np.ascontiguousarray(y)]


@register
class CumSum(_Cumulative):
    __doc__ = _Cumulative.__doc__
    op_type = "CumSum"

    def _accumulate(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.cumsum(x, axis=axis, dtype=x.dtype)


@register
class CumProd(_Cumulative):
    __doc__ = _Cumulative.__doc__
    op_type = "CumProd"
    identity = 1

    def _accumulate(self, x: np.ndarray, axis: int) -> np.ndarray:
        return np.cumprod(x, axis=axis, dtype=x.dtype)
