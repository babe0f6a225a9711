"""The convolution and pooling family against independent loops and, when installed,
onnxruntime: ConvTranspose, LpPool, GlobalMaxPool, GlobalLpPool, MaxUnpool, and Conv/pool
attribute combinations of real exports (groups, depthwise, dilations, auto_pad, ceil_mode,
count_include_pad)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from popef import DataType, ExecutionError
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.ops import TensorSpec, create_op

from .helpers import model_of, save_bytes

RTOL, ATOL = 1e-4, 1e-5  # float32 sums of a few dozen products, in another order


def run_op(op_type, attrs, inputs, constants=()):
    op = create_op(op_type, "n", attrs)
    op.constant_inputs = {i: inputs[i] for i in constants}
    specs = op.infer([None if x is None else TensorSpec.of(x) for x in inputs])
    [y] = op.run(inputs)
    assert TensorSpec.of(y) == specs[0], "infer() disagrees with run()"
    return y


def _ct_loops(x, w, b, strides, dilations, pads, output_padding, group=1):
    n, c = x.shape[:2]
    nd = x.ndim - 2
    mg, kernel = w.shape[1], w.shape[2:]
    cg = c // group
    full = [
        s * (i - 1) + (k - 1) * d + 1 + op
        for i, s, k, d, op in zip(x.shape[2:], strides, kernel, dilations, output_padding)
    ]
    y = np.zeros((n, mg * group, *full))
    for ci in range(c):
        grp = ci // cg
        for pos in itertools.product(*(range(i) for i in x.shape[2:])):
            for tap in itertools.product(*(range(k) for k in kernel)):
                o = tuple(p * s + t * d for p, s, t, d in zip(pos, strides, tap, dilations))
                y[(slice(None), slice(grp * mg, (grp + 1) * mg)) + o] += (
                    x[(slice(None), ci) + pos][:, None] * w[(ci, slice(None)) + tap][None, :]
                )
    crop = tuple(slice(pads[i], full[i] - pads[i + nd]) for i in range(nd))
    y = y[(slice(None), slice(None)) + crop]
    return y + (0 if b is None else b.reshape((-1,) + (1,) * nd))


@pytest.mark.parametrize(
    "nd, group, s, d, p, op",
    [
        (2, 1, 1, 1, 0, 0),
        (2, 2, 2, 1, 1, 1),
        (1, 1, 3, 2, 2, 1),
        (2, 4, 2, 2, 1, 0),
        (3, 1, 2, 1, 1, 1),
        (2, 1, 2, 1, 0, 1),
    ],
)
def test_conv_transpose_matches_loops(nd, group, s, d, p, op):
    rng = np.random.default_rng(nd * 10 + group)
    c, m = 4, 8
    x = rng.standard_normal((2, c) + (4,) * nd).astype(np.float32)
    w = rng.standard_normal((c, m // group) + (3,) * nd).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    attrs = {
        "group": group,
        "strides": [s] * nd,
        "dilations": [d] * nd,
        "pads": [p] * (2 * nd),
        "output_padding": [op] * nd,
    }
    y = run_op("ConvTranspose", attrs, [x, w, b])
    want = _ct_loops(
        x.astype(np.float64),
        w.astype(np.float64),
        b,
        [s] * nd,
        [d] * nd,
        [p] * (2 * nd),
        [op] * nd,
        group,
    )
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)


def test_conv_transpose_output_shape_and_auto_pad():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    full = _ct_loops(
        x.astype(np.float64), w.astype(np.float64), None, [2, 2], [1, 1], [0] * 4, [0, 0]
    )  # 7 x 7
    # output_shape 6: one position cut, at the beginning (NOTSET) or the end (SAME_UPPER)
    y = run_op("ConvTranspose", {"strides": [2, 2], "output_shape": [6, 6]}, [x, w])
    np.testing.assert_allclose(y, full[:, :, 1:, 1:], rtol=RTOL, atol=ATOL)
    y = run_op("ConvTranspose", {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, [x, w])
    np.testing.assert_allclose(y, full[:, :, :6, :6], rtol=RTOL, atol=ATOL)
    y = run_op("ConvTranspose", {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, [x, w])
    np.testing.assert_allclose(y, full[:, :, 1:, 1:], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "attrs, shapes, message",
    [
        ({}, [(1, 3, 4, 4), (2, 2, 3, 3)], r"has 3 channels but weight W \[2, 2, 3, 3\]"),
        ({"kernel_shape": [2, 2]}, [(1, 2, 4, 4), (2, 2, 3, 3)], "does not match weight W"),
        (
            {"output_padding": [2, 2], "strides": [2, 2]},
            [(1, 2, 4, 4), (2, 2, 3, 3)],
            "must be smaller than the stride or the dilation",
        ),
        ({"pads": [5, 5, 5, 5]}, [(1, 2, 2, 2), (2, 2, 3, 3)], "gives an empty output"),
        ({"output_shape": [1, 2, 3]}, [(1, 2, 4, 4), (2, 2, 3, 3)], "must have 2 values"),
    ],
)
def test_conv_transpose_errors(attrs, shapes, message):
    op = create_op("ConvTranspose", "n", attrs)
    with pytest.raises(ExecutionError, match=r"ConvTranspose node 'n': .*" + message):
        op.infer([TensorSpec(s, np.float32) for s in shapes])


def _lp_loops(x, kernel, strides, pads, p):
    nd = x.ndim - 2
    xp = np.pad(
        np.abs(x.astype(np.float64)),
        [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)],
    )
    out = [(n - k) // s + 1 for n, k, s in zip(xp.shape[2:], kernel, strides)]
    y = np.zeros(x.shape[:2] + tuple(out))
    for o in itertools.product(*(range(v) for v in out)):
        window = xp[
            (slice(None), slice(None))
            + tuple(slice(i * s, i * s + k) for i, s, k in zip(o, strides, kernel))
        ]
        y[(slice(None), slice(None)) + o] = (window**p).sum(axis=tuple(range(2, x.ndim)))
    return y ** (1 / p)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool_matches_loops(p):
    x = np.random.default_rng(p).standard_normal((2, 3, 7, 6)).astype(np.float32)
    attrs = {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1], "p": p}
    y = run_op("LpPool", attrs, [x])
    np.testing.assert_allclose(
        y, _lp_loops(x, [3, 2], [2, 2], [1, 0, 1, 1], p), rtol=RTOL, atol=ATOL
    )


def test_global_pools():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(
        run_op("GlobalMaxPool", {}, [x]), x.max(axis=(2, 3), keepdims=True)
    )
    y = run_op("GlobalLpPool", {"p": 3}, [x])
    want = (np.abs(x.astype(np.float64)) ** 3).sum(axis=(2, 3), keepdims=True) ** (1 / 3)
    np.testing.assert_allclose(y, want, rtol=RTOL)
    with pytest.raises(
        ExecutionError,
        match=r"GlobalMaxPool node 'n': input X must have rank "
        r">= 3 \(N, C, \*spatial\), got \[2, 3\]",
    ):
        create_op("GlobalMaxPool", "n").infer([TensorSpec((2, 3), np.float32)])


def test_max_unpool_inverts_max_pool():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 6)).astype(np.float32)
    pool = create_op("MaxPool", "pool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 2)
    pool.infer([TensorSpec.of(x)])
    values, indices = pool.run([x])
    y = run_op("MaxUnpool", {"kernel_shape": [2, 2], "strides": [2, 2]}, [values, indices])
    want = np.where(x == np.repeat(np.repeat(values, 2, axis=2), 2, axis=3), x, 0)
    np.testing.assert_array_equal(y, want)
    shape = np.array([2, 3, 5, 7], np.int64)  # a larger output, given as a constant
    y = run_op(
        "MaxUnpool",
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        [values, indices, shape],
        constants=(2,),
    )
    # the indices address the unpooled [2, 3, 4, 6]; the larger shape pads each dim at its end
    assert y.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(y[:, :, :4, :6], want)
    assert not y[:, :, 4:, :].any() and not y[:, :, :, 6:].any()
    with pytest.raises(
        ExecutionError,
        match=r"output_shape \[2, 3, 3, 7\] is smaller than the "
        r"unpooled shape \[2, 3, 4, 6\]",
    ):
        run_op(
            "MaxUnpool",
            {"kernel_shape": [2, 2], "strides": [2, 2]},
            [values, indices, np.array([2, 3, 3, 7], np.int64)],
            constants=(2,),
        )
    op = create_op("MaxUnpool", "n", {"kernel_shape": [2, 2], "strides": [2, 2]})
    op.infer([TensorSpec.of(values), TensorSpec.of(indices)])
    with pytest.raises(ExecutionError, match=r"indices I must lie in \[0, 144\)"):
        op.run([values, indices + 1000])


# -- onnxruntime as the oracle ----------------------------------------------------------------

CASES = [
    ("Conv", {"group": 4}, [(2, 8, 9, 9), (8, 2, 3, 3), (8,)]),
    (
        "Conv",
        {"group": 8, "pads": [1, 1, 1, 1], "strides": [2, 2]},
        [(2, 8, 9, 9), (8, 1, 3, 3), (8,)],
    ),
    (
        "Conv",
        {"group": 8, "auto_pad": "SAME_UPPER", "strides": [2, 2]},
        [(1, 8, 10, 9), (16, 1, 3, 3)],
    ),
    ("Conv", {"auto_pad": "SAME_LOWER", "strides": [2, 3]}, [(2, 3, 11, 10), (4, 3, 4, 2)]),
    ("Conv", {"auto_pad": "VALID", "dilations": [1, 3]}, [(1, 2, 9, 12), (3, 2, 2, 3)]),
    ("Conv", {"group": 2}, [(2, 4, 9), (6, 2, 5), (6,)]),
    (
        "ConvTranspose",
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
        [(2, 4, 5, 5), (4, 3, 3, 3), (3,)],
    ),
    (
        "ConvTranspose",
        {"group": 2, "strides": [2, 1], "dilations": [1, 2]},
        [(1, 4, 4, 5), (4, 2, 3, 3), (4,)],
    ),
    ("ConvTranspose", {"strides": [2, 2], "output_shape": [10, 9]}, [(1, 2, 4, 4), (2, 3, 3, 3)]),
    ("ConvTranspose", {"strides": [3], "auto_pad": "SAME_UPPER"}, [(2, 2, 5), (2, 2, 4)]),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, [(2, 3, 8, 8)]),
    (
        "MaxPool",
        {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
        [(1, 2, 7, 8)],
    ),
    (
        "MaxPool",
        {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]},
        [(1, 2, 7, 7)],
    ),
    (
        "AveragePool",
        {
            "kernel_shape": [3, 3],
            "strides": [2, 2],
            "pads": [1, 1, 1, 1],
            "count_include_pad": 1,
            "ceil_mode": 1,
        },
        [(2, 3, 8, 8)],
    ),
    ("AveragePool", {"kernel_shape": [3, 2], "auto_pad": "SAME_LOWER"}, [(1, 2, 7, 8)]),
    (
        "LpPool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "p": 2},
        [(2, 3, 8, 8)],
    ),
    ("LpPool", {"kernel_shape": [2], "p": 3}, [(2, 3, 9)]),
    ("GlobalMaxPool", {}, [(2, 3, 5, 4)]),
    ("GlobalLpPool", {"p": 2}, [(2, 3, 5, 4)]),
]


@pytest.mark.parametrize(
    "op_type, attrs, shapes", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_against_onnxruntime(op_type, attrs, shapes):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    rng = np.random.default_rng(len(shapes) * 7 + len(attrs))
    inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    names = [f"i{k}" for k in range(len(inputs))]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape))
            for n, x in zip(names, inputs)
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    [want] = session.run(None, dict(zip(names, inputs)))
    y = run_op(op_type, attrs, inputs)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)


# -- both executors, folded and not -----------------------------------------------------------


def _window_model() -> GraphBuilder:
    """A MobileNet-like block and a decoder: depthwise and pointwise conv, ConvTranspose,
    LpPool, the global pools, and a MaxPool -> MaxUnpool pair (which does not fold)."""
    rng = np.random.default_rng(7)

    def weight(name, shape):
        return g.add_weight(name, rng.standard_normal(shape).astype(np.float32) * 0.3)

    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 4, 8, 8))
    h = g.add_node(
        "Conv", [x, weight("dw", (4, 1, 3, 3)), weight("dwb", (4,))], group=4, pads=[1, 1, 1, 1]
    )
    h = g.add_node("Conv", [h, weight("pw", (8, 4, 1, 1))])
    h = g.add_node(
        "ConvTranspose",
        [h, weight("up", (8, 2, 3, 3)), weight("upb", (4,))],
        group=2,
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 1],
    )
    g.add_output(g.add_node("LpPool", [h], kernel_shape=[2, 2], strides=[2, 2]), "lp")
    g.add_output(g.add_node("GlobalMaxPool", [h]), "gmax")
    g.add_output(g.add_node("GlobalLpPool", [h], p=1), "glp")
    return g


def _unpool_model() -> GraphBuilder:
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (1, 2, 4, 4))
    v, i = g.add_node("MaxPool", [x], num_outputs=2, kernel_shape=[2, 2], strides=[2, 2])
    g.add_output(g.add_node("MaxUnpool", [v, i], kernel_shape=[2, 2], strides=[2, 2]), "y")
    return g


@pytest.mark.parametrize("build", [_window_model, _unpool_model])
@pytest.mark.parametrize("replicas, steps", [(1, 1), (1, 3), (2, 2)])
def test_executors_agree(build, replicas, steps):
    model = model_of(save_bytes(build(), replication_factor=replicas, device_iterations=2))
    runners = [
        ModelRunner(model, "cpu"),
        ModelRunner(model, "cpu", fold=False),
        ModelRunner(model, "ipu-model"),
    ]
    shape = runners[0].get_execute_inputs()[0].shape
    x = (
        np.random.default_rng(steps)
        .standard_normal((steps * shape[0], *shape[1:]))
        .astype(np.float32)
    )
    results = [r.execute({"x": x}) for r in runners]
    for runner in runners:
        runner.close()
    folded, stepwise, ipu = results
    for name in ipu:
        np.testing.assert_allclose(folded[name], ipu[name], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(stepwise[name], ipu[name], rtol=2e-5, atol=2e-6)
