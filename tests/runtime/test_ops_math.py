"""Tests of the math, logic, activation and reduction ops (math.py, activation.py, reduce.py)
against independent numpy/Python formulas, both executors agreeing, and the op base's check
that a kernel's outputs have the dtype and shape shape inference said."""

from __future__ import annotations

import math

import numpy as np
import pytest

from popef import DataType
from popef.errors import ExecutionError
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.ops import Op, TensorSpec, create_op

from .helpers import model_of, save_bytes

RNG = np.random.default_rng(0)
X = RNG.uniform(-2, 2, (3, 4)).astype(np.float32)
P = RNG.uniform(0.1, 0.9, (3, 4)).astype(np.float32)

# op, attrs, inputs, reference (float64 maths on Python scalars where possible)
CASES = [
    ("Sqrt", {}, [P], lambda p: np.vectorize(math.sqrt)(p)),
    ("Exp", {}, [X], lambda x: np.vectorize(math.exp)(x)),
    ("Log", {}, [P], lambda p: np.vectorize(math.log)(p)),
    ("Sin", {}, [X], lambda x: np.vectorize(math.sin)(x)),
    ("Atanh", {}, [P], lambda p: np.vectorize(math.atanh)(p)),
    ("Erf", {}, [X], lambda x: np.vectorize(math.erf)(x)),
    ("Round", {}, [np.array([0.5, 1.5, -2.5, 2.6], np.float32)], lambda x: [0, 2, -2, 3]),
    ("Sign", {}, [np.array([-3, 0, 5], np.int32)], lambda x: [-1, 0, 1]),
    ("Pow", {}, [P, np.array(2.5, np.float32)], lambda p, e: np.vectorize(lambda v: v**2.5)(p)),
    ("Pow", {}, [np.array([2, 3], np.int64), np.array([3, 2], np.int64)], lambda a, b: [8, 9]),
    ("Mod", {}, [np.array([-7, 7], np.int32), np.array([3, -3], np.int32)], lambda a, b: [2, -2]),
    (
        "Mod",
        {"fmod": 1},
        [np.array([-7.5, 7.5], np.float32), np.array([2, -2], np.float32)],
        lambda a, b: [-1.5, 1.5],
    ),
    (
        "Max",
        {},
        [X, P, np.float32(0) + np.zeros((4,), np.float32)],
        lambda a, b, c: np.maximum(np.maximum(a, b), c),
    ),
    ("Mean", {}, [X, P], lambda a, b: (a.astype(np.float64) + b) / 2),
    ("Less", {}, [X, P], lambda a, b: a < b),
    ("Xor", {}, [X > 0, P > 0.5], lambda a, b: a != b),
    (
        "BitShift",
        {"direction": "LEFT"},
        [np.array([1, 255], np.uint8), np.array([3, 9], np.uint8)],
        lambda a, b: [8, 0],
    ),
    (
        "BitShift",
        {"direction": "LEFT"},
        [np.array([1, -1, 64, 3], np.int8), np.array([1, 7, 1, -1], np.int8)],
        lambda a, b: [2, -128, -128, 0],
    ),
    (
        "BitShift",
        {"direction": "RIGHT"},
        [np.array([-8, -8, 8, -1], np.int32), np.array([1, 40, 40, -2], np.int32)],
        lambda a, b: [-4, -1, 0, -1],
    ),
    (
        "IsInf",
        {"detect_positive": 0},
        [np.array([np.inf, -np.inf, 1], np.float32)],
        lambda x: [False, True, False],
    ),
    ("Where", {}, [X > 0, X, P], lambda c, a, b: np.where(c, a, b)),
    ("CastLike", {}, [X, np.zeros((), np.float64)], lambda x, _: x.astype(np.float64)),
    (
        "Selu",
        {},
        [X],
        lambda x: np.vectorize(
            lambda v: 1.0507009873554805 * (v if v > 0 else 1.6732632423543772 * (math.exp(v) - 1))
        )(x),
    ),
    ("HardSwish", {}, [X], lambda x: np.vectorize(lambda v: v * min(1, max(0, v / 6 + 0.5)))(x)),
    ("Mish", {}, [X], lambda x: np.vectorize(lambda v: v * math.tanh(math.log1p(math.exp(v))))(x)),
    (
        "PRelu",
        {},
        [X, np.array([0.1, 0.2, 0.3, 0.4], np.float32)],
        lambda x, s: np.where(x < 0, x * s, x),
    ),
    (
        "Shrink",
        {"bias": 1.0, "lambd": 1.5},
        [X],
        lambda x: np.where(x < -1.5, x + 1, np.where(x > 1.5, x - 1, 0)),
    ),
    (
        "Hardmax",
        {},
        [np.array([[1, 3, 3], [0, -1, 0]], np.float32)],
        lambda x: [[0, 1, 0], [1, 0, 0]],
    ),
    ("ReduceSum", {"axes": [1], "keepdims": 0}, [X], lambda x: x.astype(np.float64).sum(1)),
    (
        "ReduceLogSumExp",
        {"axes": [0]},
        [X * 40],
        lambda x: np.log(np.exp(x.astype(np.float64)).sum(0, keepdims=True)),
    ),
    (
        "ReduceMax",
        {"axes": [1]},
        [np.zeros((2, 0), np.float32)],
        lambda x: np.full((2, 1), -np.inf),
    ),
    ("ReduceL2", {}, [X], lambda x: np.sqrt((x.astype(np.float64) ** 2).sum()).reshape(1, 1)),
    (
        "ArgMin",
        {"axis": 1, "select_last_index": 1},
        [np.array([[1, 0, 0], [2, 2, 5]], np.float32)],
        lambda x: [[2], [1]],
    ),
    (
        "CumSum",
        {"exclusive": 1, "reverse": 1},
        [np.array([1, 2, 3], np.float32), np.array(0, np.int64)],
        lambda x, a: [5, 3, 0],
    ),
    (
        "CumProd",
        {},
        [np.array([1, 2, 3], np.int64), np.array([0], np.int32)],
        lambda x, a: [1, 2, 6],
    ),
]


@pytest.mark.parametrize(
    "op_type, attrs, inputs, ref", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_op_matches_reference(op_type, attrs, inputs, ref):
    op = create_op(op_type, "n", attrs)
    for k in op.static_inputs:
        if k < len(inputs):
            op.constant_inputs[k] = inputs[k]
    specs = op.infer([TensorSpec.of(np.asarray(x)) for x in inputs])
    [y] = op.run([np.asarray(x) for x in inputs])
    assert TensorSpec.of(y) == specs[0]
    want = np.asarray(ref(*inputs))
    if y.dtype.kind == "f":
        np.testing.assert_allclose(y, want.astype(np.float64), rtol=2e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(y, want.astype(y.dtype))


@pytest.mark.parametrize(
    "op_type, attrs, specs, message",
    [
        ("Sqrt", {}, [TensorSpec((2,), np.int32)], "unsupported dtype int32"),
        ("And", {}, [TensorSpec((2,), np.float32)] * 2, "unsupported dtype float32"),
        (
            "BitShift",
            {"direction": "LEFT"},
            [TensorSpec((2,), np.float32)] * 2,
            "unsupported dtype float32",
        ),
        ("Where", {}, [TensorSpec((2,), np.float32)] * 3, "the condition (input 0)"),
        (
            "ReduceSum",
            {},
            [TensorSpec((2,), np.float32), TensorSpec((1,), np.int64)],
            "must be a constant",
        ),
        ("ReduceSum", {"axes": [0, -1]}, [TensorSpec((2,), np.float32)], "name an axis twice"),
        (
            "Max",
            {},
            [TensorSpec((2,), np.float32), TensorSpec((3,), np.float32)],
            "cannot broadcast [2] with [3]",
        ),
    ],
)
def test_refusals_name_what_is_wrong(op_type, attrs, specs, message):
    op = create_op(op_type, "bad", attrs)
    with pytest.raises(
        ExecutionError, match=f"{op_type} node 'bad': .*{__import__('re').escape(message)}"
    ):
        op.infer(specs)


def test_a_kernel_that_returns_another_dtype_or_shape_is_an_error():
    class Sloppy(Op):
        op_type = "Sloppy"

        def _infer(self, inputs):
            return [TensorSpec(inputs[0].shape, np.float32)]

        def run(self, inputs):
            return [inputs[0].astype(np.float64)]  # float64 under a float32 output

    op = Sloppy("s")
    op.infer([TensorSpec((2, 3), np.float32)])
    with pytest.raises(
        ExecutionError,
        match=r"output 0 as \[2, 3\] float64, expected \[2, 3\] "
        r"float32",
    ):
        op.run([np.zeros((2, 3), np.float32)])

    class Shapeless(Sloppy):
        op_type = "Shapeless"

        def run(self, inputs):
            return [inputs[0][:1]]

    op = Shapeless("s")
    op.infer([TensorSpec((2, 3), np.float32)])
    with pytest.raises(ExecutionError, match=r"output 0 as \[1, 3\] float32, expected \[2, 3\]"):
        op.run([np.zeros((2, 3), np.float32)])
    # a folded batch (the leading axis scaled) is what inference said, scaled
    with pytest.raises(ExecutionError, match=r"output 0 as \[1, 3\]"):
        op.run([np.zeros((6, 3), np.float32)])
    ok = Sloppy("ok")
    ok.run = lambda inputs: [inputs[0]]  # instance attribute: not wrapped, for contrast
    assert ok.run([np.zeros((6, 3), np.float32)])[0].shape == (6, 3)


@pytest.mark.parametrize("rf, iterations", [(1, 1), (2, 3)])
def test_cpu_and_ipu_model_agree_and_fold(rf, iterations):
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 4))
    y = g.add_node("Mish", [g.add_node("Abs", [x])])
    s = g.add_node("ReduceSum", [y, g.add_weight("axes", np.array([1], np.int64))], keepdims=0)
    m = g.add_node("Where", [g.add_node("Greater", [x, g.add_weight("t", np.float32(0))]), x, y])
    c = g.add_node("CumSum", [m, g.add_weight("axis", np.array(1, np.int64))])
    g.add_output(s, "s")
    g.add_output(g.add_node("HardSwish", [c]), "c")
    model = model_of(save_bytes(g, replication_factor=rf, device_iterations=iterations))
    steps = 3
    batch = np.random.default_rng(1).standard_normal((steps * rf * 2, 4)).astype(np.float32)
    if rf > 1:
        batch = batch.reshape(steps * rf, 2, 4)
    results = []
    for executor, options in (("cpu", {}), ("cpu", {"fold": False}), ("ipu-model", {})):
        with ModelRunner(model, executor, **options) as runner:
            if executor == "cpu" and options == {}:
                assert runner.executor.fold_blocker is None
            results.append(runner.execute({"x": batch}))
    for name in ("s", "c"):
        for other in results[1:]:
            np.testing.assert_allclose(results[0][name], other[name], rtol=1e-6, atol=1e-6)


def test_bitcast_keeps_the_bits() -> None:
    from .op_oracle import run_case

    x = np.array([1.0, -2.5, np.inf], np.float32)
    [y] = run_case("BitCast", {"to": 6}, [x])  # INT32
    assert y.dtype == np.int32 and y.tolist() == x.view(np.int32).tolist()
    [back] = run_case("BitCast", {"to": 1}, [y])
    np.testing.assert_array_equal(back, x)
    [flags] = run_case("BitCast", {"to": 9}, [np.array([0, 1, 7], np.uint8)])  # BOOL
    assert flags.tolist() == [False, True, True]
    with pytest.raises(ExecutionError, match="expected the same width, got 32 and 64 bits"):
        run_case("BitCast", {"to": 7}, [x])


def test_swiglu_is_swish_of_a_times_b() -> None:
    from .op_oracle import run_case

    a, b = X, P
    [y] = run_case("SwiGLU", {"alpha": 1.5}, [a, b])
    want = a.astype(np.float64) / (1 + np.exp(-1.5 * a.astype(np.float64))) * b
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ExecutionError, match="must have the same shape"):
        run_case("SwiGLU", {}, [a, b[:1]])
