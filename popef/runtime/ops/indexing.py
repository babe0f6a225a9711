"""Indexing: Gather, GatherElements, GatherND, ScatterElements, ScatterND, TopK, OneHot, Trilu,
ReverseSequence.

Indices may be negative (counted from the end, as ONNX allows); an index outside
``[-dim, dim)`` is an ExecutionError naming the op, the node, the index and the axis — never a
silent wrap or a numpy traceback. Scatter with repeated indices and no reduction keeps the last
update (ONNX leaves the order undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._static import INDEX_DTYPES, norm_axis, optional_input, static_values
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
    "Gather",
    "GatherElements",
    "GatherND",
    "OneHot",
    "ReverseSequence",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "TopK",
    "Trilu",
]

_INT64 = np.dtype(np.int64)


def _checked_indices(op: Op, indices: np.ndarray, dims: int | np.ndarray, where: str) -> np.ndarray:
    """``indices`` (int64) with negatives counted from the end; every one must lie in
    ``[-dim, dim)`` (``dims`` broadcasts against ``indices``)."""
    idx = indices.astype(_INT64, copy=False)
    if idx.size:
        bad = (idx < -dims) | (idx >= dims)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            size = int(np.broadcast_to(dims, idx.shape)[at])
            raise op.error(
                f"index {int(idx[at])} at {list(at)} is out of range for {where} "
                f"of size {size} (expected {-size} to {size - 1})"
            )
        if (idx < 0).any():
            idx = np.where(idx < 0, idx + dims, idx)
    return idx


def _index_dtype(op: Op, spec: TensorSpec | None, what: str = "input 1 (indices)") -> None:
    assert spec is not None
    op._check_dtype(spec, INDEX_DTYPES, what)


@register
class Gather(Op):
    """Gather(data, indices, axis): ``np.take`` along ``axis``; output shape
    ``data[:axis] + indices + data[axis+1:]``."""

    op_type = "Gather"
    attributes = {"axis": Attr("int", 0)}
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        data, indices = inputs
        assert data is not None and indices is not None
        self._check_dtype(data, ALL_DTYPES, "input 0 (data)")
        _index_dtype(self, indices)
        axis = norm_axis(self, self.attrs["axis"], data.rank)
        shape = data.shape[:axis] + indices.shape + data.shape[axis + 1 :]
        return [TensorSpec(shape, data.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        data, indices = inputs[0], inputs[1]
        axis = norm_axis(self, self.attrs["axis"], data.ndim)
        idx = _checked_indices(self, indices, data.shape[axis], f"axis {axis}")
        return [np.take(data, idx, axis=axis)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        axis = norm_axis(self, self.attrs["axis"], specs[0].rank)
        if batched[0] and not batched[1]:
            return axis != 0
        # an embedding lookup: the rows of the indices pick rows of a constant table
        return not batched[0] and axis == 0 and specs[1].rank >= 1


@register
class GatherElements(Op):
    """GatherElements(data, indices, axis): ``np.take_along_axis``; indices have the data's
    rank and give the output shape (dims other than ``axis`` no larger than the data's)."""

    op_type = "GatherElements"
    attributes = {"axis": Attr("int", 0)}
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        data, indices = inputs
        assert data is not None and indices is not None
        _index_dtype(self, indices)
        axis = norm_axis(self, self.attrs["axis"], data.rank)
        if indices.rank != data.rank or any(
            i != axis and n > d for i, (n, d) in enumerate(zip(indices.shape, data.shape))
        ):
            raise self.error(
                f"indices {fmt_shape(indices.shape)} must have the rank of data "
                f"{fmt_shape(data.shape)} and no larger dims outside axis {axis}"
            )
        return [TensorSpec(indices.shape, data.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        data, indices = inputs[0], inputs[1]
        axis = norm_axis(self, self.attrs["axis"], data.ndim)
        idx = _checked_indices(self, indices, data.shape[axis], f"axis {axis}")
        view = data[
            tuple(slice(0, n) if i != axis else slice(None) for i, n in enumerate(idx.shape))
        ]
        return [np.take_along_axis(view, idx, axis=axis)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return batched[0] and batched[1] and norm_axis(self, self.attrs["axis"], specs[0].rank) != 0


def _nd_index(op: Op, data_shape: tuple[int, ...], indices: np.ndarray, batch_dims: int) -> tuple:
    """The numpy index tuple into ``data`` reshaped to ``(B, *data_shape[b:])`` for ONNX
    GatherND/ScatterND indices ``[..., k]``; its arrays have shape ``(B, M)``."""
    k = indices.shape[-1]
    b = batch_dims
    batch = math.prod(data_shape[:b])
    m = math.prod(indices.shape[b:-1])
    ix = indices.reshape(batch, m, k)
    dims = np.array(data_shape[b : b + k], dtype=_INT64)
    ix = _checked_indices(op, ix, dims, f"the indexed dims {fmt_shape(data_shape[b : b + k])}")
    rows = np.broadcast_to(np.arange(batch, dtype=_INT64)[:, None], (batch, m))
    return (rows, *(ix[..., j] for j in range(k)))


@register
class GatherND(Op):
    """GatherND(data, indices, batch_dims): slices of ``data`` picked by the last dim of
    ``indices``; output ``indices[:-1] + data[batch_dims + k:]``."""

    op_type = "GatherND"
    attributes = {"batch_dims": Attr("int", 0)}
    num_inputs = (2, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        data, indices = inputs
        assert data is not None and indices is not None
        if indices.dtype != _INT64:
            raise self.error(f"input 1 (indices) must be int64, got {indices.dtype.name}")
        b = self.attrs["batch_dims"]
        if indices.rank < 1 or not 0 <= b < min(data.rank, indices.rank):
            raise self.error(
                f"batch_dims {b} does not fit data {fmt_shape(data.shape)} and "
                f"indices {fmt_shape(indices.shape)}"
            )
        k = indices.shape[-1]
        if data.shape[:b] != indices.shape[:b] or b + k > data.rank:
            raise self.error(
                f"indices {fmt_shape(indices.shape)} do not index data "
                f"{fmt_shape(data.shape)} with batch_dims {b}"
            )
        return [TensorSpec(indices.shape[:-1] + data.shape[b + k :], data.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        data, indices = inputs[0], inputs[1]
        b = self.attrs["batch_dims"]
        k = indices.shape[-1]
        flat = data.reshape((math.prod(data.shape[:b]),) + data.shape[b:])
        out = flat[_nd_index(self, data.shape, indices, b)]
        return [out.reshape(indices.shape[:-1] + data.shape[b + k :])]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        if self.attrs["batch_dims"] >= 1:
            return batched[0] and batched[1]
        return not batched[0] and specs[1].rank >= 2


_REDUCTIONS = {
    "none": None,
    "add": np.add,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}


class _Scatter(Op):
    attributes = {"reduction": Attr("string", "none")}
    num_inputs = (3, 3)

    def _setup(self) -> None:
        if self.attrs["reduction"] not in _REDUCTIONS:
            raise self.error(
                f"attribute 'reduction' must be one of {', '.join(_REDUCTIONS)}, "
                f"got {self.attrs['reduction']!r}"
            )
        self.ufunc = _REDUCTIONS[self.attrs["reduction"]]

    def _check(self, inputs: list[TensorSpec | None]) -> None:
        data, indices, updates = inputs
        assert data is not None and indices is not None and updates is not None
        self._check_dtype(data, ALL_DTYPES, "input 0 (data)")
        _index_dtype(self, indices)
        if updates.dtype != data.dtype:
            raise self.error(
                f"updates have dtype {updates.dtype.name} but data has "
                f"{data.dtype.name}; they must match"
            )

    def _write(self, out: np.ndarray, index: tuple, updates: np.ndarray) -> np.ndarray:
        if self.ufunc is None:
            out[index] = updates
        else:
            self.ufunc.at(out, index, updates)
        return out


@register
class ScatterElements(_Scatter):
    """ScatterElements(data, indices, updates, axis, reduction): a copy of ``data`` where
    ``updates[i]`` goes to the position ``i`` with its ``axis`` coordinate replaced by
    ``indices[i]``. (Opset 9's ``Scatter`` is the same op.)"""

    op_type = "ScatterElements"
    attributes = {"axis": Attr("int", 0), "reduction": Attr("string", "none")}

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        self._check(inputs)
        data, indices, updates = inputs
        axis = norm_axis(self, self.attrs["axis"], data.rank)
        if (
            indices.shape != updates.shape
            or indices.rank != data.rank
            or any(i != axis and n > d for i, (n, d) in enumerate(zip(indices.shape, data.shape)))
        ):
            raise self.error(
                f"indices {fmt_shape(indices.shape)} and updates "
                f"{fmt_shape(updates.shape)} must have one shape, of the rank of "
                f"data {fmt_shape(data.shape)}, no larger outside axis {axis}"
            )
        return [TensorSpec(data.shape, data.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        data, indices, updates = inputs[0], inputs[1], inputs[2]
        axis = norm_axis(self, self.attrs["axis"], data.ndim)
        idx = _checked_indices(self, indices, data.shape[axis], f"axis {axis}")
        grid = list(np.indices(idx.shape, sparse=True))
        grid[axis] = idx
        return [self._write(data.copy(), tuple(grid), updates)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return all(batched) and norm_axis(self, self.attrs["axis"], specs[0].rank) != 0


@register
class Scatter(ScatterElements):
    """Scatter(data, indices, updates, axis): opsets 9 and 10's name of ScatterElements
    (deprecated in opset 11), without ``reduction``."""

    op_type = "Scatter"
    attributes = {"axis": Attr("int", 0)}

    def _setup(self) -> None:
        self.ufunc = None


@register
class ScatterND(_Scatter):
    """ScatterND(data, indices, updates, reduction): a copy of ``data`` with the slices named
    by the last dim of ``indices`` replaced by (or reduced with) ``updates``."""

    op_type = "ScatterND"

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        self._check(inputs)
        data, indices, updates = inputs
        k = indices.shape[-1] if indices.rank else 0
        if (
            indices.rank < 1
            or k > data.rank
            or updates.shape != indices.shape[:-1] + data.shape[k:]
        ):
            raise self.error(
                f"updates {fmt_shape(updates.shape)} must have shape indices[:-1] "
                f"+ data[k:] for data {fmt_shape(data.shape)} and indices "
                f"{fmt_shape(indices.shape)}"
            )
        return [TensorSpec(data.shape, data.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        data, indices, updates = inputs[0], inputs[1], inputs[2]
        k = indices.shape[-1]
        index = _nd_index(self, data.shape, indices.astype(_INT64), 0)[1:]
        m = math.prod(indices.shape[:-1])
        flat_updates = updates.reshape((1, m) + data.shape[k:])[0]
        index = tuple(i[0] for i in index)
        return [self._write(data.copy(), index, flat_updates)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return False


@register
class TopK(Op):
    """TopK(X, K, axis, largest, sorted): the K largest (or smallest) values along ``axis``
    and their int64 indices, sorted; ties keep the lower index first. ``k`` is an attribute
    in opset 1, a constant 1-element int64 input since opset 10."""

    op_type = "TopK"
    attributes = {
        "axis": Attr("int", -1),
        "largest": Attr("int", 1),
        "sorted": Attr("int", 1),
        "k": Attr("int", None),
    }
    num_inputs = (1, 2)
    num_outputs = (1, 2)

    def _k(self, given: np.ndarray | None, dim: int) -> int:
        k = (
            self.attrs["k"]
            if self.attrs["k"] is not None
            else (None if given is None else int(np.asarray(given).reshape(-1)[0]))
        )
        if k is None:
            raise self.error("K is required (attribute 'k' in opset 1, input 1 since)")
        if not 0 <= k <= dim:
            raise self.error(f"K {k} is out of range for an axis of size {dim}")
        return k

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, NUMERIC_DTYPES)
        axis = norm_axis(self, self.attrs["axis"], x.rank)
        given = static_values(self, inputs, 1, "K", frozenset({_INT64}))
        if given is not None and given.size != 1:
            raise self.error(f"K must hold one value, got {fmt_shape(given.shape)}")
        k = self._k(given, x.shape[axis])
        shape = x.shape[:axis] + (k,) + x.shape[axis + 1 :]
        return [TensorSpec(shape, x.dtype), TensorSpec(shape, _INT64)][: self.output_count]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        axis = norm_axis(self, self.attrs["axis"], x.ndim)
        n = x.shape[axis]
        k = self._k(optional_input(inputs, 1), n)
        if self.attrs["largest"]:
            # stable ascending sort of the reversed axis, read backwards: descending values,
            # ties in increasing index order
            order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
            order = (n - 1) - np.flip(order, axis)
        else:
            order = np.argsort(x, axis=axis, kind="stable")
        idx = np.take(order, np.arange(k), axis=axis)
        values = np.take_along_axis(x, idx, axis=axis)
        return [values, idx.astype(_INT64)][: self.output_count]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:]) and norm_axis(self, self.attrs["axis"], specs[0].rank) != 0


@register
class OneHot(Op):
    """OneHot(indices, depth, values, axis): ``values[1]`` where the index hits, ``values[0]``
    elsewhere, along a new axis of size ``depth`` (a constant); indices in ``[-depth, depth)``
    (negatives count from the end); others give an all-off row."""

    op_type = "OneHot"
    attributes = {"axis": Attr("int", -1)}
    num_inputs = (3, 3)

    def _depth(self, depth: np.ndarray) -> int:
        d = np.asarray(depth).reshape(-1)
        if d.size != 1:
            raise self.error(f"depth must hold one value, got {fmt_shape(np.shape(depth))}")
        value = int(d[0])
        if value < 1:
            raise self.error(f"depth must be >= 1, got {value}")
        return value

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        indices, _, values = inputs
        assert indices is not None and values is not None
        self._check_dtype(indices, NUMERIC_DTYPES, "input 0 (indices)")
        if values.shape != (2,):
            raise self.error(f"values must be [off, on], shape [2], got {fmt_shape(values.shape)}")
        depth = self._depth(static_values(self, inputs, 1, "depth", NUMERIC_DTYPES, rank=None))
        axis = norm_axis(self, self.attrs["axis"], indices.rank + 1)
        return [TensorSpec(indices.shape[:axis] + (depth,) + indices.shape[axis:], values.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        indices, depth, values = inputs[0], inputs[1], inputs[2]
        depth = self._depth(depth)
        axis = norm_axis(self, self.attrs["axis"], indices.ndim + 1)
        idx = (
            indices.astype(np.int64)
            if indices.dtype.kind != "f"
            else np.trunc(indices).astype(np.int64)
        )
        idx = np.where(idx < 0, idx + depth, idx)
        shape = [1] * (indices.ndim + 1)
        shape[axis] = depth
        hit = np.expand_dims(idx, axis) == np.arange(depth).reshape(shape)
        return [np.where(hit, values[1], values[0]).astype(values.dtype, copy=False)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        axis = norm_axis(self, self.attrs["axis"], specs[0].rank + 1)
        return not any(batched[1:]) and axis != 0


@register
class Trilu(Op):
    """Trilu(input, k, upper): keeps the upper (or lower) triangle of the last two dims,
    from diagonal ``k`` (an optional int64 scalar input)."""

    op_type = "Trilu"
    attributes = {"upper": Attr("int", 1)}
    num_inputs = (1, 2)

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x = inputs[0]
        assert x is not None
        self._check_dtype(x, ALL_DTYPES)
        if x.rank < 2:
            raise self.error(f"input must have rank >= 2, got {fmt_shape(x.shape)}")
        k = optional_input(inputs, 1)
        if k is not None and (k.dtype != _INT64 or k.size != 1):
            raise self.error(f"k must be one int64 value, got {k}")
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        k = optional_input(inputs, 1)
        k = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
        k = max(min(k, 2**31), -(2**31))
        return [np.triu(x, k) if self.attrs["upper"] else np.tril(x, k)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return not any(batched[1:]) and specs[0].rank >= 3


@register
class ReverseSequence(Op):
    """ReverseSequence(input, sequence_lens, batch_axis, time_axis): for each batch entry
    ``b``, the first ``sequence_lens[b]`` entries along the time axis in reverse order."""

    op_type = "ReverseSequence"
    attributes = {"batch_axis": Attr("int", 1), "time_axis": Attr("int", 0)}
    num_inputs = (2, 2)

    def _setup(self) -> None:
        axes = (self.attrs["batch_axis"], self.attrs["time_axis"])
        if sorted(axes) != [0, 1]:
            raise self.error(
                f"batch_axis and time_axis must be 0 and 1 in some order, got {list(axes)}"
            )

    def _infer(self, inputs: list[TensorSpec | None]) -> list[TensorSpec]:
        x, lens = inputs
        assert x is not None and lens is not None
        self._check_dtype(lens, frozenset({_INT64}), "input 1 (sequence_lens)")
        if x.rank < 2 or lens.shape != (x.shape[self.attrs["batch_axis"]],):
            raise self.error(
                f"sequence_lens {fmt_shape(lens.shape)} must have one entry per "
                f"batch entry of input {fmt_shape(x.shape)} (axis "
                f"{self.attrs['batch_axis']})"
            )
        return [TensorSpec(x.shape, x.dtype)]

    def run(self, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, lens = inputs[0], inputs[1]
        b_axis, t_axis = self.attrs["batch_axis"], self.attrs["time_axis"]
        steps = x.shape[t_axis]
        if ((lens < 0) | (lens > steps)).any():
            raise self.error(f"sequence_lens {lens.tolist()} must lie in [0, {steps}]")
        t = np.arange(steps)
        lens = lens.astype(np.int64)[:, None]
        src = np.where(t < lens, lens - 1 - t, t)  # (batch, time)
        if b_axis == 1:
            src = src.T
        src = src.reshape(src.shape + (1,) * (x.ndim - 2))
        return [np.take_along_axis(x, src, axis=t_axis)]

    def keeps_rows(self, batched: Sequence[bool], specs: Sequence[TensorSpec | None]) -> bool:
        return self.attrs["batch_axis"] == 0 and batched[0] and batched[1]
