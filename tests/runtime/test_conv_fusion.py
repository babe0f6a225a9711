"""The cpu executor's fused Conv -> MaxPool (-> Relu) kernel agrees with the unfused
kernels (to a few float32 ulps of the largest output: its GEMM sums in another order) and
with ipu-model, and fuses only what it may."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef import DataType
from popef.runtime import GraphBuilder, ModelRunner
from popef.runtime.executors.cpu import CpuExecutor
from popef.runtime.loader import load_model
from popef.runtime.ops import _kernels

from .helpers import model_of, save_bytes


def _model(window, relu, *, group=1, pool_attrs=None, also_read=False, size=11):
    rng = np.random.default_rng(window * 3 + group)
    g = GraphBuilder()
    x = g.add_input("x", DataType.F32, (2, 4, size, size))
    w = g.add_weight("w", rng.standard_normal((8, 4 // group, 3, 3)).astype(np.float32))
    b = g.add_weight("b", rng.standard_normal(8).astype(np.float32))
    h = g.add_node("Conv", [x, w, b], group=group, pads=[1, 1, 1, 1])
    attrs = pool_attrs or {"kernel_shape": [window, window], "strides": [window, window]}
    p = g.add_node("MaxPool", [h], **attrs)
    if relu:
        p = g.add_node("Relu", [p])
    g.add_output(g.add_node("Flatten", [p]), "y")
    if also_read:
        g.add_output(g.add_node("Sigmoid", [h]), "conv")
    return g


CASES = [
    dict(window=2, relu=True),
    dict(window=2, relu=False),
    dict(window=3, relu=True),
    dict(window=2, relu=True, group=4),
    dict(window=2, relu=True, size=28),
    dict(window=2, relu=True, also_read=True),
    dict(window=2, relu=True, pool_attrs={"kernel_shape": [3, 3], "strides": [2, 2]}),
    dict(
        window=2, relu=True, pool_attrs={"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}
    ),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("steps", [1, 5])
def test_fused_agrees_with_unfused(case, steps):
    model = model_of(save_bytes(_model(**case)))
    x = (
        np.random.default_rng(steps)
        .standard_normal((steps * 2, 4, case.get("size", 11), case.get("size", 11)))
        .astype(np.float32)
    )
    x[0, 0, :3, :3] = np.nan  # NaN propagates through both
    with (
        ModelRunner(model, "cpu") as fused,
        ModelRunner(model, "cpu", fuse=False) as plain,
        ModelRunner(model, "ipu-model") as ipu,
    ):
        a, b, c = fused.execute({"x": x}), plain.execute({"x": x}), ipu.execute({"x": x})
    for name in a:
        ulps = 4 * float(np.spacing(np.nanmax(np.abs(b[name]))))
        np.testing.assert_allclose(a[name], b[name], rtol=2e-6, atol=ulps)
        np.testing.assert_allclose(a[name], c[name], rtol=2e-5, atol=ulps)


def _plan_entries(**case) -> int:
    """Kernels in the cpu executor's generated plan (its namespace holds k0, k1, ...)."""
    executor = CpuExecutor()
    executor.load(load_model(model_of(save_bytes(_model(**case)))))
    return sum(
        1
        for name in executor._forward.__globals__
        if name[0] == "k"  # noqa: SLF001
        and name[1:].isdigit()
    )


def test_what_is_fused():
    assert _plan_entries(window=2, relu=True) == 2  # conv+pool+relu, flatten
    assert _plan_entries(window=2, relu=False) == 2  # conv+pool, flatten
    # the conv output is read twice: nothing fused
    assert _plan_entries(window=2, relu=True, also_read=True) == 5
    # overlapping windows and ceil_mode are left to MaxPool
    assert (
        _plan_entries(window=2, relu=True, pool_attrs={"kernel_shape": [3, 3], "strides": [2, 2]})
        == 4
    )
    assert (
        _plan_entries(
            window=2,
            relu=True,
            pool_attrs={"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
        )
        == 4
    )


# -- the channels-last kernel against the unfused ops, on random shapes ---------------------


def _unfused(x, w, b, conv_attrs, window, relu):
    from popef.runtime.ops import create_op

    conv = create_op("Conv", "conv", conv_attrs)
    pool = create_op("MaxPool", "pool", {"kernel_shape": list(window), "strides": list(window)})
    [h] = conv.run([x, w] if b is None else [x, w, b])
    [h] = pool.run([h])
    return np.maximum(h, 0) if relu else h


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_channels_last_kernel_matches_the_unfused_ops(data):
    from popef.runtime.ops import create_op

    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16]))
    # few channels: the im2col matrix is built taps-major; many: rows-major, bias in the GEMM
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 20))
    m = data.draw(st.integers(1, 5))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(2))
    strides = tuple(data.draw(st.integers(1, 2)) for _ in range(2))
    dilations = tuple(data.draw(st.integers(1, 2)) for _ in range(2))
    pads = [data.draw(st.integers(0, 1)) for _ in range(4)]
    window = tuple(data.draw(st.integers(1, 3)) for _ in range(2))
    relu, with_bias = data.draw(st.booleans()), data.draw(st.booleans())
    # big enough for one pooled output at least
    size = [
        window[i] * strides[i] + (kernel[i] - 1) * dilations[i] + data.draw(st.integers(0, 4))
        for i in range(2)
    ]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, *size)).astype(dtype)
    w = rng.standard_normal((m, c, *kernel)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype) if with_bias else None
    attrs = {
        "kernel_shape": list(kernel),
        "strides": list(strides),
        "dilations": list(dilations),
        "pads": pads,
    }
    conv = create_op("Conv", "conv", attrs)
    fused = conv.with_max_pool(window, relu)
    inputs = [x, w] if b is None else [x, w, b]
    # one slice of output rows per call, or a slice per pooled row
    monkeypatch_chunk = data.draw(st.sampled_from([None, 1]))
    want = _unfused(x, w, b, attrs, window, relu)
    saved = _kernels.CHANNELS_LAST_CHUNK_BYTES
    try:
        if monkeypatch_chunk:
            _kernels.CHANNELS_LAST_CHUNK_BYTES = monkeypatch_chunk
        [got] = fused(inputs)
    finally:
        _kernels.CHANNELS_LAST_CHUNK_BYTES = saved
    for _ in range(2):  # later calls reuse the plan, the weights and the buffers
        [got] = fused(inputs)
        assert got.shape == want.shape and got.dtype == want.dtype
        tolerance = {np.float16: 2e-3, np.float32: 2e-5, np.float64: 1e-12}[dtype]
        scale = float(np.max(np.abs(want.astype(np.float64)), initial=1.0))
        np.testing.assert_allclose(
            got.astype(np.float64), want.astype(np.float64), rtol=tolerance, atol=tolerance * scale
        )
    # fed to a second fused kernel: the channels-last output is read as it lies
    if got.shape[2] >= 1 and got.shape[3] >= 1:
        w2 = rng.standard_normal((2, m, 1, 1)).astype(dtype)
        second = create_op("Conv", "conv2", {"kernel_shape": [1, 1]}).with_max_pool((1, 1), False)
        [chained] = second([got, w2])
        [expected] = create_op("Conv", "c", {"kernel_shape": [1, 1]}).run(
            [np.ascontiguousarray(got), w2]
        )
        np.testing.assert_allclose(
            chained.astype(np.float64),
            expected.astype(np.float64),
            rtol=tolerance,
            atol=tolerance * scale * m,
        )


def test_the_kernel_follows_the_batch_size_between_calls():
    """One runner, requests of 1, 5, then 2 steps: plans and buffers follow the batch."""
    model = model_of(save_bytes(_model(window=2, relu=True, size=12)))
    rng = np.random.default_rng(7)
    with ModelRunner(model, "cpu") as fused, ModelRunner(model, "cpu", fuse=False) as plain:
        for steps in (1, 5, 2):
            x = rng.standard_normal((steps * 2, 4, 12, 12)).astype(np.float32)
            a, b = fused.execute({"x": x})["y"], plain.execute({"x": x})["y"]
            ulps = 4 * float(np.spacing(np.abs(b).max()))
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=ulps)


# -- Flatten -> Gemm (-> Relu) after a channels-last convolution ------------------------------


def _conv_dense_model(*, trans_b=1, bias="1d", relu=True, alpha=1.0, two_convs=True):
    rng = np.random.default_rng(11)
    g = GraphBuilder()
    h = g.add_input("x", DataType.F32, (2, 1, 14, 14))
    channels = 1
    for i, out in enumerate((6, 8) if two_convs else (6,)):
        w = g.add_weight(f"w{i}", rng.standard_normal((out, channels, 3, 3)).astype(np.float32))
        b = g.add_weight(f"b{i}", rng.standard_normal(out).astype(np.float32))
        h = g.add_node(
            "Relu",
            [
                g.add_node(
                    "MaxPool", [g.add_node("Conv", [h, w, b])], kernel_shape=[2, 2], strides=[2, 2]
                )
            ],
        )
        channels = out
    features = 8 * 2 * 2 if two_convs else 6 * 6 * 6
    shape = (5, features) if trans_b else (features, 5)
    fc = g.add_weight("fc", rng.standard_normal(shape).astype(np.float32))
    inputs = [g.add_node("Flatten", [h]), fc]
    if bias:
        value = rng.standard_normal(5 if bias == "1d" else (1, 5)).astype(np.float32)
        inputs.append(g.add_weight("fc.b", value))
    h = g.add_node("Gemm", inputs, transB=trans_b, alpha=alpha)
    if relu:
        h = g.add_node("Relu", [h])
    g.add_output(g.add_node("Softmax", [h], axis=-1), "probs")
    return g


DENSE_CASES = [
    {},
    {"trans_b": 0},
    {"bias": None},
    {"bias": "2d"},
    {"relu": False},
    {"two_convs": False},
    {"alpha": 0.5},
]


@pytest.mark.parametrize("case", DENSE_CASES)
def test_flatten_gemm_after_a_fused_conv_agrees(case):
    model = model_of(save_bytes(_conv_dense_model(**case)))
    x = np.random.default_rng(3).standard_normal((6, 1, 14, 14)).astype(np.float32)
    with (
        ModelRunner(model, "cpu") as fused,
        ModelRunner(model, "cpu", fuse=False) as plain,
        ModelRunner(model, "ipu-model") as ipu,
    ):
        a, b, c = (r.execute({"x": x})["probs"] for r in (fused, plain, ipu))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def test_what_is_fused_after_a_convolution():
    def entries(**case) -> int:
        executor = CpuExecutor()
        executor.load(load_model(model_of(save_bytes(_conv_dense_model(**case)))))
        return sum(
            1 for name in executor._forward.__globals__ if name[0] == "k" and name[1:].isdigit()
        )

    assert entries() == 4  # conv+pool+relu twice, flatten+gemm+relu, softmax
    assert entries(relu=False) == 4
    assert entries(trans_b=0, bias=None) == 4
    assert entries(alpha=0.5) == 6  # a scaled Gemm stays itself: flatten, gemm, relu
