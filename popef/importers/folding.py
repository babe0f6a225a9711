"""Static folding: evaluating at import every node whose inputs are all known.

Exporters write a lot of shape arithmetic (``Shape → Gather → Unsqueeze → Concat → Reshape``);
none of it depends on the data once the input shapes are fixed. The importer evaluates such a
node with the runtime's own kernel (``create_op(...).run``) and keeps the result as a constant;
an op the runtime does not have is evaluated with ONNX's reference implementation
(``onnx.reference``), so shape logic never needs an op in the saved program.

Results are bounded: a node whose folded outputs would exceed :data:`MAX_FOLDED_BYTES` is
refused before anything is allocated where its size can be known in advance (ConstantOfShape,
Range, Expand, Tile, and every op of the runtime, through shape inference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ExecutionError, PopefError
from ..runtime.ops import OPS, TensorSpec, create_op
from ..runtime.ops.base import fmt_shape

__all__ = ["MAX_FOLDED_BYTES", "check_size", "constant_of_shape", "fold_node"]

#: the largest tensor folding may produce (a hostile model can ask for petabytes in a few bytes)
MAX_FOLDED_BYTES = 1 << 32


def check_size(where: str, shape: Sequence[int], dtype: np.dtype) -> None:
    """Refuse a folded tensor over the limit (or with a negative dimension)."""
    count = 1
    for d in shape:
        if d < 0:
            raise ExecutionError(
                f"{where}: folded output would have shape {list(shape)}, with a negative dimension"
            )
        count *= int(d)
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes > MAX_FOLDED_BYTES:
        raise ExecutionError(
            f"{where}: folded output would be {fmt_shape(shape)} "
            f"{np.dtype(dtype).name}, {nbytes} bytes, more than the "
            f"{MAX_FOLDED_BYTES} bytes folding may produce"
        )


def constant_of_shape(where: str, shape: np.ndarray, value: np.ndarray | None) -> np.ndarray:
    """ONNX ConstantOfShape, bounded."""
    dims = [int(d) for d in np.asarray(shape).reshape(-1)]
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    if fill.size != 1:
        raise ExecutionError(f"{where}: 'value' must hold one element, got {fill.size}")
    check_size(where, dims, fill.dtype)
    return np.full(dims, fill[0], dtype=fill.dtype)


def _precheck(op_type: str, where: str, inputs: Sequence[np.ndarray | None]) -> None:
    """Bound the ops that grow their input, before onnx.reference allocates."""
    if op_type == "Range" and len(inputs) == 3 and all(x is not None for x in inputs):
        start, limit, delta = (np.asarray(x).reshape(-1)[0] for x in inputs)
        if delta == 0:
            raise ExecutionError(f"{where}: Range with delta 0")
        count = max(int(np.ceil((limit - start) / delta)), 0)
        check_size(where, [count], np.asarray(inputs[0]).dtype)
    elif op_type in ("Expand", "Tile") and len(inputs) == 2 and inputs[1] is not None:
        x, arg = np.asarray(inputs[0]), [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
        if op_type == "Tile":
            shape = [d * r for d, r in zip(x.shape, arg)]
        else:
            rank = max(len(arg), x.ndim)
            a = [1] * (rank - len(arg)) + arg
            b = [1] * (rank - x.ndim) + list(x.shape)
            shape = [max(p, q) for p, q in zip(a, b)]
        check_size(where, shape, x.dtype)


def fold_node(
    op_type: str,
    name: str,
    attrs: Mapping[str, Any],
    inputs: Sequence[np.ndarray | None],
    num_outputs: int,
    onnx_node: Any,
    opset: int,
) -> list[np.ndarray]:
    """Evaluate one node on known inputs; ExecutionError naming it when that fails."""
    where = f"{op_type} node '{name}'"
    _precheck(op_type, where, inputs)
    if op_type in OPS:
        op = create_op(op_type, name, dict(attrs), num_outputs)
        for k, x in enumerate(inputs):
            if x is not None:
                op.constant_inputs[k] = x
        specs = op.infer([None if x is None else TensorSpec.of(x) for x in inputs])
        for spec in specs:
            check_size(where, spec.shape, spec.dtype)
        return [np.asarray(y) for y in op.run(list(inputs))]
    return _reference(where, onnx_node, inputs, opset)


def _reference(
    where: str, onnx_node: Any, inputs: Sequence[np.ndarray | None], opset: int
) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    feeds = {name: np.asarray(x) for name, x in zip(onnx_node.input, inputs) if name}
    try:
        evaluator = ReferenceEvaluator(onnx_node, opsets={"": opset})
        results = evaluator.run(None, feeds)
    except PopefError:
        raise
    except MemoryError:
        raise ExecutionError(f"{where}: out of memory while folding it at import") from None
    except Exception as exc:  # noqa: BLE001 - onnx.reference raises anything
        raise ExecutionError(
            f"{where}: cannot be evaluated at import: {type(exc).__name__}: {exc}"
        ) from None
    out = []
    for y in results:
        if not isinstance(y, np.ndarray) and not np.isscalar(y):
            raise ExecutionError(f"{where}: folding gave a {type(y).__name__}, not a tensor")
        out.append(np.asarray(y))
    return out
