"""Attention and RotaryEmbedding against onnx's ReferenceEvaluator (skipped without onnx)."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, rand, run_case

Q4, K4, V4 = rand(0, (2, 4, 3, 8)), rand(1, (2, 2, 5, 8)), rand(2, (2, 2, 5, 6))
Q3, K3, V3 = rand(3, (2, 3, 16)), rand(4, (2, 5, 8)), rand(5, (2, 5, 8))
PAST_K, PAST_V = rand(6, (2, 2, 4, 8)), rand(7, (2, 2, 4, 6))
BOOL_MASK = rand(8, (2, 1, 3, 5)) > -1
FLOAT_MASK = rand(9, (3, 9))
TOL = {"rtol": 1e-5, "atol": 1e-6, "opset": 23}
CASES = [
    OpCase("gqa_4d", "Attention", {}, [Q4, K4, V4], **TOL),
    OpCase("gqa_3d_heads", "Attention", {"q_num_heads": 4, "kv_num_heads": 2}, [Q3, K3, V3], **TOL),
    OpCase(
        "causal_scale_softcap",
        "Attention",
        {"is_causal": 1, "scale": 0.3, "softcap": 2.0},
        [Q4, K4, V4],
        **TOL,
    ),
    OpCase("bool_mask_short", "Attention", {}, [Q4, K4, V4, BOOL_MASK[..., :4]], **TOL),
    OpCase(
        "past_cache_all_outputs",
        "Attention",
        {"qk_matmul_output_mode": 2},
        [Q4, K4, V4, FLOAT_MASK, PAST_K, PAST_V],
        outputs=4,
        **TOL,
    ),
    OpCase(
        "causal_past_softmax_output",
        "Attention",
        {"is_causal": 1, "qk_matmul_output_mode": 3},
        [Q4, K4, V4, None, PAST_K, PAST_V],
        outputs=4,
        **TOL,
    ),
    OpCase(
        "rotary_4d",
        "RotaryEmbedding",
        {},
        [rand(10, (2, 2, 3, 8)), rand(11, (2, 3, 4)), rand(12, (2, 3, 4))],
        **TOL,
    ),
    OpCase(
        "rotary_3d_interleaved_partial_positions",
        "RotaryEmbedding",
        {"num_heads": 2, "interleaved": 1, "rotary_embedding_dim": 4},
        [
            rand(13, (2, 3, 16)),
            rand(14, (6, 2)),
            rand(15, (6, 2)),
            np.array([[0, 1, 2], [5, 3, 0]], np.int64),
        ],
        **TOL,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_padded_keys_and_fully_masked_rows_give_zeros() -> None:
    nonpad = np.array([0, 5], np.int64)
    [y] = run_case("Attention", {}, [Q4, K4, V4, None, None, None, nonpad])
    assert not np.isnan(y).any()
    np.testing.assert_array_equal(y[0], 0)  # no key left for sample 0
    [full] = run_case("Attention", {}, [Q4, K4, V4])
    np.testing.assert_allclose(y[1], full[1], rtol=1e-6)


@pytest.mark.parametrize(
    "op_type, attrs, inputs, message",
    [
        ("Attention", {}, [Q3, K3, V3], "needs the attribute 'q_num_heads'"),
        ("Attention", {}, [rand(0, (2, 3, 3, 8)), K4, V4], "not a multiple of kv_num_heads"),
        ("Attention", {}, [Q4, K4, V4, None, PAST_K], "must be given together"),
        ("Attention", {}, [Q4, K4, V4, rand(0, (3, 10))], "at most 5 keys"),
        ("Attention", {"softmax_precision": 16}, [Q4, K4, V4], "softmax_precision' 16"),
        (
            "Attention",
            {},
            [Q4, K4, V4, None, None, None, np.array([9, 1], np.int64)],
            "nonpad_kv_seqlen values must be 0 to 5",
        ),
        (
            "RotaryEmbedding",
            {},
            [rand(0, (2, 3, 8)), rand(0, (2, 3, 4)), rand(0, (2, 3, 4))],
            "needs 'num_heads'",
        ),
        (
            "RotaryEmbedding",
            {},
            [rand(0, (1, 1, 2, 8)), rand(0, (4, 4)), rand(0, (4, 4)), np.array([[0, 4]], np.int64)],
            "position_ids must be 0 to 3",
        ),
    ],
)
def test_bad_input_is_a_clear_error(op_type, attrs, inputs, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op_type, attrs, inputs)
