"""Elementwise ops in detail (layouts, specials, dtypes), and Softmax against
torch when importable.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from popef.errors import ExecutionError
from popef.runtime.ops import TensorSpec, _kernels, create_op

from .cases_elementwise import _gelu_none
from .common import _t, assert_close, py_elementwise, rand, run_op

# --------------------------------------------------------------------------------------------
# elementwise details


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "small"])
def test_relu_layouts(dtype, layout) -> None:
    """Relu's zero-block fast path (big dense arrays, any axis order) and its fallbacks."""
    base = rand(123, (5, 7, 31, 29), dtype)
    base[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    x = {
        "contiguous": base,
        "transposed": base.transpose(2, 0, 3, 1),
        "strided": base[:, :, ::2],
        "small": base[:1, :1],
    }[layout]
    (y,) = run_op("Relu", {}, [x])
    want = py_elementwise(
        lambda v: v if (math.isnan(v) or v > 0) else 0.0, x.astype(float), dtype=x.dtype
    )
    np.testing.assert_array_equal(y, want)
    assert y.dtype == x.dtype


def test_sigmoid_extremes_do_not_warn() -> None:
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4, np.inf, -np.inf], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        (y,) = run_op("Sigmoid", {}, [x])
    np.testing.assert_array_equal(
        y, np.array([0, np.exp(np.float32(-100)), 0.5, 1, 1, 1, 0], np.float32)
    )
    assert y[1] > 0  # a float32 denormal, not flushed


def test_gelu_erf_accuracy_and_specials() -> None:
    x = np.concatenate([np.linspace(-10, 10, 4001), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    (y,) = run_op("Gelu", {}, [x])
    finite = np.isfinite(x)
    ref = np.array([_gelu_none(v) for v in x[finite]])
    # x / sqrt(2) is rounded differently here and in the kernel; erfc's steep tail (d log erfc
    # / d log y ~ 2 y^2 ~ 100) turns that 1e-16 into ~1e-14
    np.testing.assert_allclose(y[finite], ref, rtol=1e-12, atol=1e-300)
    assert y[-3] == np.inf and y[-2] == 0.0 and np.isnan(y[-1])
    assert y[0] < 0 and abs(y[0] / _gelu_none(-10.0) - 1) < 1e-12  # the tail is not lost to 1 + erf


def test_erfc_kernel_against_math_erfc() -> None:
    x = np.concatenate(
        [np.linspace(-6, 26, 32001), [0.46875, -0.46875, 4.0, 27.0, np.inf, -np.inf]]
    )
    np.testing.assert_allclose(_kernels.erfc(x), [math.erfc(v) for v in x], rtol=2e-14, atol=1e-300)
    assert np.isnan(_kernels.erfc(np.array([np.nan])))[0]


def test_erf_kernel_against_math_erf() -> None:
    x = np.concatenate(
        [np.linspace(-7, 7, 20001), [0.46875, -0.46875, 4.0, -4.0, 5.99, 6.01, 27.0]]
    )
    np.testing.assert_allclose(_kernels.erf(x), [math.erf(v) for v in x], rtol=1e-15, atol=1e-16)


def test_cast_float_to_int_truncates_and_does_not_warn() -> None:
    x = np.array([-2.9, -0.5, 0.5, 2.9, np.nan, 1e30], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        (y,) = run_op("Cast", {"to": 7}, [x])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y[:4], [-2, 0, 0, 2])


def test_cast_to_same_type_and_bool() -> None:
    x = np.array([0.0, -0.0, 0.1, np.nan], np.float32)
    (y,) = run_op("Cast", {"to": 9}, [x])
    np.testing.assert_array_equal(y, [False, False, True, True])
    (z,) = run_op("Cast", {"to": 1}, [x])
    assert z.dtype == np.float32


def test_dropout_refuses_training_mode() -> None:
    x = rand(100, (2, 3))
    op = create_op("Dropout", "drop")
    with pytest.raises(
        ExecutionError, match=r"Dropout node 'drop': training_mode=True is not supported"
    ):
        op.run([x, None, np.array(True)])
    op.constant_inputs = {2: np.array(True)}
    with pytest.raises(ExecutionError, match="training_mode"):
        op.infer([TensorSpec.of(x), None, TensorSpec((), np.bool_)])
    (y,) = op.run([x, np.array(0.9, np.float32), np.array(False)])
    np.testing.assert_array_equal(y, x)


def test_div_int_semantics() -> None:
    a = np.array([7, -7, 7, -7, 0, 9], np.int64)
    b = np.array([2, 2, -2, -2, 3, 3], np.int64)
    (q,) = run_op("Div", {}, [a, b])
    np.testing.assert_array_equal(q, [3, -3, -3, 3, 0, 3])
    (q32,) = run_op("Div", {}, [a.astype(np.int32), b.astype(np.int32)])
    assert q32.dtype == np.int32


def test_clip_nan_propagates_and_bounds_scalar_shape() -> None:
    x = np.array([np.nan, -5.0, 5.0], np.float32)
    (y,) = run_op("Clip", {}, [x, np.array([-1.0], np.float32), np.array(1.0, np.float32)])
    assert np.isnan(y[0]) and y[1] == -1 and y[2] == 1
    with pytest.raises(
        ExecutionError, match=r"Clip node 'c': 'min' \(input 1\) must be a scalar, got shape \[2\]"
    ):
        create_op("Clip", "c").infer([TensorSpec((3,), np.float32), TensorSpec((2,), np.float32)])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(
    "op_type", ["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Softmax", "LogSoftmax", "Identity"]
)
def test_unary_float_dtypes_preserved(op_type: str, dtype) -> None:
    x = rand(101, (3, 4), dtype)
    (y,) = run_op(op_type, {}, [x])
    assert y.dtype == np.dtype(dtype) and y.shape == x.shape
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_matches_torch(torch_f, axis) -> None:
    torch, F = torch_f
    x = rand(119, (4, 6, 3), low=-20, high=20)
    (y,) = run_op("Softmax", {"axis": axis}, [x])
    assert_close(y, F.softmax(_t(torch, x), dim=axis).numpy(), "f32_transcendental")
    (ly,) = run_op("LogSoftmax", {"axis": axis}, [x])
    assert_close(ly, F.log_softmax(_t(torch, x), dim=axis).numpy(), "f32_transcendental")
