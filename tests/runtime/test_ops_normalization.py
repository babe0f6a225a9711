"""Normalisations (LayerNormalization, RMSNormalization, InstanceNormalization,
GroupNormalization, LpNormalization, MeanVarianceNormalization, LRN) against onnx's
ReferenceEvaluator (skipped without onnx) and float64 formulas."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, rand, run_case

X = rand(0, (2, 4, 3, 5))
F32 = {"rtol": 2e-5, "atol": 2e-5}


def layer_norm_ref(x, scale, bias=None, axis=-1, eps=1e-5):
    x = x.astype(np.float64)
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * scale
    return [y + (0 if bias is None else bias), mean, 1 / np.sqrt(var + eps)]


def lrn_ref(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    x = x.astype(np.float64)
    out = np.empty_like(x)
    c = x.shape[1]
    for i in range(c):
        lo, hi = max(0, i - (size - 1) // 2), min(c, i + (size - 1) - (size - 1) // 2 + 1)
        s = (x[:, lo:hi] ** 2).sum(axis=1)
        out[:, i] = x[:, i] / (bias + alpha / size * s) ** beta
    return [out]


CASES = [
    OpCase(
        "layer_norm",
        "LayerNormalization",
        {},
        [X, rand(1, (5,)), rand(2, (5,))],
        outputs=3,
        ref=layer_norm_ref,
        **F32,
    ),
    OpCase(
        "layer_norm_axis1",
        "LayerNormalization",
        {"axis": 1, "epsilon": 1e-3},
        [X, rand(1, (4, 3, 5))],
        outputs=1,
        ref=lambda x, s: layer_norm_ref(x, s, axis=1, eps=1e-3)[:1],
        **F32,
    ),
    OpCase(
        "layer_norm_onnx",
        "LayerNormalization",
        {"axis": 2},
        [X, rand(1, (3, 5)), rand(2, (3, 5))],
        **F32,
    ),
    OpCase(
        "rms_norm",
        "RMSNormalization",
        {},
        [X, rand(1, (5,))],
        opset=23,
        ref=lambda x, s: [
            x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5) * s
        ],
        **F32,
    ),
    OpCase("instance_norm", "InstanceNormalization", {}, [X, rand(3, (4,)), rand(4, (4,))], **F32),
    OpCase(
        "group_norm_opset21",
        "GroupNormalization",
        {"num_groups": 2},
        [X, rand(3, (4,)), rand(4, (4,))],
        **F32,
    ),
    OpCase(
        "group_norm_opset18_per_group",
        "GroupNormalization",
        {"num_groups": 2},
        [X, rand(3, (2,)), rand(4, (2,))],
        opset=18,
        **F32,
    ),
    OpCase("lp_norm_2", "LpNormalization", {"axis": 1}, [X], **F32),
    # onnx's reference sums x, not |x|, for p=1
    OpCase(
        "lp_norm_1",
        "LpNormalization",
        {"p": 1},
        [X],
        ref=lambda x: [x / np.abs(x.astype(np.float64)).sum(-1, keepdims=True)],
        **F32,
    ),
    OpCase("mvn", "MeanVarianceNormalization", {}, [X], **F32),
    OpCase("mvn_axes", "MeanVarianceNormalization", {"axes": [1]}, [X], **F32),
    OpCase("lrn", "LRN", {"size": 3}, [X], ref=lambda x: lrn_ref(x, 3), **F32),
    OpCase(
        "lrn_even_size",
        "LRN",
        {"size": 4, "alpha": 0.01, "beta": 0.5, "bias": 2.0},
        [X],
        ref=lambda x: lrn_ref(x, 4, 0.01, 0.5, 2.0),
        **F32,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_lp_normalization_of_zeros_is_zero() -> None:
    [y] = run_case("LpNormalization", {}, [np.zeros((2, 3), np.float32)])
    assert (y == 0).all()


def test_float16_is_computed_in_float32() -> None:
    x = rand(5, (3, 64)).astype(np.float16) * np.float16(100)
    [y] = run_case("LayerNormalization", {}, [x, np.ones(64, np.float16)])
    assert y.dtype == np.float16
    want = layer_norm_ref(x, np.ones(64))[0]
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=4e-3, atol=4e-3)


@pytest.mark.parametrize(
    "op_type, attrs, inputs, message",
    [
        ("LayerNormalization", {}, [X, rand(0, (4,))], r"input 1 \[4\] does not broadcast"),
        ("LayerNormalization", {"axis": 4}, [X, rand(0, (5,))], "axis 4 is out of range"),
        ("LayerNormalization", {}, [X.astype(np.int32), np.ones(5, np.int32)], "unsupported dtype"),
        (
            "GroupNormalization",
            {"num_groups": 3},
            [X, rand(0, (4,)), rand(0, (4,))],
            "divisible by num_groups 3",
        ),
        ("InstanceNormalization", {}, [X, rand(0, (3,)), rand(0, (4,))], r"scale \[3\]"),
        ("LpNormalization", {"p": 3}, [X], "'p' must be 1 or 2"),
        ("LRN", {"size": 0}, [X], "'size' must be >= 1"),
    ],
)
def test_bad_input_is_a_clear_error(op_type, attrs, inputs, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case(op_type, attrs, inputs)


@pytest.mark.parametrize("axis", [-1, 0])
def test_float16_softmax_rounds_as_float16(axis: int) -> None:
    """A float16 Softmax computes in float16, as ONNX's reference (and so Attention's
    ``softmax_precision``, a Cast before the Softmax) defines it: equal to the reference's
    float16 steps, bit for bit, where the float32 result rounded once differs by an ulp."""
    pytest.importorskip("onnx")
    x = rand(7, (64, 6), np.float32, -4.0, 4.0).astype(np.float16)
    check_case(OpCase("f16", "Softmax", {"axis": axis}, [x], opset=13, rtol=0.0, atol=0.0))
    [y] = run_case("Softmax", {"axis": axis}, [x])
    e = np.exp(x.astype(np.float32) - x.astype(np.float32).max(axis=axis, keepdims=True))
    once = (e / e.sum(axis=axis, keepdims=True)).astype(np.float16)
    assert y.dtype == np.float16 and (y != once).any()
