"""Every case of the table (tests/runtime/ops/cases_*.py) against its independent
reference and, when onnx + onnxruntime are importable, replayed as a one-node
ONNX model.
"""

from __future__ import annotations

import pytest

from popef.runtime.ops import TensorSpec

# each family's module adds its cases to CASES when imported
from . import (  # noqa: F401
    cases_conv,
    cases_elementwise,
    cases_linalg,
    cases_normalization,
    cases_pool,
    cases_shape,
)
from .common import CASES, EXPECTED_OPS, Case, assert_close, run_op

# --------------------------------------------------------------------------------------------
# the case table against the independent references


CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "duplicate case ids"


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_op_matches_reference(c: Case) -> None:
    outs = run_op(c.op, c.attrs, c.inputs, c.num_outputs, c.constants)
    expected = c.ref(*c.inputs)
    assert len(outs) == len(expected)
    for got, want in zip(outs, expected):
        assert_close(got, want, c.tol)
    # float ops keep the input's float dtype (never silently upcast)
    if c.inputs[0].dtype.kind == "f" and c.op not in ("Cast", "ArgMax"):
        assert outs[0].dtype == c.inputs[0].dtype


def test_case_table_covers_every_op() -> None:
    # the ops added since have their own case tables (tests/runtime/test_ops_<family>.py)
    assert {c.op for c in CASES} >= EXPECTED_OPS


# --------------------------------------------------------------------------------------------
# onnxruntime differential tests (one-node ONNX models)


def _ort_session(c: Case, out_specs: list[TensorSpec]):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    names = ["" if x is None else f"in{i}" for i, x in enumerate(c.inputs)]
    while names and names[-1] == "":
        names.pop()
    outs = [f"out{i}" for i in range(c.num_outputs)]
    node = helper.make_node(c.op, names, outs, **c.attrs)
    graph = helper.make_graph(
        [node],
        f"one_{c.op}",
        [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(x.dtype), list(x.shape)
            )
            for n, x in zip(names, c.inputs)
            if n
        ],
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(s.dtype), None)
            for n, s in zip(outs, out_specs)
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", c.opset)])
    model.ir_version = min(onnx.IR_VERSION, 9)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess, {n: x for n, x in zip(names, c.inputs) if n}


ORT_CASES = [c for c in CASES if c.ort]


@pytest.mark.parametrize("c", ORT_CASES, ids=[c.id for c in ORT_CASES])
def test_op_matches_onnxruntime(c: Case) -> None:
    outs = run_op(c.op, c.attrs, c.inputs, c.num_outputs, c.constants)
    sess, feed = _ort_session(c, [TensorSpec.of(o) for o in outs])
    expected = sess.run(None, feed)
    for got, want in zip(outs, expected):
        assert got.dtype == want.dtype
        assert_close(got, want, c.ort_tol or c.tol)
