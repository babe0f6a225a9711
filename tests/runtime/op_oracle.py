"""Helpers of the op-family tests: run one op the way the loader does (constant inputs, infer,
run, checks) and compare it with onnx's ReferenceEvaluator on the same single-node model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from popef.runtime.ops import TensorSpec, create_op

from .ops.common import rand, readonly

__all__ = ["OpCase", "check_case", "i64", "onnx_reference", "rand", "readonly", "run_case"]


@dataclass
class OpCase:
    """One node: op type, attributes, inputs (None for an omitted one), which inputs are
    constants at load, how many outputs, the opset the case is written for."""

    id: str
    op: str
    attrs: dict
    inputs: list
    constants: tuple[int, ...] = ()
    outputs: int = 1
    opset: int = 21
    rtol: float = 1e-6
    atol: float = 1e-6
    onnx_attrs: dict | None = None  # attributes as ONNX writes them, when they differ
    ref: object = None  # a numpy reference: inputs -> list of outputs (instead of onnx)
    tags: dict = field(default_factory=dict)


def run_case(
    op_type: str, attrs: dict, inputs: Sequence, constants: Sequence[int] = (), outputs: int = 1
) -> list[np.ndarray]:
    """Build, give constants, infer, run; infer must agree with run and inputs stay intact."""
    op = create_op(op_type, f"{op_type.lower()}_node", attrs, outputs)
    frozen = [readonly(x) for x in inputs]
    op.constant_inputs = {i: frozen[i] for i in constants}
    specs = op.infer([None if x is None else TensorSpec.of(x) for x in frozen])
    outs = op.run(frozen)
    assert [TensorSpec.of(o) for o in outs] == specs, "infer() disagrees with run()"
    for x, original in zip(frozen, inputs):
        if x is not None:
            np.testing.assert_array_equal(x, original)
    return outs


def onnx_reference(case: OpCase) -> list[np.ndarray]:
    """The outputs of onnx's ReferenceEvaluator on the case as a one-node model."""
    pytest.importorskip("onnx")
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = ["" if x is None else f"in{i}" for i, x in enumerate(case.inputs)]
    while names and not names[-1]:
        names.pop()
    outs = [f"out{i}" for i in range(case.outputs)]
    attrs = case.onnx_attrs if case.onnx_attrs is not None else case.attrs
    node = helper.make_node(case.op, names, outs, **attrs)
    inputs = []
    for name, x in zip(names, case.inputs):
        if not name:
            continue
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(x).dtype)
        inputs.append(helper.make_tensor_value_info(name, elem, np.shape(x)))
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info(o, 0, None) for o in outs]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    feeds = {name: np.asarray(x) for name, x in zip(names, case.inputs) if name}
    return [np.asarray(y) for y in ReferenceEvaluator(model).run(None, feeds)]


def check_case(case: OpCase) -> None:
    got = run_case(case.op, case.attrs, case.inputs, case.constants, case.outputs)
    want = case.ref(*case.inputs) if case.ref is not None else onnx_reference(case)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape, (g.shape, w.shape)
        if g.dtype.kind in "fc":
            np.testing.assert_allclose(
                g.astype(np.float64), w.astype(np.float64), rtol=case.rtol, atol=case.atol
            )
        else:
            assert g.dtype == w.dtype, (g.dtype, w.dtype)
            np.testing.assert_array_equal(g, w)


def i64(*values) -> np.ndarray:
    return np.array(values, dtype=np.int64)
