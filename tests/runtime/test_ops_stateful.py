"""LinearAttention, CausalConvWithState and TensorScatter against onnx's ReferenceEvaluator
(skipped without onnx), step-by-step decoding equal to one prefill, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popef.errors import ExecutionError
from popef.runtime.ops import TensorSpec, create_op

from .op_oracle import OpCase, check_case, rand, run_case

B, T = 2, 5
Q, K, V = rand(0, (B, T, 4 * 3)), rand(1, (B, T, 2 * 3)), rand(2, (B, T, 2 * 4))
STATE = rand(3, (B, 2, 3, 4))
DECAY_KEY = -np.abs(rand(4, (B, T, 2 * 3))) * 0.1
DECAY_HEAD = -np.abs(rand(5, (B, T, 2))) * 0.1
BETA = rand(6, (B, T, 2), low=0, high=1)
HEADS = {"q_num_heads": 4, "kv_num_heads": 2}
LA = {"rtol": 1e-4, "atol": 1e-5, "opset": 27, "outputs": 2}
X, W, BIAS = rand(7, (B, 3, 6)), rand(8, (3, 1, 4)), rand(9, (3,))
CONV_STATE = rand(10, (B, 3, 3))
CACHE, UPDATE = rand(11, (B, 2, 6, 4)), rand(12, (B, 2, 3, 4))


def _ix(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


CASES = [
    OpCase("linear", "LinearAttention", {**HEADS, "update_rule": "linear"}, [Q, K, V], **LA),
    OpCase(
        "gated_past",
        "LinearAttention",
        {**HEADS, "update_rule": "gated"},
        [Q, K, V, STATE, DECAY_KEY],
        **LA,
    ),
    OpCase(
        "gated_per_head",
        "LinearAttention",
        {**HEADS, "update_rule": "gated"},
        [Q, K, V, None, DECAY_HEAD],
        **LA,
    ),
    OpCase(
        "delta_scale",
        "LinearAttention",
        {**HEADS, "update_rule": "delta", "scale": 0.5},
        [Q, K, V, STATE, None, BETA],
        **LA,
    ),
    OpCase(
        "gated_delta_beta_scalar",
        "LinearAttention",
        HEADS,
        [Q, K, V, None, DECAY_KEY, BETA[..., :1]],
        **LA,
    ),
    OpCase(
        "gated_delta_f64",
        "LinearAttention",
        HEADS,
        [x.astype(np.float64) for x in (Q, K, V, STATE, DECAY_KEY, BETA)],
        **{**LA, "rtol": 1e-5, "atol": 1e-5},
    ),  # onnx's reference runs it in float32
    OpCase("conv_plain", "CausalConvWithState", {}, [X, W], outputs=2, opset=27),
    OpCase(
        "conv_bias_state_silu",
        "CausalConvWithState",
        {"activation": "silu"},
        [X, W, BIAS, CONV_STATE],
        outputs=2,
        opset=27,
        rtol=1e-5,
    ),
    OpCase(
        "conv_fp16_swish",
        "CausalConvWithState",
        {"activation": "swish"},
        [X.astype(np.float16), W.astype(np.float16)],
        outputs=2,
        opset=27,
        rtol=1e-3,
        atol=1e-3,
    ),
    OpCase("conv_kernel_one", "CausalConvWithState", {}, [X, W[:, :, :1]], outputs=2, opset=27),
    OpCase("scatter_linear", "TensorScatter", {}, [CACHE, UPDATE, _ix(0, 3)], opset=24),
    OpCase(
        "scatter_circular_axis",
        "TensorScatter",
        {"mode": "circular", "axis": 2},
        [CACHE, UPDATE, _ix(5, 4)],
        opset=24,
    ),
    OpCase(
        "scatter_default_indices_int",
        "TensorScatter",
        {"axis": 1},
        [rand(13, (B, 4, 3), np.int32, 0, 9), rand(14, (B, 2, 3), np.int32, 0, 9)],
        opset=24,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


@settings(max_examples=25, deadline=None)
@given(
    split=st.integers(1, T - 1), rule=st.sampled_from(["linear", "gated", "delta", "gated_delta"])
)
def test_decoding_in_two_calls_equals_one(split: int, rule: str) -> None:
    """present_state fed back as past_state continues the sequence exactly."""
    extra = {
        "linear": [],
        "gated": [DECAY_KEY],
        "delta": [None, BETA],
        "gated_delta": [DECAY_KEY, BETA],
    }[rule]
    attrs = {**HEADS, "update_rule": rule}

    def part(lo: int, hi: int, state):
        return run_case(
            "LinearAttention",
            attrs,
            [x[:, lo:hi] for x in (Q, K, V)]
            + [state]
            + [None if e is None else e[:, lo:hi] for e in extra],
            outputs=2,
        )

    whole, final = part(0, T, None)
    first, state = part(0, split, None)
    second, state = part(split, T, state)
    np.testing.assert_allclose(np.concatenate((first, second), axis=1), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state, final, rtol=1e-5, atol=1e-6)
    conv_whole = run_case("CausalConvWithState", {}, [X, W, BIAS], outputs=2)
    conv_a = run_case("CausalConvWithState", {}, [X[..., :split], W, BIAS], outputs=2)
    conv_b = run_case("CausalConvWithState", {}, [X[..., split:], W, BIAS, conv_a[1]], outputs=2)
    np.testing.assert_allclose(
        np.concatenate((conv_a[0], conv_b[0]), axis=2), conv_whole[0], rtol=1e-6
    )
    np.testing.assert_array_equal(conv_b[1], conv_whole[1])


@pytest.mark.parametrize(
    "op_type, attrs, inputs, message",
    [
        (
            "LinearAttention",
            {"q_num_heads": 3, "kv_num_heads": 2},
            [Q, K, V],
            "positive multiple of kv_num_heads",
        ),
        ("LinearAttention", {**HEADS, "update_rule": "fast"}, [Q, K, V], "'update_rule' must be"),
        ("LinearAttention", HEADS, [Q, K, V], "needs the input 'decay'"),
        (
            "LinearAttention",
            {**HEADS, "update_rule": "linear"},
            [Q, K, V, None, DECAY_KEY],
            "takes no input 'decay'",
        ),
        (
            "LinearAttention",
            {**HEADS, "update_rule": "gated"},
            [Q, K, V, None, rand(0, (B, T, 5))],
            "decay must be",
        ),
        (
            "LinearAttention",
            {**HEADS, "update_rule": "linear"},
            [Q, K, V, rand(0, (B, 2, 3, 3))],
            "past_state must be",
        ),
        (
            "LinearAttention",
            {**HEADS, "update_rule": "linear"},
            [Q, K[:, :4], V],
            "input 1 \\(key\\) must be",
        ),
        ("LinearAttention", {**HEADS, "update_rule": "linear"}, [Q[0], K, V], "query must be"),
        (
            "LinearAttention",
            {**HEADS, "update_rule": "linear"},
            [Q, rand(0, (B, T, 8)), V],
            "query's head size 3",
        ),
        ("CausalConvWithState", {"activation": "relu"}, [X, W], "'activation' must be"),
        ("CausalConvWithState", {}, [X[0], W], "input must be \\[batch, channels, length\\]"),
        ("CausalConvWithState", {}, [X, rand(0, (3, 2, 4))], "weight must be \\[3, 1, k\\]"),
        ("CausalConvWithState", {}, [X, W, BIAS[:2]], "bias must be \\[3\\]"),
        ("CausalConvWithState", {}, [X, W, None, rand(0, (B, 3, 2))], "past_state must be"),
        ("TensorScatter", {"axis": 0}, [CACHE, UPDATE], "axis 0 is the batch axis"),
        ("TensorScatter", {"mode": "ring"}, [CACHE, UPDATE], "'mode' must be"),
        ("TensorScatter", {}, [CACHE, rand(0, (B, 2, 7, 4))], "except on axis 2"),
        ("TensorScatter", {}, [CACHE, UPDATE, _ix(0)], "write_indices must be \\[2\\]"),
        ("TensorScatter", {}, [CACHE, UPDATE, _ix(0, 4)], "write_indices\\[1\\] = 4 does not fit"),
        (
            "TensorScatter",
            {"mode": "circular"},
            [CACHE, UPDATE, _ix(-1, 0)],
            "write_indices\\[0\\] = -1",
        ),
    ],
)
def test_bad_inputs_are_refused(op_type: str, attrs: dict, inputs: list, message: str) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op_type, attrs, inputs, outputs=2 if op_type != "TensorScatter" else 1)


def test_batch_rules() -> None:
    from popef.runtime.batching import ROW_RULES

    conv = create_op("CausalConvWithState", "c", {}, 2)
    specs = [TensorSpec.of(X), TensorSpec.of(W)]
    assert ROW_RULES["CausalConvWithState"](conv, [True, False], specs)
    assert not ROW_RULES["CausalConvWithState"](conv, [True, True], specs)
    la = create_op("LinearAttention", "l", HEADS, 2)
    assert ROW_RULES["LinearAttention"](la, [True, True, True], [])
    assert ROW_RULES["TensorScatter"](create_op("TensorScatter", "t"), [True, True], [])
