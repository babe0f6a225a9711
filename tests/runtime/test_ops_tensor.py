"""Shape and tensor-construction ops (popef.runtime.ops.tensor and the newer ops of
popef.runtime.ops.shape) against onnx's ReferenceEvaluator (skipped without onnx) and numpy
formulas, in both the attribute form of early opsets and the input form of later ones."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError
from popef.runtime.ops import TensorSpec, create_op

from .op_oracle import OpCase, check_case, i64, rand, run_case

X = rand(0, (2, 3, 4, 5))
CASES = [
    OpCase("shape", "Shape", {}, [X]),
    OpCase("shape_start_end", "Shape", {"start": 1, "end": -1}, [X]),
    OpCase("size", "Size", {}, [X]),
    OpCase("constant_of_shape", "ConstantOfShape", {}, [i64(2, 3)], (0,)),
    OpCase(
        "range_int",
        "Range",
        {},
        [i64(1), i64(10), i64(3)],
        (0, 1, 2),
        ref=lambda *a: [np.arange(1, 10, 3, dtype=np.int64)],
    ),
    OpCase(
        "range_float_negative",
        "Range",
        {},
        [np.float32(5), np.float32(-1), np.float32(-1.5)],
        (0, 1, 2),
    ),
    OpCase("range_empty", "Range", {}, [np.int32(5), np.int32(1), np.int32(2)], (0, 1, 2)),
    OpCase("eyelike", "EyeLike", {"k": 1}, [rand(1, (3, 5))]),
    OpCase("eyelike_dtype", "EyeLike", {"k": -1, "dtype": 7}, [rand(1, (4, 3))]),
    OpCase("squeeze_input", "Squeeze", {}, [rand(2, (1, 3, 1, 2)), i64(0, -2)], (1,)),
    OpCase("squeeze_all", "Squeeze", {}, [rand(2, (1, 3, 1, 2))]),
    OpCase("squeeze_attr_opset11", "Squeeze", {"axes": [2]}, [rand(2, (1, 3, 1, 2))], opset=11),
    OpCase("unsqueeze_input", "Unsqueeze", {}, [rand(3, (3, 4)), i64(0, -1)], (1,)),
    OpCase("unsqueeze_attr_opset11", "Unsqueeze", {"axes": [1, 3]}, [rand(3, (3, 4))], opset=11),
    OpCase("expand", "Expand", {}, [rand(4, (3, 1)), i64(2, 1, 4)], (1,)),
    OpCase("expand_smaller_shape", "Expand", {}, [rand(4, (2, 3, 1)), i64(1, 5)], (1,)),
    OpCase("tile", "Tile", {}, [rand(5, (2, 3)), i64(2, 3)], (1,)),
    OpCase("split_equal", "Split", {"axis": 1}, [rand(6, (2, 6))], outputs=3),
    OpCase("split_input", "Split", {"axis": -1}, [rand(6, (2, 6)), i64(1, 5)], (1,), 2),
    OpCase(
        "split_attr_opset11", "Split", {"split": [2, 4]}, [rand(6, (6, 2))], outputs=2, opset=11
    ),
    OpCase(
        "split_num_outputs", "Split", {"num_outputs": 3}, [rand(6, (7, 2))], outputs=3, opset=18
    ),
    OpCase("slice", "Slice", {}, [X, i64(1, -3), i64(100, -1), i64(1, 3), i64(1, 2)], (1, 2, 3, 4)),
    OpCase(
        "slice_negative_step", "Slice", {}, [X, i64(-1), i64(-100), i64(2), i64(-2)], (1, 2, 3, 4)
    ),
    OpCase("slice_default_axes", "Slice", {}, [X, i64(0, 1), i64(1, 3)], (1, 2)),
    OpCase(
        "slice_attr_opset9",
        "Slice",
        {"starts": [0, 1], "ends": [1, 1000], "axes": [0, 3]},
        [X],
        opset=9,
    ),
    OpCase("pad_constant", "Pad", {}, [rand(7, (2, 3)), i64(1, 0, 2, 1), np.float32(9)], (1,)),
    OpCase(
        "pad_negative",
        "Pad",
        {},
        [rand(7, (3, 4)), i64(-1, 1, 0, -2)],
        (1,),
        ref=lambda x, p: [np.pad(x[1:, :2], ((0, 0), (1, 0)))],
    ),
    OpCase("pad_reflect", "Pad", {"mode": "reflect"}, [rand(7, (3, 4)), i64(0, 2, 0, 3)], (1,)),
    OpCase(
        "pad_edge_axes", "Pad", {"mode": "edge"}, [rand(7, (3, 4)), i64(2, 1), None, i64(1)], (1, 3)
    ),
    OpCase("pad_wrap", "Pad", {"mode": "wrap"}, [rand(7, (3, 4)), i64(1, 1, 2, 2)], (1,)),
    OpCase(
        "pad_attr_opset2", "Pad", {"pads": [0, 1, 0, 2], "value": 1.5}, [rand(7, (3, 4))], opset=2
    ),
    OpCase("depth_to_space_dcr", "DepthToSpace", {"blocksize": 2}, [rand(8, (1, 8, 2, 3))]),
    OpCase(
        "depth_to_space_crd",
        "DepthToSpace",
        {"blocksize": 2, "mode": "CRD"},
        [rand(8, (2, 8, 2, 3))],
    ),
    OpCase("space_to_depth", "SpaceToDepth", {"blocksize": 2}, [rand(8, (2, 3, 4, 6))]),
    OpCase(
        "space_to_depth_crd",
        "SpaceToDepth",
        {"blocksize": 2, "mode": "CRD"},
        [rand(8, (2, 3, 4, 6))],
        opset=28,
    ),
    OpCase(
        "nonzero_runs_for_folding",
        "NonZero",
        {},
        [np.array([[1, 0], [2, 3]])],
        ref=lambda x: [np.array(np.nonzero(x), np.int64)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    if case.op in ("NonZero",):
        op = create_op(case.op, "n")
        [got] = op.run(case.inputs)
        np.testing.assert_array_equal(got, case.ref(*case.inputs)[0])
        return
    check_case(case)


def test_constant_forms() -> None:
    [y] = run_case("Constant", {"value_ints": [1, 2]}, [])
    assert y.dtype == np.int64 and y.tolist() == [1, 2]
    [y] = run_case("Constant", {"value_float": 2.5}, [])
    assert y.dtype == np.float32 and y.shape == ()
    table = np.arange(6, dtype=np.float16).reshape(2, 3)
    [y] = run_case("Constant", {"value": table}, [])
    np.testing.assert_array_equal(y, table)
    with pytest.raises(ExecutionError, match="exactly one of"):
        create_op("Constant", "c", {"value_int": 1, "value_ints": [1]})
    with pytest.raises(ExecutionError, match="string constants are not supported"):
        create_op("Constant", "c", {"value_string": "x"})


def test_constant_of_shape_value_tensor() -> None:
    [y] = run_case("ConstantOfShape", {"value": np.array([7], np.int32)}, [i64(2, 2)], (0,))
    assert y.dtype == np.int32 and (y == 7).all()


@pytest.mark.parametrize(
    "op_type, attrs, inputs, message",
    [
        ("Slice", {}, [X, i64(0), i64(1)], r"input 1 \('starts'\) must be a constant"),
        ("Expand", {}, [X, i64(3, 1)], "must be a constant"),
        ("Reshape", {}, [X, i64(-1)], "must be a constant"),
        ("Unsqueeze", {}, [X], "axes are required"),
        ("NonZero", {}, [X], "output shape depends on the input values"),
        ("Unique", {}, [X], "output shape depends on the input values"),
    ],
)
def test_static_inputs_must_be_constants(op_type, attrs, inputs, message) -> None:
    op = create_op(op_type, "node", attrs)
    with pytest.raises(ExecutionError, match=message) as info:
        op.infer([TensorSpec.of(np.asarray(x)) for x in inputs])
    assert f"{op_type} node 'node'" in str(info.value)


@pytest.mark.parametrize(
    "op_type, attrs, inputs, constants, outputs, message",
    [
        ("Squeeze", {}, [rand(0, (2, 3)), i64(0)], (1,), 1, "cannot squeeze axis 0 of \\[2, 3\\]"),
        ("Squeeze", {}, [rand(0, (1, 3)), i64(2)], (1,), 1, "axes 2 is out of range"),
        ("Unsqueeze", {}, [rand(0, (2, 3)), i64(1, 1)], (1,), 1, "repeat an axis"),
        ("Expand", {}, [rand(0, (2, 3)), i64(4, 3)], (1,), 1, r"cannot expand \[2, 3\]"),
        ("Tile", {}, [rand(0, (2, 3)), i64(2)], (1,), 1, "repeats \\[2\\] must be 2"),
        ("Split", {}, [rand(0, (5, 2))], (), 2, "into 2 equal parts"),
        ("Split", {}, [rand(0, (5, 2)), i64(1, 1)], (1,), 2, "adding up to 5"),
        ("Slice", {}, [rand(0, (5,)), i64(0), i64(1), i64(0), i64(0)], (1, 2, 3, 4), 1, "step 0"),
        ("Pad", {}, [rand(0, (2, 3)), i64(1, 1)], (1,), 1, "must hold 4 values"),
        ("Pad", {"mode": "mirror"}, [rand(0, (2, 3)), i64(1, 1, 1, 1)], (1,), 1, "'mode'"),
        ("DepthToSpace", {"blocksize": 2}, [rand(0, (1, 6, 2, 2))], (), 1, "divisible by 4"),
        ("Range", {}, [i64(1), i64(1), i64(0)], (0, 1, 2), 1, "delta must not be zero"),
        ("ConstantOfShape", {}, [i64(2, -1)], (0,), 1, "negative dim"),
    ],
)
def test_bad_input_is_a_clear_error(op_type, attrs, inputs, constants, outputs, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op_type, attrs, inputs, constants, outputs)


def test_slice_views_and_clamping_match_python() -> None:
    x = np.arange(10)
    for start, end, step in [
        (-100, 100, 1),
        (8, 2, -3),
        (9, -100, -1),
        (3, 3, 1),
        (2**62, -(2**62), -1),
        (-1, 0, -1),
    ]:
        [y] = run_case("Slice", {}, [x, i64(start), i64(end), i64(0), i64(step)], (1, 2, 3, 4))
        lo = None if end < -len(x) else end
        np.testing.assert_array_equal(y, x[slice(start, lo, step)])


def test_every_op_of_these_families_has_a_case() -> None:
    from popef.runtime.ops import (
        OPS,
        indexing,
        linalg,
        normalization,
        quantize,
        resize,
        shape,
        tensor,
    )

    from . import (
        test_ops_indexing,
        test_ops_normalization,
        test_ops_quantize_linalg,
        test_ops_resize,
    )

    families = (tensor, shape, indexing, normalization, resize, quantize, linalg)
    ours = {n for m in families for n in m.__all__ if n in OPS}
    tables = (
        CASES,
        test_ops_indexing.CASES,
        test_ops_normalization.CASES,
        test_ops_resize.CASES,
        test_ops_quantize_linalg.CASES,
    )
    covered = {c.op for table in tables for c in table}
    # tested by the functions of these modules or of tests/runtime/test_ops.py
    covered |= {
        "Constant",
        "Unique",
        "Compress",
        "Upsample",
        "Reshape",
        "Flatten",
        "Transpose",
        "Concat",
        "Softmax",
        "LogSoftmax",
        "BatchNormalization",
        "Gemm",
        "MatMul",
    }
    covered |= {"Scatter"}  # in test_ops_quantize_int.py
    assert ours - covered == set()


def test_unique_and_compress_run_for_folding() -> None:
    x = np.array([3, 1, 3, 2, 1], np.int64)
    values, first, inverse, counts = create_op("Unique", "u", {"sorted": 0}, 4).run([x])
    assert values.tolist() == [3, 1, 2] and first.tolist() == [0, 1, 3]
    assert inverse.tolist() == [0, 1, 0, 2, 1] and counts.tolist() == [2, 2, 1]
    [y] = create_op("Compress", "c", {"axis": 0}).run([x, np.array([1, 0, 1], bool)])
    assert y.tolist() == [3, 3]
