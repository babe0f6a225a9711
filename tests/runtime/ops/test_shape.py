"""Shape ops in detail: runtime shapes and error messages."""

from __future__ import annotations

import re

import numpy as np
import pytest

from popef.errors import ExecutionError
from popef.runtime.ops import TensorSpec, create_op

# --------------------------------------------------------------------------------------------
# shape details


def test_reshape_run_uses_runtime_shape_values() -> None:
    op = create_op("Reshape", "r")
    x = np.arange(12, dtype=np.float32)
    for shape, expect in (([3, 4], (3, 4)), ([2, -1, 3], (2, 2, 3)), ([-1], (12,))):
        (y,) = op.run([x, np.array(shape, np.int64)])
        assert y.shape == expect
        np.testing.assert_array_equal(y.ravel(), x)


@pytest.mark.parametrize(
    "attrs, in_shape, shape, message",
    [
        ({}, (2, 3), [-1, -1], r"more than one -1"),
        ({}, (2, 3), [4, 2], r"6 elements vs 8"),
        ({}, (2, 3), [4, -1], r"6 elements do not fit"),
        ({}, (2, 3), [2, 3, 0], r"0 at position 2 has no input dim to copy"),
        ({}, (2, 3), [-2, 3], r"dims must be >= -1"),
        ({"allowzero": 1}, (0, 3), [0, -1], r"allowzero=1 forbids 0 together with -1"),
    ],
)
def test_reshape_errors(attrs, in_shape, shape, message) -> None:
    op = create_op("Reshape", "resh", attrs)
    op.constant_inputs = {1: np.array(shape, np.int64)}
    shown = re.escape(f"cannot reshape [{', '.join(map(str, in_shape))}] to {shape}: ")
    with pytest.raises(ExecutionError, match=r"^Reshape node 'resh': " + shown + message):
        op.infer([TensorSpec(in_shape, np.float32), TensorSpec((len(shape),), np.int64)])
    with pytest.raises(ExecutionError, match=message):
        op.run([np.zeros(in_shape, np.float32), np.array(shape, np.int64)])


def test_reshape_shape_must_be_constant_at_load() -> None:
    op = create_op("Reshape", "resh")
    with pytest.raises(
        ExecutionError, match=r"Reshape node 'resh': the shape input \(input 1\) must be a constant"
    ):
        op.infer([TensorSpec((2, 3), np.float32), TensorSpec((2,), np.int64)])
    op.constant_inputs = {1: np.array([3, 2], np.int64)}
    with pytest.raises(ExecutionError, match="1-D int64"):
        op.infer([TensorSpec((2, 3), np.float32), TensorSpec((2,), np.int32)])


def test_flatten_transpose_concat_errors() -> None:
    with pytest.raises(
        ExecutionError, match=r"Flatten node 'f': axis 4 is out of range for input \[2, 3, 4\]"
    ):
        create_op("Flatten", "f", {"axis": 4}).infer([TensorSpec((2, 3, 4), np.float32)])
    with pytest.raises(
        ExecutionError, match=r"Transpose node 't': attribute 'perm' must be a permutation"
    ):
        create_op("Transpose", "t", {"perm": [0, 0, 1]})
    with pytest.raises(
        ExecutionError, match=r"Transpose node 't': perm \[1, 0\] does not fit input \[2, 3, 4\]"
    ):
        create_op("Transpose", "t", {"perm": [1, 0]}).infer([TensorSpec((2, 3, 4), np.float32)])
    cat = create_op("Concat", "cat", {"axis": 1})
    with pytest.raises(
        ExecutionError,
        match=r"Concat node 'cat': input 1 \[3, 4\] does not match input 0 \[2, 4\] outside axis 1",
    ):
        cat.infer([TensorSpec((2, 4), np.float32), TensorSpec((3, 4), np.float32)])
    with pytest.raises(
        ExecutionError,
        match=r"Concat node 'cat': input 1 has dtype float64 but input 0 has float32",
    ):
        cat.infer([TensorSpec((2, 4), np.float32), TensorSpec((2, 4), np.float64)])
    with pytest.raises(ExecutionError, match=r"axis 1 is out of range"):
        cat.infer([TensorSpec((2,), np.float32)])
