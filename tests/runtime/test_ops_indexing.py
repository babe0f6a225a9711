"""Indexing ops (popef.runtime.ops.indexing) against onnx's ReferenceEvaluator (skipped without
onnx) and numpy formulas; out-of-range indices are clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, i64, rand, run_case

D = rand(0, (4, 5, 3))
CASES = [
    OpCase("gather_axis0", "Gather", {}, [D, i64(3, -1, 0)]),
    OpCase("gather_axis1_2d_indices", "Gather", {"axis": 1}, [D, i64(0, 4, -2, 1).reshape(2, 2)]),
    OpCase("gather_scalar_index", "Gather", {"axis": -1}, [D, np.int32(2)]),
    OpCase(
        "gather_elements", "GatherElements", {"axis": 1}, [D, rand(1, (4, 2, 3), np.int64, -5, 5)]
    ),
    OpCase(
        "gather_elements_smaller",
        "GatherElements",
        {"axis": 0},
        [rand(2, (3, 3)), i64(1, 2, 0, -1).reshape(2, 2)],
        ref=lambda d, i: [np.array([[d[1, 0], d[2, 1]], [d[0, 0], d[2, 1]]])],
    ),
    OpCase("gather_nd", "GatherND", {}, [D, i64(0, 1, 3, 4, -1, 0).reshape(3, 2)]),
    OpCase(
        "gather_nd_batch_dims",
        "GatherND",
        {"batch_dims": 1},
        [D, rand(3, (4, 2, 1), np.int64, 0, 5)],
    ),
    OpCase(
        "scatter_elements",
        "ScatterElements",
        {"axis": 1},
        [rand(4, (3, 4)), i64(0, 3, 1, 2, 0, -1).reshape(3, 2), rand(5, (3, 2))],
    ),
    OpCase(
        "scatter_elements_add",
        "ScatterElements",
        {"axis": 0, "reduction": "add"},
        [rand(4, (3, 4)), i64(0, 0, 2, 1, 0, 0, 0, 0).reshape(2, 4), rand(5, (2, 4))],
    ),
    OpCase(
        "scatter_nd",
        "ScatterND",
        {},
        [rand(6, (4, 3, 2)), i64(1, 3).reshape(2, 1), rand(7, (2, 3, 2))],
    ),
    OpCase(
        "scatter_nd_mul",
        "ScatterND",
        {"reduction": "mul"},
        [rand(6, (4, 3)), i64(1, 2, 1, 2, 0, 0).reshape(3, 2), rand(7, (3,))],
    ),
    OpCase("topk_largest", "TopK", {"axis": 1}, [rand(8, (3, 7)), i64(3)], (1,), 2),
    OpCase("topk_smallest", "TopK", {"largest": 0, "axis": 0}, [rand(8, (5, 2)), i64(2)], (1,), 2),
    OpCase(
        "topk_ties_lower_index_first",
        "TopK",
        {},
        [np.array([[1, 3, 3, 2, 3]], np.int32), i64(2)],
        (1,),
        2,
    ),
    OpCase("topk_attr_opset1", "TopK", {"k": 2}, [rand(8, (3, 4))], outputs=2, opset=1),
    OpCase(
        "onehot",
        "OneHot",
        {},
        [i64(0, 2, -1, 5), np.array(4, np.int64), np.array([0, 1], np.float32)],
        (1,),
    ),
    OpCase(
        "onehot_axis0",
        "OneHot",
        {"axis": 0},
        [i64(1, 0, 2).reshape(3, 1), np.float32(3), np.array([-1, 7], np.int64)],
        (1,),
    ),
    OpCase("trilu_upper", "Trilu", {}, [rand(9, (2, 4, 5)), i64(1).reshape(())]),
    OpCase("trilu_lower", "Trilu", {"upper": 0}, [rand(9, (4, 3)), i64(-1).reshape(())]),
    OpCase(
        "reverse_sequence_time_first", "ReverseSequence", {}, [rand(10, (4, 3, 2)), i64(4, 1, 2)]
    ),
    OpCase(
        "reverse_sequence_batch_first",
        "ReverseSequence",
        {"batch_axis": 0, "time_axis": 1},
        [rand(10, (3, 4)), i64(1, 4, 0)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_gather_is_an_embedding_lookup() -> None:
    table = rand(11, (10, 4))
    ids = i64(3, 9, 0, 3).reshape(2, 2)
    [y] = run_case("Gather", {}, [table, ids])
    np.testing.assert_array_equal(y, table[ids])


def test_topk_orders_ties_by_index() -> None:
    x = np.array([2.0, 5.0, 5.0, 1.0, 5.0], np.float32)
    values, idx = run_case("TopK", {}, [x, i64(4)], (1,), 2)
    assert idx.tolist() == [1, 2, 4, 0] and values.tolist() == [5, 5, 5, 2]
    values, idx = run_case("TopK", {"largest": 0}, [x, i64(3)], (1,), 2)
    assert idx.tolist() == [3, 0, 1]


@pytest.mark.parametrize(
    "op_type, attrs, inputs, outputs, message",
    [
        ("Gather", {}, [D, i64(4)], 1, r"index 4 at \[0\] is out of range for axis 0 of size 4"),
        ("Gather", {"axis": 1}, [D, i64(-6)], 1, "index -6 .* axis 1 of size 5"),
        ("Gather", {}, [D, np.array([0.0])], 1, "unsupported dtype float64"),
        ("GatherElements", {}, [D, i64(0)], 1, "must have the rank of data"),
        ("GatherND", {}, [D, i64(0, 9).reshape(1, 2)], 1, "index 9 .* out of range"),
        (
            "ScatterElements",
            {},
            [D, i64(0).reshape(1, 1, 1), rand(0, (1, 1, 1), np.float64)],
            1,
            "they must match",
        ),
        ("ScatterND", {"reduction": "avg"}, [D, i64(0).reshape(1, 1), D[:1]], 1, "'reduction'"),
        ("OneHot", {}, [i64(1), i64(0), np.array([0, 1], np.float32)], 1, "depth must be >= 1"),
        ("Trilu", {}, [rand(0, (3,))], 1, "rank >= 2"),
        ("ReverseSequence", {}, [rand(0, (3, 2)), i64(4, 1)], 1, r"must lie in \[0, 3\]"),
        ("ReverseSequence", {"batch_axis": 2}, [rand(0, (3, 2)), i64(1, 1)], 1, "0 and 1"),
    ],
)
def test_bad_input_is_a_clear_error(op_type, attrs, inputs, outputs, message) -> None:
    with pytest.raises(ExecutionError, match=message) as info:
        constants = (1,) if op_type in ("OneHot", "TopK") else ()
        run_case(op_type, attrs, inputs, constants, outputs)
    assert str(info.value).startswith(f"{op_type} node ")


def test_topk_k_out_of_range() -> None:
    with pytest.raises(ExecutionError, match="K 9 is out of range for an axis of size 3"):
        run_case("TopK", {}, [rand(0, (2, 3)), i64(9)], (1,), 2)
