"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnx's ReferenceEvaluator
(skipped without onnx) and a numpy formula."""

from __future__ import annotations

import numpy as np
import pytest

from popef.errors import ExecutionError

from .op_oracle import OpCase, check_case, rand, run_case

X = rand(0, (3, 5, 2))
T = np.array([[0, 4], [2, 1], [3, 3]], np.int64)
W = rand(1, (5,), low=0.1, high=1)
CASES = [
    OpCase(
        f"{op}_{reduction}{'_w' if w is not None else ''}{'_ii' if ii is not None else ''}",
        op,
        {"reduction": reduction, **({} if ii is None else {"ignore_index": ii})},
        [X, T] + ([] if w is None else [w]),
        outputs=outputs,
        rtol=1e-5,
        atol=1e-6,
    )
    for op, outputs in (("NegativeLogLikelihoodLoss", 1), ("SoftmaxCrossEntropyLoss", 2))
    for reduction in ("none", "sum", "mean")
    for w in (None, W)
    for ii in (None, 3)
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_matches_reference(case: OpCase) -> None:
    check_case(case)


def test_mean_divides_by_the_weights_of_the_kept_positions() -> None:
    x = np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.1, 0.9]], np.float64))
    t = np.array([0, 1, -1], np.int32)
    [loss] = run_case("NegativeLogLikelihoodLoss", {"ignore_index": -1}, [x, t])
    assert loss.shape == () and loss.dtype == np.float64
    np.testing.assert_allclose(loss, -(x[0, 0] + x[1, 1]) / 2)


def test_float16_loss_is_computed_in_float32() -> None:
    x = rand(2, (4, 3), np.float16)
    t = np.array([0, 1, 2, 1], np.int64)
    loss, log_prob = run_case("SoftmaxCrossEntropyLoss", {}, [x, t], outputs=2)
    xf = x.astype(np.float64)
    want = xf - np.log(np.exp(xf).sum(axis=1, keepdims=True))
    assert loss.dtype == log_prob.dtype == np.float16
    np.testing.assert_allclose(log_prob, want, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(loss, -want[np.arange(4), t].mean(), rtol=2e-3)


@pytest.mark.parametrize(
    "attrs, inputs, message",
    [
        (
            {},
            [X, np.array([[0, 5], [0, 0], [0, 0]], np.int64)],
            r"target 5 at \[0, 1\] is not a class",
        ),
        (
            {"ignore_index": 3},
            [X, np.array([[0, -2], [0, 0], [0, 0]], np.int64)],
            "or ignore_index 3",
        ),
        ({}, [X, T[:, :1]], "does not fit input"),
        ({}, [X, T, rand(0, (4,))], "weight must be"),
        ({}, [X, T.astype(np.float32)], "unsupported dtype float32"),
        ({"reduction": "avg"}, [X, T], "attribute 'reduction' must be one of"),
    ],
)
def test_bad_input_is_a_clear_error(attrs, inputs, message) -> None:
    with pytest.raises(ExecutionError, match=message):
        run_case("NegativeLogLikelihoodLoss", attrs, inputs)
