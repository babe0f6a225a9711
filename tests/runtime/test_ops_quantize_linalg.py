"""QuantizeLinear, DequantizeLinear, Einsum and Det against onnx's ReferenceEvaluator (skipped
without onnx) and numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, rand, run_case

X = rand(0, (2, 3, 4), low=-50, high=50)
CASES = [
    OpCase("quantize_per_tensor", "QuantizeLinear", {}, [X, np.float32(0.5), np.uint8(128)]),
    OpCase(
        "quantize_int8_per_axis",
        "QuantizeLinear",
        {"axis": 1},
        [X, np.array([0.5, 1, 2], np.float32), np.array([0, -3, 4], np.int8)],
    ),
    OpCase("quantize_default_uint8", "QuantizeLinear", {}, [X, np.float32(0.25)]),
    OpCase(
        "quantize_blocked",
        "QuantizeLinear",
        {"axis": 2, "block_size": 3},
        [X, rand(1, (2, 3, 2), low=0.1, high=1), np.zeros((2, 3, 2), np.int16)],
    ),
    OpCase(
        "dequantize_per_tensor",
        "DequantizeLinear",
        {},
        [rand(2, (2, 5), np.uint8, 0, 255), np.float32(0.1), np.uint8(100)],
    ),
    OpCase(
        "dequantize_per_axis",
        "DequantizeLinear",
        {"axis": 0},
        [
            rand(2, (2, 5), np.int8, -128, 127),
            np.array([0.1, 2], np.float32),
            np.array([1, -1], np.int8),
        ],
    ),
    OpCase(
        "dequantize_int32",
        "DequantizeLinear",
        {},
        [rand(3, (4,), np.int32, -999, 999), np.float32(0.01)],
    ),
    OpCase(
        "einsum_matmul",
        "Einsum",
        {"equation": "ij,jk->ik"},
        [rand(4, (3, 4)), rand(5, (4, 2))],
        rtol=1e-5,
        atol=1e-5,
    ),
    OpCase(
        "einsum_batched_attention",
        "Einsum",
        {"equation": "bhqd,bhkd->bhqk"},
        [rand(4, (2, 3, 4, 5)), rand(5, (2, 3, 6, 5))],
        rtol=1e-5,
        atol=1e-5,
    ),
    OpCase(
        "einsum_ellipsis_implicit",
        "Einsum",
        {"equation": "...ij,...jk"},
        [rand(4, (2, 3, 4)), rand(5, (4, 2))],
        rtol=1e-5,
        atol=1e-5,
    ),
    OpCase("einsum_trace_sum", "Einsum", {"equation": "ii"}, [rand(6, (4, 4))]),
    OpCase("einsum_transpose", "Einsum", {"equation": "ijk->kji"}, [rand(6, (2, 3, 4))]),
    OpCase("det", "Det", {}, [rand(7, (3, 4, 4))], rtol=1e-5, atol=1e-5),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_quantize_rounds_half_to_even_and_saturates() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, 1000, -1000], np.float32)
    [q] = run_case("QuantizeLinear", {}, [x, np.float32(1), np.int8(0)])
    assert q.tolist() == [0, 2, 2, 0, 127, -128]
    [d] = run_case("DequantizeLinear", {}, [q, np.float32(0.5), np.int8(0)])
    assert d.dtype == np.float32 and d.tolist() == [0, 1, 1, 0, 63.5, -64]


@pytest.mark.parametrize(
    "op_type, attrs, inputs, message",
    [
        ("QuantizeLinear", {}, [X, np.array([1, 2], np.float32)], r"scale \[2\] must be one value"),
        ("QuantizeLinear", {}, [X, np.float32(1), np.float32(0)], "zero point"),
        ("QuantizeLinear", {"output_dtype": 1}, [X, np.float32(1)], "output_dtype 1 is not"),
        ("DequantizeLinear", {}, [X, np.float32(1)], "unsupported dtype float32"),
        (
            "Einsum",
            {"equation": "ij,jk->ik"},
            [rand(0, (2, 3)), rand(0, (4, 2))],
            "index 'j' is 3 in one operand and 4",
        ),
        ("Einsum", {"equation": "ij->ik"}, [rand(0, (2, 3))], "output index 'k'"),
        ("Einsum", {"equation": "ij,jk"}, [rand(0, (2, 3))], "2 operands"),
        ("Det", {}, [rand(0, (2, 3))], r"\[\.\.\., M, M\]"),
    ],
)
def test_bad_input_is_a_clear_error(op_type, attrs, inputs, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op_type, attrs, inputs)
