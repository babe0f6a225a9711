"""Conv: orientation, structure, kernel paths, and against torch when importable."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from popef.runtime.ops import _kernels, create_op

from .common import (
    _t,
    assert_close,
    rand,
    ref_conv,
    ref_conv_taps,
    ref_pad,
    ref_pool,
    run_op,
)

# --------------------------------------------------------------------------------------------
# Conv orientation and structure


def test_conv_impulse_is_cross_correlation() -> None:
    """An impulse input yields the kernel flipped (cross-correlation, not convolution)."""
    x = np.zeros((1, 1, 7, 7), np.float32)
    x[0, 0, 3, 3] = 1.0
    w = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)  # asymmetric kernel
    (y,) = run_op("Conv", {}, [x, w])
    assert y.shape == (1, 1, 5, 5)
    np.testing.assert_array_equal(y[0, 0, 1:4, 1:4], w[0, 0, ::-1, ::-1])
    assert np.count_nonzero(y) == 9


def test_conv_impulse_kernel_is_a_shift() -> None:
    """A kernel that is an impulse at (kh, kw) picks x[oh + kh, ow + kw] per channel."""
    x = rand(90, (2, 3, 6, 7))
    for kh, kw in ((0, 0), (2, 1), (1, 3)):
        w = np.zeros((3, 3, 3, 4), np.float32)
        for c in range(3):
            w[c, c, kh, kw] = 1.0
        (y,) = run_op("Conv", {}, [x, w])
        np.testing.assert_array_equal(y, x[:, :, kh : kh + 4, kw : kw + 4])


def test_conv_impulse_with_padding_stride_dilation() -> None:
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 0, 4] = 1.0
    w = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2)
    (y,) = run_op("Conv", {"pads": [1, 1, 1, 1], "dilations": [2, 2], "strides": [1, 1]}, [x, w])
    # y[o] = sum_k w[k] x[o - 1 + 2k]: the only hit is at o = (1 - 2a, 5 - 2b) for taps (a, b)
    expected = np.zeros((1, 1, 5, 5), np.float32)
    for a, b in itertools.product(range(2), range(2)):
        oh, ow = 0 + 1 - 2 * a, 4 + 1 - 2 * b
        if 0 <= oh < 5 and 0 <= ow < 5:
            expected[0, 0, oh, ow] = w[0, 0, a, b]
    np.testing.assert_array_equal(y, expected)
    # only tap (0, 1) reaches the impulse: o = (1 - 0, 5 - 2) = (1, 3)
    assert np.count_nonzero(y) == 1 and y[0, 0, 1, 3] == w[0, 0, 0, 1]


def test_conv_same_padding_output_shapes() -> None:
    x = rand(91, (1, 2, 9, 10))
    w = rand(92, (3, 2, 4, 3))
    for ap in ("SAME_UPPER", "SAME_LOWER"):
        for s in (1, 2, 3):
            (y,) = run_op("Conv", {"auto_pad": ap, "strides": [s, s]}, [x, w])
            assert y.shape == (1, 3, math.ceil(9 / s), math.ceil(10 / s))
    # even kernel, stride 1: UPPER and LOWER differ by a one-pixel shift
    (up,) = run_op("Conv", {"auto_pad": "SAME_UPPER"}, [x, w])
    (lo,) = run_op("Conv", {"auto_pad": "SAME_LOWER"}, [x, w])
    np.testing.assert_allclose(up[:, :, 1:-1, :], lo[:, :, 2:, :], rtol=1e-5, atol=1e-5)


def test_conv_matches_taps_reference_on_mnist_sizes() -> None:
    x = rand(93, (3, 32, 13, 13))
    w = rand(94, (64, 32, 3, 3), low=-0.2, high=0.2)
    b = rand(95, (64,))
    (y,) = run_op("Conv", {"kernel_shape": [3, 3]}, [x, w, b])
    assert_close(y, ref_conv_taps(x, w, b), "f32_accumulate")


@pytest.mark.parametrize(
    "xshape, wshape, attrs, dtype, full_width, bias_in_gemm, chunked",
    [
        ((2, 3, 10, 9), (4, 3, 3, 3), {}, np.float32, True, False, False),
        ((2, 3, 10, 9), (4, 3, 3, 3), {}, np.float16, True, False, False),
        ((2, 3, 10, 9), (4, 3, 3, 3), {}, np.float64, True, False, False),
        (
            (1, 2, 12, 14),
            (4, 1, 3, 3),
            {"dilations": [2, 2], "pads": [1, 1, 1, 1], "group": 2},
            np.float32,
            True,
            False,
            False,
        ),
        ((1, 2, 4, 8, 8), (3, 2, 1, 2, 2), {}, np.float32, True, False, False),
        ((2, 1, 40, 30), (2, 1, 3, 3), {}, np.float32, True, True, False),
        ((2, 1, 40, 30), (2, 1, 3, 3), {}, np.float16, True, True, False),
        # long runs (an output row times the batch): the plain im2col, in slices
        ((16, 3, 10, 9), (4, 3, 3, 3), {}, np.float32, False, False, True),
        ((2, 3, 10), (4, 3, 3), {}, np.float32, False, False, False),  # 1-D: not full width
        ((32, 2, 12, 12), (4, 2, 3, 3), {}, np.float32, False, True, True),
        (
            (32, 4, 13, 13),
            (6, 2, 3, 3),
            {"strides": [2, 2], "group": 2, "pads": [1, 0, 0, 1]},
            np.float32,
            False,
            False,
            True,
        ),
        (
            (2, 4, 20, 20),
            (6, 2, 3, 3),
            {"strides": [2, 2], "group": 2, "pads": [1, 0, 1, 0]},
            np.float32,
            False,
            False,
            True,
        ),
        (
            (16, 2, 25, 25),
            (2, 1, 2, 2),
            {"strides": [2, 2], "group": 2, "pads": [1, 0, 1, 0]},
            np.float32,
            False,
            True,
            True,
        ),
        ((30, 2, 9, 9), (3, 2, 1, 1), {}, np.float32, True, True, False),
        ((1, 2, 9, 9), (3, 2, 1, 1), {}, np.float32, True, False, False),
    ],
)
def test_conv_kernel_paths(
    xshape, wshape, attrs, dtype, full_width, bias_in_gemm, chunked, monkeypatch
) -> None:
    """The full-width and sliced im2col and the bias-in-GEMM variants agree with the naive
    reference (slices of 4 KiB, so that small shapes take the sliced path)."""
    monkeypatch.setattr(_kernels, "IM2COL_CHUNK_BYTES", 4096)
    x, w, b = rand(120, xshape, dtype), rand(121, wshape, dtype), rand(122, (wshape[0],), dtype)
    op = create_op("Conv", "c", attrs)
    (y,) = op.run([x, w, b])
    (plan,) = op._plans.values()
    assert (plan.full_width or plan.pointwise) == full_width
    assert plan.bias_in_gemm == bias_in_gemm
    assert (plan.chunk_rows > 0) == chunked
    assert y.dtype == np.dtype(dtype)
    nd = len(xshape) - 2
    want = ref_conv(
        x,
        w,
        b,
        strides=attrs.get("strides"),
        pads=attrs.get("pads"),
        dilations=attrs.get("dilations"),
        group=attrs.get("group", 1),
    )
    tol = {np.float16: "f16_accumulate", np.float32: "f32_accumulate", np.float64: "f64"}[dtype]
    assert_close(y, want, tol)
    (y2,) = run_op("Conv", attrs, [x, w])  # without bias: the other path
    assert_close(
        y2,
        ref_conv(
            x,
            w,
            None,
            strides=attrs.get("strides"),
            pads=attrs.get("pads"),
            dilations=attrs.get("dilations"),
            group=attrs.get("group", 1),
        ),
        tol,
    )
    assert y.shape[2:] == want.shape[2:] and len(y.shape) == nd + 2


def test_conv_accepts_non_contiguous_inputs() -> None:
    base = rand(96, (2, 6, 9, 8))
    x = base[:, ::2, ::-1, :]  # strided, negative strides
    w = np.asfortranarray(rand(97, (4, 3, 3, 3)))
    (y,) = run_op("Conv", {"pads": [1, 1, 1, 1]}, [x, w])
    assert_close(y, ref_conv(np.ascontiguousarray(x), w, pads=[1, 1, 1, 1]), "f32_accumulate")


def test_ops_accept_strided_outputs_of_conv() -> None:
    """Conv may return a transposed view (batch folded into the GEMM); consumers cope."""
    x = rand(98, (3, 2, 8, 8))
    w = rand(99, (4, 2, 3, 3))
    (y,) = run_op("Conv", {}, [x, w])
    ref = ref_conv_taps(x, w)
    (p,) = run_op("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, [y])
    assert_close(
        p, ref_pool(ref.astype(np.float32), "max", [2, 2], strides=[2, 2]), "f32_accumulate"
    )
    (f,) = run_op("Flatten", {}, [y])
    assert_close(f, ref.reshape(3, -1), "f32_accumulate")
    (r,) = run_op("Reshape", {}, [y, np.array([3, -1], np.int64)], constants=(1,))
    assert_close(r, ref.reshape(3, -1), "f32_accumulate")


@pytest.mark.parametrize(
    "xshape, wshape, attrs",
    [
        (
            (2, 4, 9, 8),
            (6, 4, 3, 3),
            {"strides": [2, 1], "pads": [1, 2, 1, 2], "dilations": [1, 2]},
        ),
        ((1, 6, 7, 7), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
        ((3, 4, 8, 8), (4, 2, 2, 2), {"group": 2, "strides": [2, 2]}),
        ((2, 3, 10), (5, 3, 4), {"strides": [3], "pads": [2, 2], "dilations": [2]}),
        ((1, 2, 4, 5, 6), (3, 2, 2, 3, 3), {"pads": [1, 1, 1, 1, 1, 1], "strides": [1, 2, 2]}),
    ],
)
def test_conv_matches_torch(torch_f, xshape, wshape, attrs) -> None:
    torch, F = torch_f
    x, w, b = rand(110, xshape), rand(111, wshape), rand(112, (wshape[0],))
    (y,) = run_op("Conv", attrs, [x, w, b])
    nd = len(xshape) - 2
    pads = attrs.get("pads", [0] * 2 * nd)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    xt = _t(torch, ref_pad(x, pads))
    want = fn(
        xt,
        _t(torch, w),
        _t(torch, b),
        stride=attrs.get("strides", 1),
        dilation=attrs.get("dilations", 1),
        groups=attrs.get("group", 1),
    ).numpy()
    assert_close(y, want, "f32_accumulate")
