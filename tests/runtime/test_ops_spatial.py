"""Col2Im and CenterCropPad against onnx's ReferenceEvaluator (skipped without onnx), Col2Im as
the adjoint of im2col, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef.errors import ExecutionError
from popef.runtime.ops import TensorSpec, create_op

from .op_oracle import OpCase, check_case, i64, rand, run_case

OP18 = {"opset": 18}
CASES = [
    OpCase(
        "col2im", "Col2Im", {}, [rand(0, (1, 5, 5)), i64(5, 5), i64(1, 5)], constants=(1, 2), **OP18
    ),
    OpCase(
        "col2im_all_attrs",
        "Col2Im",
        {"dilations": [1, 2], "pads": [1, 0, 1, 1], "strides": [2, 1]},
        [rand(1, (2, 2 * 6, 3 * 3)), i64(5, 6), i64(2, 3)],
        constants=(1, 2),
        **OP18,
    ),
    OpCase(
        "col2im_3d",
        "Col2Im",
        {},
        [rand(2, (1, 2 * 8, 8)), i64(3, 3, 3), i64(2, 2, 2)],
        constants=(1, 2),
        **OP18,
    ),
    OpCase(
        "crop_pad_all_axes",
        "CenterCropPad",
        {},
        [rand(3, (5, 4, 3)), i64(3, 7, 3)],
        constants=(1,),
        **OP18,
    ),
    OpCase(
        "crop_pad_negative_axes_int",
        "CenterCropPad",
        {"axes": [-3, -1]},
        [rand(4, (6, 4, 5), np.int64, 0, 9), np.array([3, 8], np.int32)],
        constants=(1,),
        **OP18,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(3, 7),
    block=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_col2im_is_the_adjoint_of_im2col(
    size: int, block: int, stride: int, pad: int, seed: int
) -> None:
    """<col2im(c), x> == <c, im2col(x)> for random c and x: each column lands where im2col
    took it from."""
    count = (size + 2 * pad - block) // stride + 1
    cols = rand(seed, (1, block * block, count * count), np.float64)
    x = rand(seed + 1, (1, 1, size, size), np.float64)
    attrs = {"strides": [stride] * 2, "pads": [pad] * 4}
    [image] = run_case("Col2Im", attrs, [cols, i64(size, size), i64(block, block)], (1, 2))
    padded = np.pad(x[0, 0], pad)
    im2col = np.stack(
        [
            padded[
                i : i + (count - 1) * stride + 1 : stride, j : j + (count - 1) * stride + 1 : stride
            ].reshape(-1)
            for i in range(block)
            for j in range(block)
        ]
    )
    np.testing.assert_allclose((image * x).sum(), (cols[0] * im2col).sum(), rtol=1e-9)


@pytest.mark.parametrize(
    "op_type, attrs, inputs, message",
    [
        ("Col2Im", {}, [rand(0, (1, 5, 5)), i64(5, 5), i64(1, 5, 1)], "same number"),
        (
            "Col2Im",
            {},
            [rand(0, (1, 5, 4)), i64(5, 5), i64(1, 5)],
            "input must be \\[N, C \\* 5, 5\\]",
        ),
        ("Col2Im", {}, [rand(0, (1, 5, 5)), i64(5, 5), i64(1, 7)], "does not fit spatial axis 1"),
        (
            "Col2Im",
            {"strides": [1]},
            [rand(0, (1, 5, 5)), i64(5, 5), i64(1, 5)],
            "must have 2, 2 and 4 values",
        ),
        (
            "Col2Im",
            {"pads": [-1, 0, 0, 0]},
            [rand(0, (1, 5, 5)), i64(5, 5), i64(1, 5)],
            "pads non-negative",
        ),
        ("CenterCropPad", {}, [rand(0, (3, 3)), i64(2)], "one non-negative size for each of the 2"),
        ("CenterCropPad", {"axes": [0, -2]}, [rand(0, (3, 3)), i64(2, 2)], "repeat an axis"),
        ("CenterCropPad", {}, [rand(0, (3, 3)), i64(2, -1)], "non-negative"),
    ],
)
def test_bad_inputs_are_refused(op_type: str, attrs: dict, inputs: list, message: str) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op_type, attrs, inputs, (1, 2) if op_type == "Col2Im" else (1,))


def test_sizes_must_be_constants() -> None:
    with pytest.raises(ExecutionError, match="must be a constant"):
        run_case("CenterCropPad", {}, [rand(0, (3, 3)), i64(2, 2)])


def test_batch_rules() -> None:
    from popef.runtime.batching import ROW_RULES

    op = create_op("CenterCropPad", "c", {"axes": [1]})
    op.constant_inputs = {1: i64(2)}
    specs = [TensorSpec((4, 5), np.float32), TensorSpec((1,), np.int64)]
    assert ROW_RULES["CenterCropPad"](op, [True, False], specs)
    op = create_op("CenterCropPad", "c", {"axes": [0]})
    op.constant_inputs = {1: i64(2)}
    assert not ROW_RULES["CenterCropPad"](op, [True, False], specs)
    assert ROW_RULES["Col2Im"](create_op("Col2Im", "i"), [True, False, False], [])
