"""Helpers shared by the ops whose output shape depends on the *values* of some inputs (Slice's
starts, Pad's pads, Expand's shape, ...) and by the ops that take axes.

ONNX moved many attributes into inputs over the opsets (Squeeze's ``axes``, Split's ``split``,
Slice's ``starts``...). The ops here accept both forms: when the attribute is given it is used,
otherwise the input. At load such an input must be a constant — ``infer`` reads it from
``op.constant_inputs`` — because the output shape depends on it; ``run`` reads the array it is
handed, so the same op also runs on values computed at import time (shape folding).

Batch rules: an op defined here may implement ``keeps_rows(batched, specs)``; the batching
module calls it (``popef.runtime.batching.ROW_RULES`` maps these op types to it) to learn
whether the node keeps the rows of the leading axis independent (docs/runtime.md §1.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import INT_DTYPES, Op, TensorSpec, fmt_shape

__all__ = [
    "INDEX_DTYPES",
    "norm_axes",
    "norm_axis",
    "optional_input",
    "static_values",
]

#: dtypes ONNX takes for indices (Gather, Scatter, TopK's K ...).
INDEX_DTYPES = frozenset(np.dtype(t) for t in (np.int32, np.int64))


def norm_axis(op: Op, axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in ``[-rank, rank)`` as a non-negative index; ExecutionError otherwise."""
    if not -rank <= axis < rank:
        raise op.error(
            f"{what} {axis} is out of range for rank {rank} (expected -{rank} to {rank - 1})"
            if rank
            else f"{what} {axis} given for a scalar input"
        )
    return axis + rank if axis < 0 else axis


def norm_axes(op: Op, axes: Sequence[int], rank: int, what: str = "axes") -> tuple[int, ...]:
    """Each axis normalised; repeated axes are refused."""
    out = tuple(norm_axis(op, int(a), rank, what) for a in axes)
    if len(set(out)) != len(out):
        raise op.error(f"{what} {[int(a) for a in axes]} repeat an axis")
    return out


def optional_input(inputs: Sequence[object], index: int) -> object | None:
    """``inputs[index]``, or None when the input is absent or omitted."""
    return inputs[index] if len(inputs) > index else None


def static_values(
    op: Op,
    inputs: Sequence[TensorSpec | None],
    index: int,
    name: str,
    dtypes: frozenset = INT_DTYPES,
    rank: int | None = 1,
) -> np.ndarray | None:
    """The load-time values of input ``index`` (``None`` when the input is omitted).

    The input must be a constant (a weight or a folded tensor): its values fix the output
    shape. ``dtypes``/``rank`` restrict its spec (``rank=None`` accepts any).
    """
    spec = optional_input(inputs, index)
    if spec is None:
        return None
    assert isinstance(spec, TensorSpec)
    op._check_dtype(spec, dtypes, f"input {index} ('{name}')")
    if rank is not None and spec.rank != rank:
        raise op.error(f"input {index} ('{name}') must have rank {rank}, got {spec}")
    values = op.constant_inputs.get(index)
    if values is None:
        raise op.error(
            f"input {index} ('{name}') must be a constant (a weight, or folded at "
            "import): its values fix the output shape"
        )
    values = np.asarray(values)
    if values.shape != spec.shape:
        raise op.error(
            f"constant input {index} ('{name}') {fmt_shape(values.shape)} does not "
            f"match its spec {spec}"
        )
    return values
